"""Job use cases that touch only the database: submit (validate, escrow, create tasks), look up, list,
mark cancelled, finish (refund) and release dependents. Scheduling state lives in coordinator/scheduling.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from coordinator.accounts.tokens import Principal
from coordinator.db import Database
from coordinator.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from coordinator.jobs.blobs import check_sha256
from coordinator.jobs.estimate import check_budget
from coordinator.jobs.models import (
    JOB_CANCELLED,
    JOB_COMPLETED,
    JOB_FAILED,
    JOB_FINAL,
    JOB_QUEUED,
    JOB_WAITING,
    TASK_ACCEPTED,
    TASK_CANCELLED,
    TASK_FAILED,
    TASK_FINAL,
    TASK_QUEUED,
    TASK_WAITING,
    Blob,
    Job,
    JobDependency,
    Task,
)
from coordinator.jobs.spec import JobSpec, parse_spec
from coordinator.ledger import service as ledger
from coordinator.ledger.errors import InsufficientFunds
from coordinator.ledger.models import LedgerAccount
from coordinator.rewards.pricing import PriceTable, minimum_job_cost

TASKS = Task.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class NewTask:
    """A task as :func:`submit` created it (what the scheduler needs of it, without reading it back)."""

    id: str
    index: int
    params: dict[str, Any]
    quorum: int
    attempts: int
    replicas_needed: int


@dataclass(frozen=True, slots=True)
class Submitted:
    job: Job
    spec: JobSpec
    task_ids: list[str]
    replayed: bool
    tasks: tuple[NewTask, ...] = ()
    """The tasks created (empty for a replayed submission)."""


def _task_params(spec: JobSpec, index: int) -> dict[str, Any]:
    if spec.parameter_sets:
        return dict(spec.parameter_sets[index])
    return {}


def get_job(session: Session, job_id: str, principal: Principal | None = None) -> Job:
    job = session.get(Job, job_id) if job_id and len(job_id) <= 36 else None
    if job is None:
        raise NotFound(f"There is no job {job_id[:36]!r}. Check the job id.")
    if principal is not None and job.owner_id != principal.user_id and not principal.is_admin:
        raise PermissionDenied("This job belongs to someone else.")
    return job


def submit(
    session: Session,
    principal: Principal,
    raw_spec: dict[str, Any],
    *,
    prices: PriceTable,
    now: datetime,
    default_max_attempts: int,
    idempotency_key: str | None = None,
) -> Submitted:
    """Validate, hold the budget in escrow and create the job and its tasks — in the caller's transaction,
    so a refusal at any step leaves nothing behind."""
    spec = parse_spec(raw_spec, default_max_attempts=default_max_attempts)
    key = ledger.check_idempotency_key(idempotency_key)
    if key is not None:
        existing = session.exec(
            select(Job).where(Job.owner_id == principal.user_id, Job.idempotency_key == key)
        ).first()
        if existing is not None:
            ids = list(
                session.exec(
                    select(Task.id).where(Task.job_id == existing.id).order_by(col(Task.index))
                )
            )
            return Submitted(existing, JobSpec.from_stored(existing.spec), ids, replayed=True)

    check_budget(spec, prices)

    for item in spec.inputs:
        if item.sha256:
            check_sha256(item.sha256, f"sha256 of input '{item.path}'")
            if session.get(Blob, item.sha256) is None:
                raise InvalidArgument(
                    f"Input '{item.path}' refers to a file that was never uploaded ({item.sha256[:12]}…). "
                    "Upload it first."
                )

    state = JOB_QUEUED
    for parent_id in spec.depends_on:
        parent = session.get(Job, parent_id)
        if parent is None or (parent.owner_id != principal.user_id and not principal.is_admin):
            raise InvalidArgument(
                f"The dependency {parent_id!r} is not one of your jobs. Check the job id."
            )
        if parent.state in (JOB_FAILED, JOB_CANCELLED):
            raise FailedPrecondition(
                f"The dependency {parent_id} has {parent.state}; this job could never run."
            )
        if parent.state != JOB_COMPLETED:
            state = JOB_WAITING
        for item in spec.inputs:
            if item.from_job_id == parent_id:
                _, _, path = item.from_output.rpartition(":")
                if path not in JobSpec.from_stored(parent.spec).output_paths:
                    raise InvalidArgument(
                        f"Input '{item.path}' wants '{path}' from job {parent_id}, which does not collect "
                        "that output path."
                    )

    job_id = str(uuid.uuid4())
    # Escrow: the whole budget moves from the wallet to the job's escrow account (refused if short).
    wallet = ledger.wallet_id(session, principal.user_id)
    if wallet is None:
        raise FailedPrecondition("Your account has no wallet yet. Sign in again.")
    escrow = ledger.open_escrow_account(session, job_id, now=now)
    ledger.post(
        session,
        "escrow_hold",
        [(wallet, -spec.max_budget_micro), (escrow, spec.max_budget_micro)],
        now=now,
        memo=f"Budget held for job {spec.name or job_id}"[:200],
        initiator_user_id=principal.user_id,
    )
    job = Job(
        id=job_id,
        owner_id=principal.user_id,
        name=spec.name,
        spec=spec.as_dict(),
        state=state,
        priority=spec.priority,
        task_count=spec.task_count,
        replicas=spec.replicas,
        quorum=spec.quorum,
        escrow_account_id=escrow,
        escrow_micro=spec.max_budget_micro,
        prices=prices.as_dict(),
        idempotency_key=key,
        created_at=now,
    )
    session.add(job)
    try:
        session.flush()
    except IntegrityError:
        raise FailedPrecondition(
            "A job with this idempotency key was submitted at the same moment."
        ) from None
    for parent_id in spec.depends_on:
        session.add(JobDependency(job_id=job_id, parent_id=parent_id))
    task_state = TASK_QUEUED if state == JOB_QUEUED else TASK_WAITING
    task_ids = [str(uuid.uuid4()) for _ in range(spec.task_count)]
    rows: list[dict[str, Any]] = [
        {
            "id": task_ids[i],
            "job_id": job_id,
            "index": i,
            "params": _task_params(spec, i),
            "state": task_state,
            "attempts": 0,
            "replicas_needed": spec.replicas,
            "quorum": spec.quorum,
            "outputs": [],
            "charged_micro": 0,
            "failure_reason": "",
            "created_at": now,
        }
        for i in range(spec.task_count)
    ]
    session.execute(insert(TASKS), rows)
    tasks = tuple(
        NewTask(r["id"], r["index"], r["params"], r["quorum"], 0, r["replicas_needed"])
        for r in rows
    )
    return Submitted(job, spec, task_ids, replayed=False, tasks=tasks)


def list_jobs(
    session: Session,
    principal: Principal,
    *,
    page_size: int,
    page_token: str,
    state: str = "",
    all_users: bool = False,
) -> tuple[list[Job], str]:
    page_size = page_size or 50
    if not 1 <= page_size <= 200:
        raise InvalidArgument("page_size must be between 1 and 200.")
    query = select(Job)
    if not (all_users and principal.is_admin):
        query = query.where(Job.owner_id == principal.user_id)
    if state:
        query = query.where(Job.state == state)
    if page_token:
        try:
            created, _, job_id = page_token.partition("|")
            cursor = datetime.fromisoformat(created)
        except ValueError:
            raise InvalidArgument("The page_token is not valid; start again without one.") from None
        query = query.where(
            (col(Job.created_at) < cursor)
            | ((col(Job.created_at) == cursor) & (col(Job.id) < job_id))
        )
    jobs = list(
        session.exec(
            query.order_by(col(Job.created_at).desc(), col(Job.id).desc()).limit(page_size + 1)
        )
    )
    next_token = ""
    if len(jobs) > page_size:
        jobs = jobs[:page_size]
        next_token = f"{jobs[-1].created_at.isoformat()}|{jobs[-1].id}"
    return jobs, next_token


def tasks_of(session: Session, job_id: str) -> list[Task]:
    return list(session.exec(select(Task).where(Task.job_id == job_id).order_by(col(Task.index))))


def finish_if_done(session: Session, job: Job, *, now: datetime) -> bool:
    """When every task is final, close the job (completed or failed) and refund the unused escrow. Uses the
    job's task counters, which the dispatcher keeps in the same transaction as each task's end."""
    if job.state in JOB_FINAL or job.tasks_done + job.tasks_failed < job.task_count:
        return False
    close_job(session, job, JOB_FAILED if job.tasks_failed else JOB_COMPLETED, now=now)
    return True


def close_job(session: Session, job: Job, state: str, *, now: datetime, reason: str = "") -> int:
    """Put ``job`` in a final state and refund what the escrow still holds. Returns the refund."""
    job.state = state
    job.finished_at = now
    if reason and not job.failure_reason:
        job.failure_reason = reason[:500]
    refund = job.escrow_micro - job.charged_micro
    if refund > 0 and job.escrow_account_id is not None:
        wallet = ledger.wallet_id(session, job.owner_id)
        assert wallet is not None
        ledger.post(
            session,
            "escrow_refund",
            [(job.escrow_account_id, -refund), (wallet, refund)],
            now=now,
            memo=f"Unused budget of job {job.name or job.id}"[:200],
            # One refund per escrow account: a requeued job holds its budget again in a new account
            # (see requeue_unfinished), and its next refund must not replay the first one.
            idempotency_key=f"refund:{job.id}:{job.escrow_account_id}",
        )
        job.refunded_micro = refund
    session.add(job)
    return refund


def cancel_tasks(
    session: Session, job: Job, *, now: datetime, state: str = TASK_CANCELLED, reason: str = ""
) -> None:
    session.execute(
        update(Task)
        .where(col(Task.job_id) == job.id, col(Task.state).not_in(TASK_FINAL))
        .values(state=state, finished_at=now, failure_reason=reason[:500])
    )


@dataclass(frozen=True, slots=True)
class Requeued:
    job: Job
    tasks: list[Task]
    held_micro: int
    requeue_number: int


def requeue_unfinished(
    session: Session, job: Job, *, now: datetime, initiator_user_id: int | None = None
) -> Requeued:
    """Reopen a failed or cancelled job: its tasks without a verified result go back to the queue, and what
    was left of its budget (``escrow_micro - charged_micro``, refunded when it closed) is held again from the
    owner's wallet in a new escrow account, in the caller's transaction.

    Tasks with a verified result stay as they are (accepted ones, and those whose program itself failed:
    that result was agreed on and paid for; running it again would fail the same way). A job whose parents
    have not all completed cannot be requeued; the dependents a failed job doomed stay failed."""
    if job.state not in (JOB_FAILED, JOB_CANCELLED):
        hint = " Cancel it first if it is stuck." if job.state not in JOB_FINAL else ""
        raise FailedPrecondition(
            f"Only a failed or cancelled job can be requeued; this one is {job.state}.{hint}"
        )
    parents = session.exec(
        select(Job.id, Job.state)
        .join(JobDependency, col(JobDependency.parent_id) == col(Job.id))
        .where(JobDependency.job_id == job.id)
    ).all()
    unfinished_parents = [pid for pid, state in parents if state != JOB_COMPLETED]
    if unfinished_parents:
        raise FailedPrecondition(
            f"This job depends on {', '.join(unfinished_parents)}, which did not complete; "
            "requeue that job first and requeue this one after it completes."
        )
    rerun = [
        t
        for t in tasks_of(session, job.id)
        if t.state in (TASK_FAILED, TASK_CANCELLED) and t.result_hash is None
    ]
    if not rerun:
        raise FailedPrecondition(
            "Every task of this job has a verified result; there is nothing to run again."
        )
    spec = JobSpec.from_stored(job.spec)
    prices = PriceTable.from_dict(job.prices)
    hold = job.escrow_micro - job.charged_micro
    minimum = minimum_job_cost(len(rerun), spec.replicas, prices)
    if hold < minimum or hold <= 0:
        raise FailedPrecondition(
            f"What is left of this job's budget ({ledger.format_cpt(hold)}) is below the least that "
            f"running {len(rerun)} task(s) again can cost ({ledger.format_cpt(minimum)}). "
            "Submit the job again with a larger budget."
        )
    wallet = ledger.wallet_id(session, job.owner_id)
    if wallet is None:
        raise FailedPrecondition("The job's owner has no wallet.")
    prefix = f"escrow:{job.id}:r"
    earlier = session.exec(
        select(func.count())
        .select_from(LedgerAccount)
        .where(col(LedgerAccount.name).startswith(prefix, autoescape=True))
    ).one()
    number = int(earlier) + 1
    escrow = ledger.open_escrow_account(session, f"{job.id}:r{number}", now=now)
    try:
        ledger.post(
            session,
            "escrow_hold",
            [(wallet, -hold), (escrow, hold)],
            now=now,
            memo=f"Budget held again for requeued job {job.name or job.id}"[:200],
            initiator_user_id=initiator_user_id,
        )
    except InsufficientFunds as exc:
        raise FailedPrecondition(
            f"The owner's wallet holds {ledger.format_cpt(exc.balance_micro)}; running this job again "
            f"holds {ledger.format_cpt(hold)} of budget. Grant them CPT first, or let them top up."
        ) from None
    failed_again = sum(1 for t in rerun if t.state == TASK_FAILED)
    for task in rerun:
        task.state = TASK_QUEUED
        task.attempts = 0
        task.failure_reason = ""
        task.finished_at = None
        task.replicas_needed = spec.replicas
        task.quorum = spec.quorum
        session.add(task)
    job.state = JOB_QUEUED
    job.escrow_account_id = escrow
    job.refunded_micro = 0  # the refund went back into escrow
    job.tasks_failed -= failed_again
    job.failure_reason = ""
    job.finished_at = None
    session.add(job)
    session.flush()
    return Requeued(job, rerun, hold, number)


def dependents_ready(session: Session, parent_id: str) -> tuple[list[Job], list[Job]]:
    """Jobs waiting on ``parent_id``: (those whose parents all completed, those with a failed parent)."""
    children = session.exec(
        select(Job)
        .join(JobDependency, col(JobDependency.job_id) == col(Job.id))
        .where(JobDependency.parent_id == parent_id, Job.state == JOB_WAITING)
    ).all()
    ready, doomed = [], []
    for child in children:
        parent_states = session.exec(
            select(Job.state)
            .join(JobDependency, col(JobDependency.parent_id) == col(Job.id))
            .where(JobDependency.job_id == child.id)
        ).all()
        if any(s in (JOB_FAILED, JOB_CANCELLED) for s in parent_states):
            doomed.append(child)
        elif all(s == JOB_COMPLETED for s in parent_states):
            ready.append(child)
    return ready, doomed


def mark_queued(session: Session, job: Job) -> list[str]:
    job.state = JOB_QUEUED
    session.add(job)
    session.execute(update(Task).where(col(Task.job_id) == job.id).values(state=TASK_QUEUED))
    return list(session.exec(select(Task.id).where(Task.job_id == job.id)))


def parent_output(session: Session, parent_id: str, from_output: str) -> tuple[str, int] | None:
    """(sha256, size) of an accepted output of a parent job: ``path`` (task 0) or ``index:path``."""
    index_text, sep, path = from_output.rpartition(":")
    index = int(index_text) if sep and index_text.isdigit() else 0
    task = session.exec(select(Task).where(Task.job_id == parent_id, Task.index == index)).first()
    if task is None or task.state != TASK_ACCEPTED:
        return None
    for item in task.outputs:
        if item.get("path") == path:
            return str(item["sha256"]), int(item["size"])
    return None


__all__ = [
    "TASK_FAILED",
    "Submitted",
    "cancel_tasks",
    "close_job",
    "dependents_ready",
    "finish_if_done",
    "get_job",
    "list_jobs",
    "mark_queued",
    "parent_output",
    "requeue_unfinished",
    "submit",
    "tasks_of",
]


# -- read side (each opens its own read session) --------------------------------------------------------
def job_with_tasks(db: Database, principal: Principal, job_id: str) -> tuple[Job, list[Task]]:
    with db.read() as session:
        job = get_job(session, job_id, principal)
        return job, tasks_of(session, job.id)


def jobs_page(
    db: Database, principal: Principal, page_size: int, page_token: str, state: str = ""
) -> tuple[list[Job], str]:
    with db.read() as session:
        return list_jobs(
            session, principal, page_size=page_size, page_token=page_token, state=state
        )


def task_at(db: Database, principal: Principal, job_id: str, index: int) -> Task:
    with db.read() as session:
        job = get_job(session, job_id, principal)
        task = session.exec(select(Task).where(Task.job_id == job.id, Task.index == index)).first()
    if task is None:
        raise NotFound(
            f"Job {job_id} has no task {index}; it has {job.task_count} task(s), numbered from 0."
        )
    return task


def result_blob(db: Database, principal: Principal, job_id: str, index: int, path: str) -> str:
    """The sha256 of an accepted output (``@stdout`` for the task's stdout)."""
    task = task_at(db, principal, job_id, index)
    if task.state not in (TASK_ACCEPTED, TASK_FAILED) or task.result_hash is None:
        raise FailedPrecondition(
            f"Task {index} of job {job_id} has no verified result yet (it is {task.state})."
        )
    if path == "@stdout":
        assert task.stdout_sha256 is not None
        return task.stdout_sha256
    for item in task.outputs:
        if item["path"] == path:
            return str(item["sha256"])
    names = ", ".join(o["path"] for o in task.outputs) or "none"
    raise NotFound(
        f"Task {index} of job {job_id} produced no output '{path}'. Its outputs: {names}."
    )
