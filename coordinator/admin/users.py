"""Administrators' actions on accounts: list, disable/enable, promote/demote. Each action checks the actor
again, changes the account and writes the audit entry in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, update
from sqlmodel import Session, col, or_, select

from coordinator.accounts.models import ROLE_ADMIN, ROLE_USER, RefreshToken, User
from coordinator.accounts.tokens import Principal
from coordinator.admin import audit
from coordinator.admin.access import AccessGuard
from coordinator.clock import Clock
from coordinator.db import Database
from coordinator.errors import FailedPrecondition, InvalidArgument, NotFound
from coordinator.jobs.models import Job
from coordinator.ledger.models import KIND_USER, LedgerAccount
from coordinator.nodes.models import Node

ROLES = (ROLE_USER, ROLE_ADMIN)


@dataclass(frozen=True, slots=True)
class UserRow:
    user_id: int
    username: str
    email: str
    role: str
    disabled: bool
    created_at: datetime
    balance_micro: int
    nodes: int
    jobs: int


def _rows(session: Session, users: list[User]) -> list[UserRow]:
    ids = [u.id for u in users if u.id is not None]
    if not ids:
        return []
    balances = dict(
        session.exec(
            select(LedgerAccount.user_id, LedgerAccount.balance_micro).where(
                col(LedgerAccount.user_id).in_(ids), LedgerAccount.kind == KIND_USER
            )
        ).all()
    )
    nodes = dict(
        session.exec(
            select(Node.owner_id, func.count())
            .where(col(Node.owner_id).in_(ids))
            .group_by(col(Node.owner_id))
        ).all()
    )
    jobs = dict(
        session.exec(
            select(Job.owner_id, func.count())
            .where(col(Job.owner_id).in_(ids))
            .group_by(col(Job.owner_id))
        ).all()
    )
    return [
        UserRow(
            user_id=u.id or 0,
            username=u.username,
            email=u.email,
            role=u.role,
            disabled=u.disabled,
            created_at=u.created_at,
            balance_micro=int(balances.get(u.id, 0) or 0),
            nodes=int(nodes.get(u.id or 0, 0)),
            jobs=int(jobs.get(u.id or 0, 0)),
        )
        for u in users
    ]


def list_users(
    db: Database,
    *,
    q: str = "",
    role: str = "",
    disabled: bool | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[UserRow], int]:
    """Users in sign-up order, with their balance and how many nodes and jobs they have."""
    audit.check_page(limit, offset)
    if role and role not in ROLES:
        raise InvalidArgument(f"Unknown role {role[:20]!r}. Use user or admin.")
    if len(q) > 254:
        raise InvalidArgument("The search text is at most 254 characters.")
    conditions: list[Any] = []
    if q:
        needle = q.lower()
        conditions.append(
            or_(
                func.lower(col(User.username)).contains(needle, autoescape=True),
                func.lower(col(User.email)).contains(needle, autoescape=True),
            )
        )
    if role:
        conditions.append(col(User.role) == role)
    if disabled is not None:
        conditions.append(col(User.disabled).is_(disabled))
    with db.read() as session:
        total = session.exec(select(func.count()).select_from(User).where(*conditions)).one()
        users = list(
            session.exec(
                select(User).where(*conditions).order_by(col(User.id)).offset(offset).limit(limit)
            )
        )
        return _rows(session, users), int(total)


def get_user(db: Database, username: str) -> UserRow:
    with db.read() as session:
        return _rows(session, [_find(session, username)])[0]


def _find(session: Session, username: str, *, lock: bool = False) -> User:
    query = select(User).where(User.username == username[:64])
    user = session.exec(query.with_for_update() if lock else query).first()
    if user is None:
        raise NotFound(f"There is no user named '{username[:40]}'. Check the username.")
    return user


def _lock_admins(session: Session) -> list[int]:
    """Lock the enabled admins' rows, in id order, before anything else: two admins acting on each other at
    the same moment then run one after the other (the second sees the first's change, so neither can leave
    the platform without an administrator), and never deadlock (PostgreSQL; SQLite's write lock covers it).
    """
    ids = session.exec(
        select(User.id)
        .where(User.role == ROLE_ADMIN, col(User.disabled).is_(False))
        .order_by(col(User.id))
        .with_for_update()
    ).all()
    return [i for i in ids if i is not None]


class UserAdmin:
    """The account actions. Blocking; run off the event loop."""

    def __init__(self, db: Database, clock: Clock, guard: AccessGuard) -> None:
        self.db = db
        self.clock = clock
        self.guard = guard

    def set_disabled(self, actor: Principal, username: str, disabled: bool) -> UserRow:
        now = self.clock()
        verb = "disable" if disabled else "enable"
        with self.db.write() as session:
            _lock_admins(session)
            audit.require_admin(session, actor)
            user = _find(session, username, lock=True)
            assert user.id is not None
            if user.id == actor.user_id:
                raise FailedPrecondition(
                    f"You cannot {verb} your own account. Ask another administrator."
                )
            if user.disabled == disabled:
                raise FailedPrecondition(f"The account '{username}' is already {verb}d.")
            user.disabled = disabled
            session.add(user)
            if disabled:  # their sign-ins end: no refresh token of theirs works any more
                session.execute(
                    update(RefreshToken)
                    .where(
                        col(RefreshToken.user_id) == user.id,
                        col(RefreshToken.revoked_at).is_(None),
                    )
                    .values(revoked_at=now)
                )
            audit.record(
                session,
                actor,
                f"user.{verb}",
                f"user:{username}",
                now=now,
                summary=f"{verb.capitalize()}d the account {username}.",
                detail={"user_id": user.id},
            )
            user_id = user.id
        self.guard.set_disabled(user_id, disabled)
        return get_user(self.db, username)

    def set_role(self, actor: Principal, username: str, role: str) -> UserRow:
        now = self.clock()
        verb = "promote" if role == ROLE_ADMIN else "demote"
        with self.db.write() as session:
            admins = _lock_admins(session)
            audit.require_admin(session, actor)
            user = _find(session, username, lock=True)
            assert user.id is not None
            if user.id == actor.user_id:
                raise FailedPrecondition(f"You cannot {verb} yourself. Ask another administrator.")
            if user.role == role:
                raise FailedPrecondition(
                    f"'{username}' is already {'an admin' if role == ROLE_ADMIN else 'a user'}."
                )
            if role != ROLE_ADMIN and not [a for a in admins if a != user.id]:
                raise FailedPrecondition(
                    f"'{username}' is the last administrator; promote someone else first."
                )
            previous = user.role
            user.role = role
            session.add(user)
            audit.record(
                session,
                actor,
                f"user.{verb}",
                f"user:{username}",
                now=now,
                summary=f"{verb.capitalize()}d {username} from {previous} to {role}.",
                detail={"user_id": user.id, "from": previous, "to": role},
            )
            user_id = user.id
        self.guard.set_role(user_id, role)
        return get_user(self.db, username)
