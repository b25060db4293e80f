"""Read-only reports on the ledger for operators: system accounts and totals, grants, and the movements of
a job's escrow accounts. Nothing here writes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from coordinator.accounts.models import User
from coordinator.ledger.models import (
    KIND_ESCROW,
    KIND_FEES,
    KIND_MINT,
    KIND_USER,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
)

GRANT_KINDS = ("grant", "signup_grant")


@dataclass(frozen=True, slots=True)
class AccountLine:
    account_id: int
    name: str
    kind: str
    balance_micro: int


@dataclass(frozen=True, slots=True)
class Totals:
    accounts: list[AccountLine]  # the system accounts
    total_minted_micro: int
    wallets_micro: int
    escrow_micro: int
    fees_micro: int


@dataclass(frozen=True, slots=True)
class GrantLine:
    transaction_id: int
    username: str
    amount_micro: int
    kind: str
    memo: str
    initiator: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Movement:
    transaction_id: int
    kind: str
    amount_micro: int  # signed, from the account's side
    memo: str
    created_at: datetime


def totals(session: Session) -> Totals:
    system = session.exec(
        select(LedgerAccount)
        .where(col(LedgerAccount.kind).in_((KIND_MINT, KIND_FEES)))
        .order_by(col(LedgerAccount.id))
    ).all()
    by_kind = dict(
        session.exec(
            select(
                LedgerAccount.kind, func.coalesce(func.sum(LedgerAccount.balance_micro), 0)
            ).group_by(col(LedgerAccount.kind))
        ).all()
    )
    return Totals(
        accounts=[
            AccountLine(int(a.id or 0), a.name, a.kind, int(a.balance_micro)) for a in system
        ],
        total_minted_micro=-int(by_kind.get(KIND_MINT, 0)),
        wallets_micro=int(by_kind.get(KIND_USER, 0)),
        escrow_micro=int(by_kind.get(KIND_ESCROW, 0)),
        fees_micro=int(by_kind.get(KIND_FEES, 0)),
    )


def grants(session: Session, *, limit: int, offset: int) -> tuple[list[GrantLine], int]:
    """Mints into user wallets, newest first."""
    initiator = aliased(User)
    where = (
        col(LedgerTransaction.kind).in_(GRANT_KINDS),
        col(LedgerEntry.amount_micro) > 0,
        col(LedgerAccount.kind) == KIND_USER,
    )
    joined = (
        sa_select(
            col(LedgerTransaction.id),
            col(User.username),
            col(LedgerEntry.amount_micro),
            col(LedgerTransaction.kind),
            col(LedgerTransaction.memo),
            col(initiator.username),
            col(LedgerTransaction.created_at),
        )
        .join(LedgerEntry, col(LedgerEntry.transaction_id) == col(LedgerTransaction.id))
        .join(LedgerAccount, col(LedgerAccount.id) == col(LedgerEntry.account_id))
        .join(User, col(User.id) == col(LedgerAccount.user_id))
        .outerjoin(initiator, col(initiator.id) == col(LedgerTransaction.initiator_user_id))
        .where(*where)
    )
    total = session.exec(
        select(func.count())
        .select_from(LedgerTransaction)
        .join(LedgerEntry, col(LedgerEntry.transaction_id) == col(LedgerTransaction.id))
        .join(LedgerAccount, col(LedgerAccount.id) == col(LedgerEntry.account_id))
        .where(*where)
    ).one()
    rows = session.execute(
        joined.order_by(col(LedgerTransaction.id).desc()).offset(offset).limit(limit)
    ).all()
    lines = [
        GrantLine(int(tx), str(user), int(amount), str(kind), str(memo), who, created)
        for tx, user, amount, kind, memo, who, created in rows
    ]
    return lines, int(total)


def escrow_movements(session: Session, job_id: str) -> list[Movement]:
    """Every movement of the job's escrow account(s) (``escrow:<job>`` and those of its requeues), oldest
    first, signed from the escrow's side: holds positive, payments and refunds negative."""
    rows = session.execute(
        sa_select(
            col(LedgerTransaction.id),
            col(LedgerTransaction.kind),
            col(LedgerEntry.amount_micro),
            col(LedgerTransaction.memo),
            col(LedgerTransaction.created_at),
        )
        .join(LedgerEntry, col(LedgerEntry.transaction_id) == col(LedgerTransaction.id))
        .join(LedgerAccount, col(LedgerAccount.id) == col(LedgerEntry.account_id))
        .where(
            (col(LedgerAccount.name) == f"escrow:{job_id}")
            | col(LedgerAccount.name).startswith(f"escrow:{job_id}:r", autoescape=True)
        )
        .order_by(col(LedgerEntry.id))
    ).all()
    return [Movement(int(t), str(k), int(a), str(m), c) for t, k, a, m, c in rows]
