"""Administrator REST for the ledger: grant (mint) CPT to a user, and audit the books. Transport only."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field, StrictInt

from coordinator.api.deps import AdminUser
from coordinator.api.wallet import LedgerDep

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


@router.post("/grant", response_model=GrantOut)
def grant(body: GrantBody, admin: AdminUser, ledger: LedgerDep) -> GrantOut:
    result = ledger.grant(
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
