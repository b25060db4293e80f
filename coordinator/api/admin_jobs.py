"""Administrator REST for every job: list and filter, inspect, logs, cancel, requeue. Transport only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from coordinator.admin import jobs as admin_jobs
from coordinator.api.admin_audit import Limit, Offset
from coordinator.api.deps import AdminUser, ServicesDep
from coordinator.api.jobs import (
    MAX_LOG_PAGE,
    CancelOut,
    JobOut,
    LogLineOut,
    TaskOut,
    _job_fields,
    _log_out,
    _task_out,
)
from coordinator.jobs.models import Job, Lease

router = APIRouter(prefix="/api/v1/admin/jobs", tags=["admin"])

JobId = Annotated[str, Path(max_length=64)]


class AdminJobOut(JobOut):
    owner: str = Field(description="the submitter's username")


class AdminJobListOut(BaseModel):
    jobs: list[AdminJobOut]
    total: int


class ReplicaOut(BaseModel):
    lease_id: str
    node_id: str
    node_hostname: str
    node_owner: str
    state: str = Field(
        description="active, reported, valid (agreed, paid), invalid (disagreed), failed, expired, "
        "cancelled"
    )
    status: str = Field(description="how the run ended, as the worker reported it")
    exit_code: int | None
    result_hash: str | None
    created_at: datetime
    reported_at: datetime | None
    charged_micro: int
    paid_micro: int
    reason: str


class AdminTaskOut(TaskOut):
    quorum: int
    replicas_needed: int
    verification: str = Field(description="pending, agreed, disagreed, undecided or not_run")
    leases: list[ReplicaOut]


class PricesOut(BaseModel):
    cpu_micro_per_core_second: int
    gpu_micro_per_gpu_second: int
    memory_micro_per_gb_second: int
    platform_fee_bps: int
    min_task_charge_micro: int


class ChargeOut(BaseModel):
    transaction_id: str
    kind: str
    amount_micro: int = Field(
        description="signed from the escrow's side: holds +, payments/refunds −"
    )
    memo: str
    created_at: datetime


class AdminJobDetailOut(AdminJobOut):
    requeues: int
    prices: PricesOut = Field(description="the price table the job was submitted under")
    tasks: list[AdminTaskOut]
    charges: list[ChargeOut]


class AdminLogLineOut(LogLineOut):
    task_index: int


class RequeueOut(BaseModel):
    job_id: str
    requeued_tasks: list[int]
    escrow_micro: int = Field(description="the budget held again for the rerun")
    message: str


def _job_out(job: Job, owner: str) -> AdminJobOut:
    return AdminJobOut(**_job_fields(job), owner=owner)


def _replica(lease: Lease, hostname: str, owner: str) -> ReplicaOut:
    return ReplicaOut(
        lease_id=lease.id,
        node_id=lease.node_id,
        node_hostname=hostname,
        node_owner=owner,
        state=lease.state,
        status=lease.status,
        exit_code=lease.exit_code,
        result_hash=lease.result_hash,
        created_at=lease.created_at,
        reported_at=lease.reported_at,
        charged_micro=lease.charged_micro,
        paid_micro=lease.paid_micro,
        reason=lease.reason,
    )


@router.get("", response_model=AdminJobListOut)
def list_jobs(
    _admin: AdminUser,
    services: ServicesDep,
    state: Annotated[str, Query(max_length=20, description=", ".join(admin_jobs.JOB_STATES))] = "",
    owner: Annotated[str, Query(max_length=64, description="the submitter's username")] = "",
    limit: Limit = 50,
    offset: Offset = 0,
) -> AdminJobListOut:
    """Every job, newest first."""
    rows, total = admin_jobs.list_jobs(
        services.db, state=state, owner=owner, limit=limit, offset=offset
    )
    return AdminJobListOut(jobs=[_job_out(j, o) for j, o in rows], total=total)


@router.get("/{job_id}", response_model=AdminJobDetailOut)
def get_job(job_id: JobId, _admin: AdminUser, services: ServicesDep) -> AdminJobDetailOut:
    """Tasks, their replicas and the nodes that ran them, the verifier's outcome and every charge."""
    d = admin_jobs.job_detail(services.db, job_id)
    return AdminJobDetailOut(
        **_job_out(d.job, d.owner).model_dump(),
        requeues=d.requeues,
        prices=PricesOut.model_validate(
            {k: int(v) for k, v in d.job.prices.items() if k in PricesOut.model_fields}
        ),
        tasks=[
            AdminTaskOut(
                **_task_out(t.task).model_dump(),
                quorum=t.task.quorum,
                replicas_needed=t.task.replicas_needed,
                verification=t.verification,
                leases=[_replica(r.lease, r.node_hostname, r.node_owner) for r in t.leases],
            )
            for t in d.tasks
        ],
        charges=[
            ChargeOut(
                transaction_id=str(c.transaction_id),
                kind=c.kind,
                amount_micro=c.amount_micro,
                memo=c.memo,
                created_at=c.created_at,
            )
            for c in d.charges
        ],
    )


@router.get("/{job_id}/logs", response_model=list[AdminLogLineOut])
def job_logs(
    job_id: JobId,
    _admin: AdminUser,
    services: ServicesDep,
    task_index: Annotated[int | None, Query(ge=0, le=100_000, description="one task")] = None,
    after_seq: Annotated[int, Query(ge=0, le=2**62, description="only lines after this seq")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_LOG_PAGE)] = 500,
) -> list[AdminLogLineOut]:
    """Log lines of one task or of all the job's tasks; for a live stream use the owner's endpoint
    ``/api/v1/jobs/{job_id}/tasks/{index}/logs?follow=true``, which admins may also call."""
    rows = admin_jobs.job_logs(
        services.db, job_id, task_index=task_index, after_seq=after_seq, limit=limit
    )
    return [
        AdminLogLineOut(**_log_out(line).model_dump(), task_index=index) for line, index in rows
    ]


@router.post("/{job_id}/cancel", response_model=CancelOut)
async def cancel(job_id: JobId, admin: AdminUser, services: ServicesDep) -> CancelOut:
    """Stop the job (workers kill its containers) and refund its owner what was not consumed."""
    refund = await services.job_admin.cancel(admin, job_id)
    return CancelOut(
        job_id=job_id,
        refunded_micro=refund,
        message="Cancelled; running containers are being stopped.",
    )


@router.post("/{job_id}/requeue", response_model=RequeueOut)
async def requeue(job_id: JobId, admin: AdminUser, services: ServicesDep) -> RequeueOut:
    """Run a failed or cancelled job's unfinished tasks again, holding its remaining budget anew."""
    requeued = await services.job_admin.requeue(admin, job_id)
    indices = [t.index for t in requeued.tasks]
    return RequeueOut(
        job_id=requeued.job.id,
        requeued_tasks=indices,
        escrow_micro=requeued.held_micro,
        message=f"Requeued {len(indices)} task(s); {requeued.held_micro} µCPT held again.",
    )
