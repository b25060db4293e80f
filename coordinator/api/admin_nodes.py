"""Administrator REST for the node pool: list and filter, inspect, quarantine, release, revoke.
Transport only: the domain is coordinator/admin/nodes.py."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from coordinator.admin import nodes as admin_nodes
from coordinator.admin.nodes import AdminNode, LeaseLine
from coordinator.api.admin_audit import AuditEntryOut, Limit, Offset, entry_out
from coordinator.api.deps import AdminUser, ServicesDep
from coordinator.api.nodes import NodeOut
from coordinator.verification.core import QUARANTINE_AFTER, TRUST_STREAK

router = APIRouter(prefix="/api/v1/admin/nodes", tags=["admin"])

NodeId = Annotated[str, Path(max_length=64)]


class AdminNodeOut(NodeOut):
    owner: str = Field(description="the owner's username")
    quarantined: bool
    quarantine_reason: str
    trusted: bool = Field(description=f"{TRUST_STREAK} agreeing results in a row, not quarantined")
    valid_streak: int
    valid_results: int
    invalid_results: int
    active_leases: int


class AdminNodeListOut(BaseModel):
    nodes: list[AdminNodeOut]
    total: int


class LeaseLineOut(BaseModel):
    lease_id: str
    job_id: str
    task_id: str
    task_index: int
    state: str
    status: str
    created_at: datetime
    deadline: datetime
    reported_at: datetime | None
    charged_micro: int
    paid_micro: int
    reason: str


class AdminNodeDetailOut(AdminNodeOut):
    earnings_micro: int = Field(description="everything this node's owner was paid for its results")
    trust_streak_needed: int = TRUST_STREAK
    quarantine_after: int = QUARANTINE_AFTER
    current_leases: list[LeaseLineOut]
    recent_results: list[LeaseLineOut]
    history: list[AuditEntryOut]


class QuarantineIn(BaseModel):
    reason: str = Field(
        max_length=admin_nodes.MAX_REASON,
        examples=["Its results disagree with every other node."],
        description="shown to admins and kept in the audit log",
    )


def node_out(node: AdminNode) -> AdminNodeOut:
    base = NodeOut.model_validate(node.node, from_attributes=True).model_dump()
    return AdminNodeOut(
        **base,
        owner=node.owner,
        quarantined=node.quarantined,
        quarantine_reason=node.quarantine_reason,
        trusted=node.trusted,
        valid_streak=node.valid_streak,
        valid_results=node.valid_results,
        invalid_results=node.invalid_results,
        active_leases=node.active_leases,
    )


def _lease(line: LeaseLine) -> LeaseLineOut:
    return LeaseLineOut.model_validate(line, from_attributes=True)


@router.get("", response_model=AdminNodeListOut)
def list_nodes(
    _admin: AdminUser,
    services: ServicesDep,
    status: Annotated[
        str, Query(max_length=20, description=", ".join(admin_nodes.STATUS_FILTERS))
    ] = "",
    owner: Annotated[str, Query(max_length=64, description="the owner's username")] = "",
    quarantined: bool | None = None,
    gpu: Annotated[bool | None, Query(description="has a GPU")] = None,
    min_trust: Annotated[
        int | None, Query(ge=0, le=10**9, description="the least streak of agreeing results")
    ] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> AdminNodeListOut:
    rows, total = admin_nodes.list_nodes(
        services.db,
        services.clock(),
        status=status,
        owner=owner,
        quarantined=quarantined,
        gpu=gpu,
        min_trust=min_trust,
        limit=limit,
        offset=offset,
    )
    return AdminNodeListOut(nodes=[node_out(n) for n in rows], total=total)


@router.get("/{node_id}", response_model=AdminNodeDetailOut)
def get_node(node_id: NodeId, _admin: AdminUser, services: ServicesDep) -> AdminNodeDetailOut:
    """Hardware, benchmark, trust, current leases, recent results, lifetime earnings and history."""
    detail = admin_nodes.node_detail(services.db, node_id, services.clock())
    return AdminNodeDetailOut(
        **node_out(detail.node).model_dump(),
        earnings_micro=detail.earnings_micro,
        current_leases=[_lease(x) for x in detail.current_leases],
        recent_results=[_lease(x) for x in detail.recent_results],
        history=[entry_out(e) for e in detail.history],
    )


@router.post("/{node_id}/quarantine", response_model=AdminNodeOut)
async def quarantine(
    node_id: NodeId, body: QuarantineIn, admin: AdminUser, services: ServicesDep
) -> AdminNodeOut:
    """The node gets no new leases from now on; the leases it holds may finish."""
    node = await run_in_threadpool(services.node_admin.quarantine, admin, node_id, body.reason)
    services.dispatcher.note_trust(node.node.id, node.trust)  # on the loop, before the next poll
    return node_out(node)


@router.post("/{node_id}/release", response_model=AdminNodeOut)
async def release(node_id: NodeId, admin: AdminUser, services: ServicesDep) -> AdminNodeOut:
    """Lift the quarantine; the node starts untrusted again."""
    node = await run_in_threadpool(services.node_admin.release, admin, node_id)
    services.dispatcher.note_trust(node.node.id, node.trust)
    return node_out(node)


@router.post("/{node_id}/revoke", response_model=AdminNodeOut)
def revoke(node_id: NodeId, admin: AdminUser, services: ServicesDep) -> AdminNodeOut:
    """Revoke the node's credential: the worker must register again."""
    return node_out(services.node_admin.revoke(admin, node_id))
