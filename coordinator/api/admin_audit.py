"""Administrator REST: the audit log of administrators' actions. Transport only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from coordinator.admin import audit
from coordinator.admin.models import AuditEntry
from coordinator.api.deps import AdminUser, ServicesDep

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])

Limit = Annotated[int, Query(ge=1, le=audit.MAX_PAGE, description=f"1..{audit.MAX_PAGE}")]
Offset = Annotated[int, Query(ge=0, le=10**9)]


class AuditEntryOut(BaseModel):
    id: int
    at: datetime
    actor: str = Field(description="the administrator's username")
    action: str = Field(description=", ".join(audit.ACTIONS))
    target: str = Field(description="user:<name>, node:<id>, job:<id> or pricing")
    summary: str = Field(description="one sentence saying what happened")
    detail: dict[str, Any]


class AuditLogOut(BaseModel):
    entries: list[AuditEntryOut]
    total: int


def entry_out(entry: AuditEntry) -> AuditEntryOut:
    return AuditEntryOut(
        id=entry.id or 0,
        at=entry.at,
        actor=entry.actor,
        action=entry.action,
        target=entry.target,
        summary=entry.summary,
        detail=entry.detail,
    )


@router.get("/audit-log", response_model=AuditLogOut)
def audit_log(
    _admin: AdminUser,
    services: ServicesDep,
    actor: Annotated[str, Query(max_length=audit.MAX_FILTER)] = "",
    action: Annotated[str, Query(max_length=audit.MAX_FILTER)] = "",
    target: Annotated[
        str, Query(max_length=audit.MAX_FILTER, description="exact, or a prefix ending in ':'")
    ] = "",
    limit: Limit = 50,
    offset: Offset = 0,
) -> AuditLogOut:
    """Administrators' actions, newest first."""
    page = audit.query(
        services.db, actor=actor, action=action, target=target, limit=limit, offset=offset
    )
    return AuditLogOut(entries=[entry_out(e) for e in page.entries], total=page.total)
