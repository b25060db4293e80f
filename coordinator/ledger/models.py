"""Ledger tables: accounts (with a cached balance), transactions, and their entries (which sum to zero)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

MICRO_PER_CPT = 1_000_000

# Account kinds. User wallets and escrow may never go negative; the mint is the source of all CPT, so its
# balance is minus everything ever minted.
KIND_USER = "user"
KIND_MINT = "mint"
KIND_FEES = "fees"
KIND_ESCROW = "escrow"

MINT_ACCOUNT = "system:mint"
FEES_ACCOUNT = "system:fees"


class LedgerAccount(SQLModel, table=True):
    __tablename__ = "ledger_accounts"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True)  # "user:<id>", "system:mint", "escrow:<job>"
    kind: str = Field(max_length=16)
    user_id: int | None = Field(default=None, foreign_key="users.id", unique=True)
    balance_micro: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    created_at: datetime


class LedgerTransaction(SQLModel, table=True):
    __tablename__ = "ledger_transactions"
    __table_args__ = (UniqueConstraint("idempotency_scope", "idempotency_key"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=32)  # grant, signup_grant, transfer, escrow_hold, ...
    initiator_user_id: int | None = Field(default=None, foreign_key="users.id")
    idempotency_scope: str | None = Field(default=None, max_length=64)
    idempotency_key: str | None = Field(default=None, max_length=128)
    # sha256 of the request that used the key; a replay with different parameters is refused.
    request_fingerprint: str | None = Field(default=None, max_length=64)
    memo: str = Field(default="", max_length=200)
    created_at: datetime


class LedgerEntry(SQLModel, table=True):
    __tablename__ = "ledger_entries"
    __table_args__ = (Index("ix_ledger_entries_account_id_id", "account_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    transaction_id: int = Field(foreign_key="ledger_transactions.id", index=True)
    account_id: int = Field(foreign_key="ledger_accounts.id")
    amount_micro: int = Field(sa_column=Column(BigInteger, nullable=False))
    balance_after_micro: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_at: datetime
