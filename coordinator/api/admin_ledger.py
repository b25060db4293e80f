"""Administrator REST for the ledger: grant (mint) CPT to a user, the system accounts and totals, any
user's statement, the grants, and the audit of the books. Transport only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field, StrictInt

from coordinator.admin import grants
from coordinator.api.admin_audit import Limit, Offset
from coordinator.api.deps import AdminUser, ServicesDep
from coordinator.api.wallet import LedgerDep, TransactionOut, _row
from coordinator.ledger import reports
from coordinator.ledger.service import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

router = APIRouter(prefix="/api/v1/admin/ledger", tags=["admin"])

_SHORT = 1024


class GrantBody(BaseModel):
    username: str = Field(max_length=_SHORT, examples=["ada"])
    amount_micro: StrictInt = Field(examples=[100_000_000])
    idempotency_key: str | None = Field(None, max_length=_SHORT)
    memo: str = Field("", max_length=_SHORT)


class GrantOut(BaseModel):
    transaction_id: str
    username: str
    amount_micro: int
    new_balance_micro: int
    replayed: bool


class AuditOut(BaseModel):
    status: Literal["ok", "discrepancies"]
    discrepancies: list[str] | None = Field(
        None, description="present only when status is discrepancies"
    )


class AccountOut(BaseModel):
    account_id: int
    name: str
    kind: str
    balance_micro: int


class AccountsOut(BaseModel):
    accounts: list[AccountOut] = Field(description="the system accounts: system:mint, system:fees")
    total_minted_micro: int = Field(description="everything ever minted (minus the mint's balance)")
    wallets_micro: int = Field(description="held in user wallets")
    escrow_micro: int = Field(description="held in job escrow")
    fees_micro: int = Field(description="platform fees collected")


class StatementOut(BaseModel):
    username: str
    balance_micro: int
    transactions: list[TransactionOut]
    next_page_token: str


class GrantLineOut(BaseModel):
    transaction_id: str
    username: str
    amount_micro: int
    kind: str = Field(description="grant (by an admin) or signup_grant")
    memo: str
    initiator: str | None = Field(description="the granting admin's username")
    created_at: datetime


class GrantsOut(BaseModel):
    grants: list[GrantLineOut]
    total: int


@router.post("/grant", response_model=GrantOut)
def grant(body: GrantBody, admin: AdminUser, services: ServicesDep) -> GrantOut:
    """Mint CPT into a user's wallet; recorded in the audit log."""
    result = grants.grant(
        services.db,
        services.clock,
        admin,
        body.username,
        body.amount_micro,
        idempotency_key=body.idempotency_key,
        memo=body.memo,
    )
    return GrantOut(
        transaction_id=str(result.transaction_id),
        username=body.username,
        amount_micro=result.amount_micro,
        new_balance_micro=result.new_balance_micro,
        replayed=result.replayed,
    )


@router.get("/audit", response_model=AuditOut, response_model_exclude_none=True)
def audit(_admin: AdminUser, ledger: LedgerDep) -> AuditOut:
    problems = ledger.audit()
    if not problems:
        return AuditOut(status="ok")
    return AuditOut(status="discrepancies", discrepancies=problems)


@router.get("/accounts", response_model=AccountsOut)
def accounts(_admin: AdminUser, services: ServicesDep) -> AccountsOut:
    with services.db.read() as session:
        t = reports.totals(session)
    return AccountsOut(
        accounts=[AccountOut.model_validate(a, from_attributes=True) for a in t.accounts],
        total_minted_micro=t.total_minted_micro,
        wallets_micro=t.wallets_micro,
        escrow_micro=t.escrow_micro,
        fees_micro=t.fees_micro,
    )


@router.get("/statement/{username}", response_model=StatementOut)
def statement(
    username: Annotated[str, Path(max_length=64)],
    admin: AdminUser,
    ledger: LedgerDep,
    page_size: Annotated[int, Query(description=f"1..{MAX_PAGE_SIZE}")] = DEFAULT_PAGE_SIZE,
    page_token: Annotated[str, Query(max_length=64)] = "",
) -> StatementOut:
    """Any user's history, newest first, as they see it in their wallet."""
    found = ledger.balance(admin, username)
    rows, next_token = ledger.statement(
        admin, username=username, page_size=page_size, page_token=page_token
    )
    return StatementOut(
        username=found.username,
        balance_micro=found.balance_micro,
        transactions=[_row(r) for r in rows],
        next_page_token=next_token,
    )


@router.get("/grants", response_model=GrantsOut)
def grant_list(
    _admin: AdminUser, services: ServicesDep, limit: Limit = 50, offset: Offset = 0
) -> GrantsOut:
    """Every mint into a wallet (admins' grants and sign-up grants), newest first."""
    with services.db.read() as session:
        lines, total = reports.grants(session, limit=limit, offset=offset)
    return GrantsOut(
        grants=[
            GrantLineOut(
                transaction_id=str(g.transaction_id),
                username=g.username,
                amount_micro=g.amount_micro,
                kind=g.kind,
                memo=g.memo,
                initiator=g.initiator,
                created_at=g.created_at,
            )
            for g in lines
        ],
        total=total,
    )
