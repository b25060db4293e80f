"""Helpers for ledger tests: make users with wallets, grant, and take a snapshot of the whole ledger so a
test can assert that a refused request wrote nothing."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from coordinator.accounts.models import User
from coordinator.clock import utcnow
from coordinator.db import Database
from coordinator.ledger import service as ledger
from coordinator.ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction

CPT = 1_000_000


def make_user(db: Database, username: str, *, grant_micro: int = 0) -> int:
    """A user with a wallet (as accounts.register makes one), optionally holding ``grant_micro``."""
    now = utcnow()
    with db.write() as session:
        user = User(
            username=username, email=f"{username}@example.org", password_hash="x", created_at=now
        )
        session.add(user)
        session.flush()
        assert user.id is not None
        ledger.open_user_wallet(session, user.id, now=now)
        if grant_micro:
            ledger.grant(session, user.id, grant_micro, now=now)
        return user.id


def balance(db: Database, user_id: int) -> int:
    with db.read() as session:
        return ledger.get_balance(session, user_id)


def audit(db: Database) -> list[str]:
    with db.read() as session:
        return ledger.audit(session)


@dataclass(frozen=True)
class Snapshot:
    balances: dict[str, int]
    transactions: int
    entries: int


def snapshot(db: Database) -> Snapshot:
    with db.read() as session:
        balances = {
            str(name): int(bal)
            for name, bal in session.execute(
                select(LedgerAccount.name, LedgerAccount.balance_micro)
            )
        }
        txs = session.execute(select(func.count()).select_from(LedgerTransaction)).scalar_one()
        entries = session.execute(select(func.count()).select_from(LedgerEntry)).scalar_one()
    return Snapshot(balances=balances, transactions=int(txs), entries=int(entries))
