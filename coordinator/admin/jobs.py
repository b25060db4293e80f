"""Administrators' view of every job: list, inspect (tasks, replicas and the nodes that ran them, the
verifier's outcome, charges), logs; and the actions cancel and requeue, which go through the dispatcher so
the scheduling core, the workers and the ledger see them exactly as an owner's cancel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from coordinator.accounts.models import User
from coordinator.accounts.tokens import Principal
from coordinator.admin import audit
from coordinator.clock import Clock
from coordinator.db import Database
from coordinator.errors import InvalidArgument, NotFound
from coordinator.jobs import service as jobs
from coordinator.jobs.models import (
    JOB_CANCELLED,
    JOB_COMPLETED,
    JOB_FAILED,
    JOB_QUEUED,
    JOB_RUNNING,
    JOB_WAITING,
    LEASE_INVALID,
    LEASE_REPORTED,
    TASK_FINAL,
    Job,
    Lease,
    Task,
    TaskLog,
)
from coordinator.ledger import reports
from coordinator.nodes.models import Node
from coordinator.scheduling.service import Dispatcher

JOB_STATES = (JOB_WAITING, JOB_QUEUED, JOB_RUNNING, JOB_COMPLETED, JOB_FAILED, JOB_CANCELLED)


@dataclass(frozen=True, slots=True)
class LeaseRow:
    lease: Lease
    node_hostname: str
    node_owner: str


@dataclass(frozen=True, slots=True)
class TaskRow:
    task: Task
    verification: str
    leases: list[LeaseRow]


@dataclass(frozen=True, slots=True)
class JobDetail:
    job: Job
    owner: str
    requeues: int
    tasks: list[TaskRow]
    charges: list[reports.Movement]


def list_jobs(
    db: Database, *, state: str = "", owner: str = "", limit: int = 50, offset: int = 0
) -> tuple[list[tuple[Job, str]], int]:
    """Every job, newest first, with its owner's username."""
    audit.check_page(limit, offset)
    if state and state not in JOB_STATES:
        raise InvalidArgument(
            f"Unknown job state {state[:20]!r}. Use one of: {', '.join(JOB_STATES)}."
        )
    conditions: list[Any] = []
    if state:
        conditions.append(col(Job.state) == state)
    if owner:
        conditions.append(col(User.username) == owner[:64])
    with db.read() as session:
        total = session.exec(
            select(func.count())
            .select_from(Job)
            .join(User, col(User.id) == col(Job.owner_id))
            .where(*conditions)
        ).one()
        rows = session.exec(
            select(Job, User.username)
            .join(User, col(User.id) == col(Job.owner_id))
            .where(*conditions)
            .order_by(col(Job.created_at).desc(), col(Job.id).desc())
            .offset(offset)
            .limit(limit)
        ).all()
    return [(j, str(u)) for j, u in rows], int(total)


def _verification(task: Task, leases: list[Lease]) -> str:
    if task.state not in TASK_FINAL:
        return "pending"
    if task.result_hash is not None:
        return "agreed"
    if any(x.state == LEASE_INVALID for x in leases):
        return "disagreed"
    if any(x.state == LEASE_REPORTED for x in leases):
        return "undecided"  # results came back, but the replicas to decide between them never ran
    return "not_run"


def job_detail(db: Database, job_id: str) -> JobDetail:
    with db.read() as session:
        job = jobs.get_job(session, job_id)
        owner = session.get(User, job.owner_id)
        tasks = jobs.tasks_of(session, job.id)
        lease_rows = session.exec(
            select(Lease, Node.hostname, User.username)
            .join(Node, col(Node.id) == col(Lease.node_id))
            .join(User, col(User.id) == col(Lease.node_owner_id))
            .where(Lease.job_id == job.id)
            .order_by(col(Lease.created_at), col(Lease.id))
        ).all()
        by_task: dict[str, list[LeaseRow]] = {}
        for lease, hostname, node_owner in lease_rows:
            by_task.setdefault(lease.task_id, []).append(
                LeaseRow(lease, str(hostname), str(node_owner))
            )
        charges = reports.escrow_movements(session, job.id)
    requeues = len({c.transaction_id for c in charges if c.kind == "escrow_hold"}) - 1
    return JobDetail(
        job=job,
        owner=owner.username if owner else "?",
        requeues=max(0, requeues),
        tasks=[
            TaskRow(
                t,
                _verification(t, [r.lease for r in by_task.get(t.id, [])]),
                by_task.get(t.id, []),
            )
            for t in tasks
        ],
        charges=charges,
    )


def job_logs(
    db: Database, job_id: str, *, task_index: int | None, after_seq: int, limit: int
) -> list[tuple[TaskLog, int]]:
    """Log lines of one task, or of all the job's tasks, in the order they arrived, with the task index."""
    with db.read() as session:
        job = jobs.get_job(session, job_id)
        query = (
            select(TaskLog, Task.index)
            .join(Task, col(Task.id) == col(TaskLog.task_id))
            .where(Task.job_id == job.id, col(TaskLog.id) > after_seq)
        )
        if task_index is not None:
            if not 0 <= task_index < job.task_count:
                raise NotFound(
                    f"Job {job.id} has no task {task_index}; it has {job.task_count} task(s), "
                    "numbered from 0."
                )
            query = query.where(Task.index == task_index)
        rows = session.exec(query.order_by(col(TaskLog.id)).limit(limit)).all()
    return [(line, int(index)) for line, index in rows]


class JobAdmin:
    """Cancel and requeue on behalf of an administrator, each with its audit entry in the same transaction."""

    def __init__(self, dispatcher: Dispatcher, clock: Clock) -> None:
        self.dispatcher = dispatcher
        self.clock = clock

    async def cancel(self, actor: Principal, job_id: str) -> int:
        def also(session: Session, job: Job, refund: int) -> None:
            audit.require_admin(session, actor)
            audit.record(
                session,
                actor,
                "job.cancel",
                f"job:{job.id}",
                now=self.clock(),
                summary=f"Cancelled job {job.name or job.id}; refunded {refund} µCPT to its owner.",
                detail={"refunded_micro": refund, "owner_id": job.owner_id},
            )

        return await self.dispatcher.cancel(
            actor, job_id, reason=f"Cancelled by an administrator ({actor.username}).", also=also
        )

    async def requeue(self, actor: Principal, job_id: str) -> jobs.Requeued:
        def also(session: Session, requeued: jobs.Requeued) -> None:
            audit.require_admin(session, actor)
            job = requeued.job
            indices = [t.index for t in requeued.tasks]
            audit.record(
                session,
                actor,
                "job.requeue",
                f"job:{job.id}",
                now=self.clock(),
                summary=f"Requeued {len(indices)} task(s) of job {job.name or job.id}; "
                f"held {requeued.held_micro} µCPT again.",
                detail={
                    "task_indices": indices,
                    "held_micro": requeued.held_micro,
                    "requeue": requeued.requeue_number,
                },
            )

        return await self.dispatcher.requeue(job_id, initiator_user_id=actor.user_id, also=also)
