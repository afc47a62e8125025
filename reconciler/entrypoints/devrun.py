"""`make run`: the service on SQLite with the gateway simulator started beside it.

Both ports are checked first (RECONCILER_PORT, 8000; RECONCILER_SIMULATOR_PORT, 8100):
a busy one stops the run before anything is created, with the variable to set. The
simulator is given an identity token and is trusted only when it answers with it, so a
stranger on its port is never taken for it. One merchant `dev` is created on the first
run; its id and API key are kept in `.reconciler-dev.json` (git-ignored) and reused on
every later run against the same database (`--rotate-key`, or `make rotate-dev-key`,
gives it a new key). One runner per database: a second `make run` on the same file stops
at once, naming RECONCILER_DATABASE_URL (its simulator would not know the first one's
payments). The simulator keeps no state across restarts: see the README for
what happens to payments still pending when `make run` stops.

The top-level imports are the standard library and `reconciler.config` only, so
`--check-ports` runs before the virtualenv exists.
"""

from __future__ import annotations

import atexit
import base64
import fcntl
import hashlib
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from reconciler.config import PREFIX, ConfigError, Settings, known_variables, spec
from reconciler.config_checks import unknown_variables

DEV_FILE = Path(".reconciler-dev.json")
# The dev Fernet key that seals stored secrets, kept beside the dev API key.
DEV_KEY_FILE = Path(".reconciler-dev-secrets-key")
DEV_MERCHANT = "dev"


class DevRunError(SystemExit):
    """A one-line reason `make run` cannot go on (exit code 1)."""

    def __init__(self, message: str) -> None:
        super().__init__(f"make run: {message}")


def port_problems(settings: Settings) -> list[str]:
    """Say, one line each, which of the two ports is taken and which variable moves it."""
    problems = []
    for name, port in (("port", settings.port), ("simulator_port", settings.simulator_port)):
        if not port_is_free(settings.host, port):
            problems.append(
                f"port {port} is taken; set {spec(name).env} to a free port "
                f"(e.g. {spec(name).env}={port + 1} make run)"
            )
    return problems


def port_is_free(host: str, port: int) -> bool:
    """Say whether a listener could bind this port now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Lets a port in TIME_WAIT count as free, as it is for the server; a listener still wins.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def lock_path(settings: Settings) -> Path:
    """Where the runner's lock on its database lives: beside a SQLite file, else in /tmp."""
    url = settings.database_url
    scheme, _, rest = url.partition("://")
    if scheme.startswith("sqlite") and rest.startswith("/") and rest not in ("/", "/:memory:"):
        return Path(rest[1:].split("?", 1)[0] + ".make-run.lock").absolute()
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return Path(settings.temp_dir or tempfile.gettempdir()) / f"reconciler-make-run-{digest}.lock"


def hold_database(settings: Settings) -> IO[bytes]:
    """Lock the database for this runner, or stop: two runners on one database mislead both.

    The second runner's simulator would not know the first one's payments: they would go
    to `needs_review` and their merchant would be told. The lock is released when the
    process ends, however it ends.
    """
    path = lock_path(settings)
    handle = open(path, "ab")  # noqa: SIM115 - held for the process lifetime
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise DevRunError(
            f"another make run is using the database {settings.database_url}; set "
            f"{spec('database_url').env} to another one "
            f"(e.g. {spec('database_url').env}=sqlite:///second.db make run)"
        ) from None
    return handle


@dataclass(frozen=True)
class DevMerchant:
    """The dev merchant `make run` reuses, as kept in `.reconciler-dev.json`."""

    database_url: str
    merchant_id: str
    api_key: str
    endpoint_id: str | None = None  # its webhook endpoint, for `reconciler listen`
    endpoint_secret: str | None = None

    @classmethod
    def load(cls, path: Path) -> DevMerchant | None:
        try:
            data: dict[str, Any] = json.loads(path.read_text())
            return cls(
                str(data["database_url"]),
                str(data["merchant_id"]),
                str(data["api_key"]),
                data.get("endpoint_id"),
                data.get("endpoint_secret"),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, path: Path) -> None:
        text = json.dumps(self.__dict__, indent=2) + "\n"
        # The key is a credential: readable by its owner only.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)


def dev_merchant(settings: Settings, path: Path = DEV_FILE) -> tuple[DevMerchant, bool]:
    """Return the saved dev merchant if its key still works on this database, else a new one.

    The second value says whether it was reused.
    """
    from reconciler.bootstrap import bootstrap
    from reconciler.services.merchants import authenticate, create_merchant

    saved = DevMerchant.load(path)
    ctx = bootstrap(settings, gateways={})
    try:
        if saved is not None and saved.database_url == settings.database_url:
            found = authenticate(ctx, saved.api_key)
            if found is not None and found.id == saved.merchant_id:
                return saved, True
        merchant, api_key = create_merchant(ctx, DEV_MERCHANT)
    finally:
        ctx.close()
    fresh = DevMerchant(settings.database_url, merchant.id, api_key)
    fresh.save(path)
    return fresh, False


def dev_endpoint(settings: Settings, merchant: DevMerchant, path: Path = DEV_FILE) -> DevMerchant:
    """Make sure the dev merchant has a webhook endpoint on the listener's port.

    Its deliveries go to `reconciler listen`; until one runs, they fail and retry on the
    delivery schedule, which is worth watching too.
    """
    from reconciler.bootstrap import bootstrap
    from reconciler.services.endpoints import create_endpoint, get_endpoint
    from reconciler.services.errors import NotFound
    from reconciler.services.merchants import authenticate

    url = f"http://127.0.0.1:{settings.listen_port}/"
    ctx = bootstrap(settings, gateways={})
    try:
        owner = authenticate(ctx, merchant.api_key)
        assert owner is not None
        if merchant.endpoint_id is not None and merchant.endpoint_secret is not None:
            try:
                if get_endpoint(ctx, owner, merchant.endpoint_id).url == url:
                    return merchant
            except NotFound:
                pass
        endpoint, secret = create_endpoint(
            ctx, owner, url=url, events=None, description="make run: reconciler listen"
        )
    finally:
        ctx.close()
    with_endpoint = replace(merchant, endpoint_id=endpoint.id, endpoint_secret=secret)
    with_endpoint.save(path)
    return with_endpoint


def rotate_dev_key(settings: Settings, path: Path = DEV_FILE) -> DevMerchant:
    """Give the saved dev merchant a new key at once (no grace) and save it."""
    from datetime import timedelta

    from reconciler.bootstrap import bootstrap
    from reconciler.services.merchants import rotate_key

    saved = DevMerchant.load(path)
    if saved is None or saved.database_url != settings.database_url:
        raise DevRunError(f"no dev merchant saved in {path} for this database; run make run")
    ctx = bootstrap(settings, gateways={})
    try:
        _, api_key = rotate_key(ctx, saved.merchant_id, grace=timedelta(0))
    finally:
        ctx.close()
    rotated = replace(saved, api_key=api_key)
    rotated.save(path)
    return rotated


def start_simulator(settings: Settings, secret: str, identity: str) -> subprocess.Popen[bytes]:
    """Start the simulator on its port, delivering signed webhooks to this service."""
    webhook_url = f"http://{settings.host}:{settings.port}/webhooks/simulator"
    # The secret travels in the environment, never on a command line (`ps` shows those).
    env = settings.child_env(simulator_webhook_secret=(secret,))
    flags = ["--port", str(settings.simulator_port), "--webhook-url", webhook_url]
    flags += ["--identity", identity, "--settle-min", "2", "--settle-max", "20"]
    flags += ["--webhook-loss", "0.2"]
    return subprocess.Popen([sys.executable, "-m", "reconciler.simulator", *flags], env=env)


def wait_for_simulator(
    url: str, process: subprocess.Popen[bytes], identity: str, timeout: float = 15
) -> None:
    """Wait until the simulator we started answers with our identity token."""
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DevRunError(
                "the simulator exited; is its port taken? set RECONCILER_SIMULATOR_PORT"
            )
        try:
            answer = requests.get(f"{url}/_sim/identity", timeout=1)
        except requests.RequestException:
            time.sleep(0.2)
            continue
        try:
            token = answer.json().get("identity") if answer.ok else None
        except ValueError:
            token = None
        if token == identity:
            return
        raise DevRunError(
            f"another server answers on {url}, not the simulator this run started; "
            "set RECONCILER_SIMULATOR_PORT to a free port"
        )
    raise DevRunError("the simulator did not start within 15 s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()


def dev_secrets_key(path: Path = DEV_KEY_FILE) -> str:
    """Return the saved dev secrets key, or make one and save it (owner-readable only)."""
    from reconciler.adapters.secrets import new_key

    try:
        saved = path.read_text().strip()
    except OSError:
        saved = ""
    if saved:
        return saved
    key = new_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    return key


def run(settings: Settings) -> int:
    """Check the ports, start the simulator, reuse the dev merchant, then serve."""
    problems = port_problems(settings)
    if problems:
        raise DevRunError("; ".join(problems))
    database_lock = hold_database(settings)
    atexit.register(database_lock.close)
    from reconciler.entrypoints import commands

    secret = next(iter(settings.simulator_webhook_secret), None) or (
        "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    )
    sim_url = f"http://127.0.0.1:{settings.simulator_port}"
    settings = settings.replace(
        simulator_url=sim_url,
        simulator_webhook_secret=(secret,),
        # The dev endpoint is on loopback: allowed here, refused in production.
        notify_allow_private=True,
        secrets_key=settings.secrets_key or (dev_secrets_key(),),
    )
    identity = secrets.token_urlsafe(16)
    simulator = start_simulator(settings, secret, identity)
    atexit.register(_stop, simulator)
    wait_for_simulator(sim_url, simulator, identity)
    commands.upgrade(settings)
    merchant, reused = dev_merchant(settings)
    merchant = dev_endpoint(settings, merchant)
    how = f"reused from {DEV_FILE}" if reused else f"created, saved in {DEV_FILE}"
    print(f"\nmerchant {merchant.merchant_id} ({DEV_MERCHANT}) {how}; its API key:")
    print(merchant.api_key)
    print(
        f"\nits webhook endpoint {merchant.endpoint_id} delivers to "
        f"http://127.0.0.1:{settings.listen_port}/; watch the deliveries in another terminal:"
    )
    print(
        f"  .venv/bin/reconciler listen --port {settings.listen_port} "
        f"--secret {merchant.endpoint_secret}"
    )
    print(f"\nsimulator on {sim_url}; service on http://{settings.host}:{settings.port}\n")
    return commands.serve(settings, host=None, port=None)


def main(argv: Sequence[str] | None = None) -> int:
    """Run `make run` (or only its port check, or a dev key rotation)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"make run: configuration error: {exc}", file=sys.stderr)
        return 2
    for line in unknown_variables(os.environ, PREFIX, known_variables()):
        print(f"make run: configuration warning: {line}", file=sys.stderr)
    if args == ["--check-ports"]:
        problems = port_problems(settings)
        for line in problems:
            print(f"make run: {line}", file=sys.stderr)
        return 1 if problems else 0
    if args == ["--rotate-key"]:
        from reconciler.entrypoints import commands

        commands.upgrade(settings)
        rotated = rotate_dev_key(settings)
        print(f"merchant {rotated.merchant_id} ({DEV_MERCHANT}): new API key, saved in {DEV_FILE}:")
        print(rotated.api_key)
        return 0
    if args:
        print("usage: python -m reconciler.entrypoints.devrun [--check-ports | --rotate-key]")
        return 2
    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
