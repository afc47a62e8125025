"""The operator page's sessions: open, look up, revoke, forget the expired."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from reconciler.adapters.models import AdminSession


def open_admin_session(session: Session, id_hash: str, now: datetime, expires_at: datetime) -> None:
    session.add(AdminSession(id_hash=id_hash, created_at=now, expires_at=expires_at))


def live_admin_session(session: Session, id_hash: str, now: datetime) -> bool:
    """Say whether the session exists, is not revoked and has not expired."""
    stmt = select(AdminSession.id_hash).where(
        AdminSession.id_hash == id_hash,
        AdminSession.revoked_at.is_(None),
        AdminSession.expires_at > now,
    )
    return session.scalar(stmt) is not None


def revoke_admin_session(session: Session, id_hash: str, now: datetime) -> None:
    session.execute(
        update(AdminSession)
        .where(AdminSession.id_hash == id_hash, AdminSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def forget_admin_sessions(session: Session, *, expired_before: datetime) -> int:
    """Delete sessions expired before the time (revoked or not); return how many."""
    result = session.execute(delete(AdminSession).where(AdminSession.expires_at < expired_before))
    return int(getattr(result, "rowcount", 0) or 0)
