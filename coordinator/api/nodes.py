"""REST for node owners: list your nodes, inspect one, revoke its credential (owners and admins)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from coordinator.api.deps import CurrentUser, ServicesDep
from coordinator.nodes.service import ONLINE_TTL_S, NodeView

router = APIRouter(prefix="/api/v1/nodes", tags=["nodes"])


class NodeOut(BaseModel):
    """A node as its owner sees it. The credential is never included: it is shown once, at registration."""

    id: str
    owner_id: int
    hostname: str
    cpu_cores: int
    memory_gb: float
    cpu_score: float
    gpu_score: float
    gpu_memory_gb: float
    gpu_name: str
    location: str
    port: int
    docker_status: bool
    status: str = Field(description="registered, idle, busy, paused or offline")
    status_message: str
    cpu_usage_percent: float
    memory_usage_percent: float
    gpu_usage_percent: float
    online: bool = Field(
        description=f"heard from within the last {ONLINE_TTL_S} s, not revoked, not reported offline"
    )
    revoked: bool
    registered_at: datetime
    last_seen_at: datetime | None
    revoked_at: datetime | None


class NodeListOut(BaseModel):
    nodes: list[NodeOut]


def _out(node: NodeView) -> NodeOut:
    return NodeOut.model_validate(node, from_attributes=True)


@router.get("", response_model=NodeListOut)
def list_nodes(user: CurrentUser, services: ServicesDep) -> NodeListOut:
    return NodeListOut(nodes=[_out(n) for n in services.nodes.list_for_owner(user.user_id)])


@router.get("/{node_id}", response_model=NodeOut)
def get_node(node_id: str, user: CurrentUser, services: ServicesDep) -> NodeOut:
    return _out(services.nodes.get(node_id, user))


@router.post("/{node_id}/revoke", response_model=NodeOut)
def revoke_node(node_id: str, user: CurrentUser, services: ServicesDep) -> NodeOut:
    return _out(services.nodes.revoke(node_id, user))
