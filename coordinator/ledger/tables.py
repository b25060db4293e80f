"""The ledger's tables as SQLAlchemy Core ``Table`` objects, for statements on the hot paths (no ORM
objects, no flush)."""

from __future__ import annotations

from sqlalchemy import Table
from sqlmodel import SQLModel

from coordinator.accounts.models import User
from coordinator.ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction


def _table(model: type[SQLModel]) -> Table:
    """The Core table behind a SQLModel class (hot paths use Core statements, not ORM objects)."""
    return SQLModel.metadata.tables[str(model.__tablename__)]


ACCOUNTS = _table(LedgerAccount)
TRANSACTIONS = _table(LedgerTransaction)
ENTRIES = _table(LedgerEntry)
USERS = _table(User)
