"""The operator page's sessions, kept server-side so that signing out really ends one.

The cookie carries a random session id (signed, with its CSRF token); the table keeps only
the id's SHA-256, when it ends, and whether it was revoked. Rotating the admin token still
ends every session at once (the cookie's signing key is derived from the token).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from reconciler.adapters import repository
from reconciler.services.context import Context

# Sessions that ended this long ago are deleted at the next sign-in (kept a while, so a
# stolen cookie presented after sign-out is still recognised as revoked, not unknown).
FORGET_AFTER = timedelta(days=1)


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def open_session(ctx: Context, lifetime: timedelta) -> str:
    """Open a session for a signed-in operator; return its secret id (for the cookie)."""
    session_id = secrets.token_urlsafe(32)
    now = ctx.clock()
    with ctx.sessions.begin() as session:
        repository.forget_admin_sessions(session, expired_before=now - FORGET_AFTER)
        repository.open_admin_session(session, _hash(session_id), now, now + lifetime)
    return session_id


def is_live(ctx: Context, session_id: str) -> bool:
    """Say whether the session is open: not revoked, not expired."""
    with ctx.read() as session:
        return repository.live_admin_session(session, _hash(session_id), ctx.clock())


def revoke(ctx: Context, session_id: str) -> None:
    """End the session on the server: its cookie no longer opens a page, even if copied."""
    with ctx.sessions.begin() as session:
        repository.revoke_admin_session(session, _hash(session_id), ctx.clock())
