"""GET /api/v1/overview: the platform at a glance, for every signed-in user. Transport only."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from coordinator.admin.overview import core_usage
from coordinator.api.deps import CurrentUser, ServicesDep

router = APIRouter(prefix="/api/v1", tags=["overview"])


class PointOut(BaseModel):
    at: datetime = Field(description="the start of the minute")
    nodes_online: int | None = Field(description="null before this coordinator process started")
    jobs_queued: int | None
    jobs_running: int | None
    leases_per_min: int
    paid_micro: int


class OverviewOut(BaseModel):
    nodes_online: int
    cpu_cores_available: float = Field(
        description="cores of online, non-quarantined nodes not held by a lease"
    )
    gpus_available: int = Field(description="online, non-quarantined nodes with a free GPU")
    jobs_queued: int
    jobs_running: int
    jobs_done: int = Field(description="completed jobs")
    jobs_failed: int
    jobs_cancelled: int
    jobs_waiting: int = Field(description="waiting for the jobs they depend on")
    dispatch_rate_per_min: int = Field(description="leases granted in the last 60 s")
    paid_today_micro: int = Field(description="task payments since 00:00 UTC")
    series: list[PointOut] = Field(description="the last hour, one point per minute, oldest first")


@router.get("/overview", response_model=OverviewOut)
async def overview(_user: CurrentUser, services: ServicesDep) -> OverviewOut:
    usage = core_usage(services.dispatcher.core)  # here, on the event loop: the core lives there
    snap = await run_in_threadpool(services.overview.snapshot, usage)
    return OverviewOut.model_validate(snap, from_attributes=True)
