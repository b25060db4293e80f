"""Administrator REST for accounts: list, disable/enable, promote/demote. Transport only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from coordinator.accounts.models import ROLE_ADMIN, ROLE_USER
from coordinator.admin import users
from coordinator.api.admin_audit import Limit, Offset
from coordinator.api.deps import AdminUser, ServicesDep

router = APIRouter(prefix="/api/v1/admin/users", tags=["admin"])

Username = Annotated[str, Path(max_length=64)]


class AdminUserOut(BaseModel):
    user_id: int
    username: str
    email: str
    role: str
    disabled: bool
    created_at: datetime
    balance_micro: int
    nodes: int
    jobs: int


class AdminUserListOut(BaseModel):
    users: list[AdminUserOut]
    total: int


def _out(row: users.UserRow) -> AdminUserOut:
    return AdminUserOut.model_validate(row, from_attributes=True)


@router.get("", response_model=AdminUserListOut)
def list_users(
    _admin: AdminUser,
    services: ServicesDep,
    q: Annotated[str, Query(max_length=254, description="part of the username or email")] = "",
    role: Annotated[Literal["", "user", "admin"], Query()] = "",
    disabled: bool | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> AdminUserListOut:
    rows, total = users.list_users(
        services.db, q=q, role=role, disabled=disabled, limit=limit, offset=offset
    )
    return AdminUserListOut(users=[_out(r) for r in rows], total=total)


@router.post("/{username}/disable", response_model=AdminUserOut)
async def disable(username: Username, admin: AdminUser, services: ServicesDep) -> AdminUserOut:
    """The user can no longer sign in; their tokens stop working and their nodes are refused."""
    return _out(await run_in_threadpool(services.user_admin.set_disabled, admin, username, True))


@router.post("/{username}/enable", response_model=AdminUserOut)
async def enable(username: Username, admin: AdminUser, services: ServicesDep) -> AdminUserOut:
    return _out(await run_in_threadpool(services.user_admin.set_disabled, admin, username, False))


@router.post("/{username}/promote", response_model=AdminUserOut)
async def promote(username: Username, admin: AdminUser, services: ServicesDep) -> AdminUserOut:
    """Make the user an administrator (their next sign-in or refresh carries the role)."""
    return _out(await run_in_threadpool(services.user_admin.set_role, admin, username, ROLE_ADMIN))


@router.post("/{username}/demote", response_model=AdminUserOut)
async def demote(username: Username, admin: AdminUser, services: ServicesDep) -> AdminUserOut:
    """Make an administrator a plain user again (at once, for tokens already issued too)."""
    return _out(await run_in_threadpool(services.user_admin.set_role, admin, username, ROLE_USER))
