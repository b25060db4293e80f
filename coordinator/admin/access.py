"""Access tokens are verified without the database and live for minutes. This guard makes a disabled
account's tokens stop at once, and makes a demoted admin's tokens count as a plain user's, on this process.

It holds two small sets (disabled users, users demoted from admin), loaded at start and kept current by the
admin actions; checking them costs two set lookups per call. A token of a user promoted to admin gains the
new role at the next sign-in or refresh (a token never grants more than it says). Every admin action also
re-checks the actor's row in its own transaction (``audit.require_admin``), which covers the window in which
another coordinator process has not heard of a change yet.
"""

from __future__ import annotations

import threading

from sqlmodel import col, select

from coordinator.accounts.models import ROLE_ADMIN, ROLE_USER, User
from coordinator.accounts.tokens import Principal, TokenIssuer
from coordinator.admin.models import AuditEntry
from coordinator.clock import Clock
from coordinator.db import Database
from coordinator.errors import Unauthenticated

DISABLED = "This account is disabled. Contact the coordinator's operator."


class AccessGuard:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._disabled: frozenset[int] = frozenset()
        self._demoted: frozenset[int] = frozenset()

    def load(self, db: Database) -> None:
        """Read the disabled accounts and the demoted admins from the database (at start)."""
        with db.read() as session:
            disabled = set(session.exec(select(User.id).where(col(User.disabled).is_(True))))
            demoted_names = set(
                session.exec(select(AuditEntry.target).where(AuditEntry.action == "user.demote"))
            )
            names = [n.removeprefix("user:") for n in demoted_names]
            demoted = set(
                session.exec(
                    select(User.id).where(col(User.username).in_(names), User.role == ROLE_USER)
                )
            )
        with self._lock:
            self._disabled = frozenset(i for i in disabled if i is not None)
            self._demoted = frozenset(i for i in demoted if i is not None)

    def set_disabled(self, user_id: int, disabled: bool) -> None:
        with self._lock:
            current = set(self._disabled)
            (current.add if disabled else current.discard)(user_id)
            self._disabled = frozenset(current)

    def set_role(self, user_id: int, role: str) -> None:
        with self._lock:
            current = set(self._demoted)
            (current.discard if role == ROLE_ADMIN else current.add)(user_id)
            self._demoted = frozenset(current)

    def check(self, principal: Principal) -> Principal:
        if principal.user_id in self._disabled:
            raise Unauthenticated(DISABLED)
        if principal.is_admin and principal.user_id in self._demoted:
            return Principal(principal.user_id, principal.username, ROLE_USER)
        return principal


class GuardedTokenIssuer(TokenIssuer):
    """A TokenIssuer whose verified principals also pass the :class:`AccessGuard`."""

    def __init__(self, secret: str, ttl_s: int, clock: Clock, guard: AccessGuard) -> None:
        super().__init__(secret, ttl_s, clock)
        self.guard = guard

    def verify(self, token: str) -> Principal:
        return self.guard.check(super().verify(token))
