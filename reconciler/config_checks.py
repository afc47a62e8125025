"""Checks on settings that need more than a type: one line naming the variable, or nothing.

Standard library only, like `reconciler.config`: `make run` checks its ports (and so its
settings) before the virtualenv exists.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MIN_ADMIN_TOKEN = 32  # characters; `secrets.token_urlsafe(32)` makes 43
FILE_SUFFIX = "_FILE"
# The URL forms the service can open (its drivers: sqlite3 and psycopg 3).
DATABASE_URL_FORMS = "sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST[:PORT]/DATABASE"
_SCHEMES = {"sqlite", "sqlite+pysqlite", "postgresql+psycopg"}


class ConfigError(ValueError):
    """A configuration value that cannot be used."""


def database_url_problem(url: str) -> str | None:
    """Say what is wrong with a database URL, or None when the service can open it."""
    scheme, sep, rest = url.partition("://")
    shown = _without_password(url)
    if not sep or scheme.lower() not in _SCHEMES:
        hint = " (the driver is psycopg 3)" if scheme.lower().startswith("postgres") else ""
        return f"RECONCILER_DATABASE_URL must be {DATABASE_URL_FORMS}{hint}, got {shown!r}"
    if scheme.startswith("sqlite"):
        if rest not in ("", "/:memory:") and not rest.startswith("/"):
            return f"RECONCILER_DATABASE_URL must be sqlite:///PATH (three slashes), got {shown!r}"
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return f"RECONCILER_DATABASE_URL has a bad host or port: {shown!r}"
    if not parts.hostname and "host=" not in parts.query:
        return f"RECONCILER_DATABASE_URL names no host: {DATABASE_URL_FORMS}, got {shown!r}"
    if parts.path.strip("/") == "":
        return f"RECONCILER_DATABASE_URL names no database: {DATABASE_URL_FORMS}, got {shown!r}"
    return None


def _without_password(url: str) -> str:
    """Hide a password in a URL, so an error line never prints it."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def log_level_problem(level: str) -> str | None:
    """Say what is wrong with a log level, or None."""
    if level.upper() in LOG_LEVELS:
        return None
    return f"RECONCILER_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {level!r}"


def admin_token_problem(token: str | None) -> str | None:
    """Refuse an admin token a person could guess (unset is fine: admin is then off)."""
    if token is None or len(token) >= MIN_ADMIN_TOKEN:
        return None
    return (
        f"RECONCILER_ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN} characters, got "
        f"{len(token)}; make one with: openssl rand -base64 33"
    )


def read_files(env: Mapping[str, str], known: Iterable[str]) -> dict[str, str]:
    """Read `<VARIABLE>_FILE` for each known variable that is not set itself.

    So a secret mounted as a file works for every command, `docker compose exec` included,
    with no entrypoint script in between. A trailing newline (as `echo` writes) is dropped.
    """
    values = {}
    for name in known:
        path = env.get(name + FILE_SUFFIX)
        if not path or env.get(name):
            continue
        try:
            values[name] = Path(path).read_text().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ConfigError(f"{name}{FILE_SUFFIX}: cannot read {path}: {reason}") from None
    return values


def unknown_variables(env: Mapping[str, str], prefix: str, known: Iterable[str]) -> list[str]:
    """Return one warning per `RECONCILER_*` variable no setting reads, naming the closest."""
    names = set(known)
    names |= {name + FILE_SUFFIX for name in names}
    warnings = []
    for name in sorted(env):
        if not name.startswith(prefix) or name in names:
            continue
        # Compared without the shared prefix, which would make every name look close.
        suffixes = {known_name.removeprefix(prefix): known_name for known_name in names}
        close = difflib.get_close_matches(name.removeprefix(prefix), suffixes, n=1, cutoff=0.7)
        hint = f"; did you mean {suffixes[close[0]]}?" if close else ""
        warnings.append(f"{name} is not a setting and is ignored{hint}")
    return warnings
