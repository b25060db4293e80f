"""REST mirror of TokenService: /api/v1/wallet/balance, /transfer, /transactions. Transport only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field, StrictInt

from coordinator.api.deps import CurrentUser, ServicesDep
from coordinator.ledger.service import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, StatementRow
from coordinator.ledger.usecases import Ledger

router = APIRouter(prefix="/api/v1/wallet", tags=["wallet"])

# Generous caps so oversized input is refused before any work; the domain gives the precise rule.
_SHORT = 1024


def get_ledger(services: ServicesDep) -> Ledger:
    return Ledger(services.db, services.clock)


LedgerDep = Annotated[Ledger, Depends(get_ledger)]


class BalanceOut(BaseModel):
    username: str
    balance_micro: int = Field(description="integer micro-CPT (1 CPT = 1,000,000)")


class TransferBody(BaseModel):
    recipient: str = Field(max_length=_SHORT, examples=["bob"])
    # Strict: "5" or 5.0 are refused rather than coerced; money is an integer of micro-CPT.
    amount_micro: StrictInt = Field(examples=[5_000_000])
    idempotency_key: str | None = Field(
        None,
        max_length=_SHORT,
        description="optional; replaying the same key returns the first result and moves nothing",
    )
    memo: str = Field("", max_length=_SHORT)


class TransferOut(BaseModel):
    transaction_id: str
    recipient: str
    amount_micro: int
    new_balance_micro: int
    replayed: bool = Field(description="true when this key was used before and nothing moved now")
    message: str


class TransactionOut(BaseModel):
    transaction_id: str
    kind: str
    amount_micro: int = Field(description="signed: positive is money in")
    counterparty: str
    timestamp: datetime
    memo: str
    balance_after_micro: int


class TransactionsOut(BaseModel):
    transactions: list[TransactionOut]
    next_page_token: str


def _row(row: StatementRow) -> TransactionOut:
    return TransactionOut(
        transaction_id=str(row.transaction_id),
        kind=row.kind,
        amount_micro=row.amount_micro,
        counterparty=row.counterparty,
        timestamp=row.created_at,
        memo=row.memo,
        balance_after_micro=row.balance_after_micro,
    )


@router.get("/balance", response_model=BalanceOut)
def balance(
    user: CurrentUser,
    ledger: LedgerDep,
    username: Annotated[
        str, Query(max_length=_SHORT, description="admins only: another user")
    ] = "",
) -> BalanceOut:
    found = ledger.balance(user, username)
    return BalanceOut(username=found.username, balance_micro=found.balance_micro)


@router.post("/transfer", response_model=TransferOut)
def transfer(body: TransferBody, user: CurrentUser, ledger: LedgerDep) -> TransferOut:
    result = ledger.transfer(
        user.user_id,
        body.recipient,
        body.amount_micro,
        idempotency_key=body.idempotency_key,
        memo=body.memo,
    )
    return TransferOut(
        transaction_id=str(result.transaction_id),
        recipient=result.recipient_username,
        amount_micro=result.amount_micro,
        new_balance_micro=result.new_balance_micro,
        replayed=result.replayed,
        message=result.message,
    )


@router.get("/transactions", response_model=TransactionsOut)
def transactions(
    user: CurrentUser,
    ledger: LedgerDep,
    page_size: Annotated[int, Query(description=f"1..{MAX_PAGE_SIZE}")] = DEFAULT_PAGE_SIZE,
    page_token: Annotated[str, Query(max_length=_SHORT)] = "",
    username: Annotated[
        str, Query(max_length=_SHORT, description="admins only: another user")
    ] = "",
) -> TransactionsOut:
    rows, next_token = ledger.statement(
        user, username=username, page_size=page_size, page_token=page_token
    )
    return TransactionsOut(transactions=[_row(r) for r in rows], next_page_token=next_token)
