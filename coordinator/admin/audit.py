"""The audit log: every administrator action is recorded in the same transaction as the action itself, so
an action that is refused or rolled back leaves no entry, and one that happened always has one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from coordinator.accounts.models import ROLE_ADMIN, User
from coordinator.accounts.tokens import Principal
from coordinator.admin.models import AuditEntry
from coordinator.db import Database
from coordinator.errors import InvalidArgument, PermissionDenied

ACTIONS = (
    "ledger.grant",
    "node.quarantine",
    "node.release",
    "node.revoke",
    "job.cancel",
    "job.requeue",
    "user.disable",
    "user.enable",
    "user.promote",
    "user.demote",
    "pricing.update",
)
MAX_PAGE = 500
MAX_FILTER = 80


def require_admin(session: Session, actor: Principal) -> User:
    """The actor's row, checked again inside the action's transaction: a token outlives a demotion or a
    disabled account by up to its lifetime, the database does not."""
    user = session.get(User, actor.user_id)
    if user is None or user.role != ROLE_ADMIN or user.disabled:
        raise PermissionDenied(
            "Your administrator rights were removed or your account is disabled; nothing was changed."
        )
    return user


def record(
    session: Session,
    actor: Principal,
    action: str,
    target: str,
    *,
    now: datetime,
    summary: str,
    detail: dict[str, Any] | None = None,
) -> None:
    """Add one entry to the caller's transaction (committed, or rolled back, with the action)."""
    assert action in ACTIONS, action
    session.add(
        AuditEntry(
            at=now,
            actor_id=actor.user_id,
            actor=actor.username,
            action=action,
            target=target[:80],
            summary=summary[:500],
            detail=detail or {},
        )
    )


@dataclass(frozen=True, slots=True)
class Page:
    entries: list[AuditEntry]
    total: int


def check_page(limit: int, offset: int) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidArgument(f"Choose a limit from 1 to {MAX_PAGE}.")
    if offset < 0:
        raise InvalidArgument("The offset cannot be negative.")


def query(
    db: Database,
    *,
    actor: str = "",
    action: str = "",
    target: str = "",
    limit: int = 50,
    offset: int = 0,
) -> Page:
    """Entries newest first. ``target`` matches exactly, or as a prefix when it ends with ':'."""
    check_page(limit, offset)
    if action and action not in ACTIONS:
        raise InvalidArgument(f"Unknown action {action[:40]!r}. Use one of: {', '.join(ACTIONS)}.")
    if len(actor) > MAX_FILTER or len(target) > MAX_FILTER:
        raise InvalidArgument(f"Filters are at most {MAX_FILTER} characters.")
    conditions: list[Any] = []
    if actor:
        conditions.append(col(AuditEntry.actor) == actor)
    if action:
        conditions.append(col(AuditEntry.action) == action)
    if target.endswith(":"):
        conditions.append(col(AuditEntry.target).startswith(target, autoescape=True))
    elif target:
        conditions.append(col(AuditEntry.target) == target)
    with db.read() as session:
        total = session.exec(select(func.count()).select_from(AuditEntry).where(*conditions)).one()
        entries = list(
            session.exec(
                select(AuditEntry)
                .where(*conditions)
                .order_by(col(AuditEntry.id).desc())
                .offset(offset)
                .limit(limit)
            )
        )
    return Page(entries, int(total))
