"""The dispatcher: performs the scheduling core's decisions and keeps it fed.

The pure :class:`~coordinator.scheduling.core.Scheduler` lives on the event loop thread and is only touched
there. Everything that reads or writes the database runs on the DB thread pool, and its outcome comes back
to the loop as core events. The database is the record: after a restart the core is rebuilt from the queued
tasks and active leases (:meth:`Dispatcher.start`), so no job and no ledger entry is lost.

A worker's report is one write transaction per batch: the leases' results, the verifier's verdict, the
payments (escrow → worker wallet and platform fees, through the ledger), trust updates, the job's end and
its refund, and the release of dependent jobs. Duplicate and late reports change nothing.

Speed. Grants and reports are the hot paths: they read and write leases, tasks and nodes as plain rows with
Core statements built once at import (a fixed number per batch, with ``executemany`` for the updates), pay
all of a batch's verified tasks with one ``ledger.post_many`` call (still one ledger transaction and one
idempotency key per task), and share their write transaction with concurrent polls and reports
(``Database.write_grouped_async``); the reports of one group are recorded in one pass
(:meth:`Dispatcher._record_reports`). A poll whose answer cannot be delivered (the worker hung up after it was
leased tasks) gives the leases back at once, without charging the tasks an attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, Table, bindparam, case, insert, update
from sqlalchemy import select as sa_select
from sqlalchemy.orm import defer
from sqlmodel import Session, SQLModel, col, select

from coordinator.accounts.tokens import Principal
from coordinator.clock import Clock
from coordinator.db import Database
from coordinator.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from coordinator.jobs import service as jobs
from coordinator.jobs.blobs import BlobStore
from coordinator.jobs.models import (
    JOB_CANCELLED,
    JOB_FAILED,
    JOB_FINAL,
    JOB_QUEUED,
    JOB_RUNNING,
    LEASE_ACTIVE,
    LEASE_CANCELLED,
    LEASE_EXPIRED,
    LEASE_FAILED,
    LEASE_INVALID,
    LEASE_REPORTED,
    LEASE_VALID,
    TASK_ACCEPTED,
    TASK_FAILED,
    TASK_FINAL,
    TASK_QUEUED,
    TASK_RUNNING,
    Blob,
    Job,
    Lease,
    Task,
    TaskLog,
)
from coordinator.jobs.spec import JobSpec
from coordinator.ledger import service as ledger
from coordinator.metrics import Metrics
from coordinator.nodes.models import Node
from coordinator.rawsql import RawStatement, padded
from coordinator.rewards import pricing
from coordinator.scheduling import core
from coordinator.scheduling.liveness import LivenessStore
from coordinator.scheduling.wake import WakeBus
from coordinator.verification import core as verification

logger = logging.getLogger(__name__)

T = TypeVar("T")
WORK_TOPIC = "work"
# Statuses a worker reports that are a comparable result of the task itself (deterministic for the job).
RESULT_STATUSES = frozenset({"succeeded", "failed", "timeout", "oom", "output_too_large"})
# Statuses that say the node could not run it (Docker missing, image missing, crash): retry elsewhere.
RUN_ERROR_STATUSES = frozenset({"error"})
MAX_LOG_BYTES_PER_TASK = 1024 * 1024  # per lease: what a submitter can read back
NODE_SEEN_WRITE_EVERY = timedelta(seconds=15)
# How often stranded tasks are looked for (core.CheckStranded).
STRANDED_CHECK_EVERY = timedelta(seconds=5)


@dataclass(frozen=True, slots=True)
class LeaseInput:
    path: str
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class JobInfo:
    job_id: str
    owner_id: int
    spec: JobSpec
    inputs: tuple[LeaseInput, ...]


@dataclass(frozen=True, slots=True)
class TaskInfo:
    task_id: str
    job_id: str
    index: int
    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class LeaseGrant:
    """What a worker receives for one lease (the servicer turns it into the protobuf message)."""

    lease_id: str
    task_id: str
    job_id: str
    image: str
    command: list[str]
    env: dict[str, str]
    inputs: tuple[LeaseInput, ...]
    output_paths: list[str]
    resources: dict[str, Any]
    timeout_s: int
    network_access: bool
    deadline: datetime
    max_output_bytes: int


@dataclass(frozen=True, slots=True)
class PollRequest:
    max_tasks: int
    free_cpu_cores: float
    free_memory_gb: float
    free_gpus: int
    wait_s: float
    docker_available: bool
    allow_network: bool


@dataclass(frozen=True, slots=True)
class ReportedUsage:
    cpu_seconds: float
    peak_memory_bytes: int
    wall_seconds: float
    gpu_seconds: float


@dataclass(frozen=True, slots=True)
class ReportedResult:
    lease_id: str
    status: str
    exit_code: int
    stdout_sha256: str
    outputs: tuple[tuple[str, str, int], ...]  # (path, sha256, size)
    usage: ReportedUsage
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Outcome:
    lease_id: str
    outcome: str  # accepted, duplicate, late, rejected
    reason: str = ""


@dataclass
class _Effects:
    """What a database transaction decided that the in-memory core must now hear about."""

    events: list[core.Event] = field(default_factory=list)
    queued_jobs: list[tuple[JobInfo, list[TaskInfo], list[core.TaskEntry]]] = field(
        default_factory=list
    )
    wake: bool = False
    # node id -> its trust as this transaction wrote it
    trust: dict[str, verification.TrustState] = field(default_factory=dict)
    # verification outcome (agreed, disagreed, quarantined) -> how many, counted once the transaction commits
    outcomes: dict[str, int] = field(default_factory=dict)

    # dispatcher counters (tasks accepted, failed) to add once the transaction commits
    counters: dict[str, int] = field(default_factory=dict)

    def tally(self, counter: str, n: int = 1) -> None:
        self.counters[counter] = self.counters.get(counter, 0) + n

    def count(self, outcome: str, n: int = 1) -> None:
        if n:
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + n


# -- rows and statements of the grant and report paths (Core: no ORM objects, no flush) --------------------
LEASES: Table = SQLModel.metadata.tables[str(Lease.__tablename__)]
TASKS: Table = SQLModel.metadata.tables[str(Task.__tablename__)]
NODES: Table = SQLModel.metadata.tables[str(Node.__tablename__)]
BLOBS: Table = SQLModel.metadata.tables[str(Blob.__tablename__)]
JOBS: Table = SQLModel.metadata.tables[str(Job.__tablename__)]

_LEASE_COLUMNS = (
    LEASES.c.id,
    LEASES.c.task_id,
    LEASES.c.job_id,
    LEASES.c.node_id,
    LEASES.c.state,
    LEASES.c.created_at,
    LEASES.c.status,
    LEASES.c.exit_code,
    LEASES.c.stdout_sha256,
    LEASES.c.outputs,
    LEASES.c.result_hash,
    LEASES.c.usage,
    LEASES.c.reason,
)
_LOCK_LEASES = RawStatement(
    sa_select(*_LEASE_COLUMNS)
    .where(LEASES.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(LEASES.c.id)
    .with_for_update()
)
_TASKS_OF_LEASES = RawStatement(
    sa_select(LEASES.c.id, LEASES.c.task_id).where(
        LEASES.c.id.in_(bindparam("ids", expanding=True))
    )
)
# Earlier reported replicas of the batch's tasks (the batch's own leases are already in hand).
_REPORTED_OF = RawStatement(
    sa_select(*_LEASE_COLUMNS).where(
        LEASES.c.task_id.in_(bindparam("tasks", expanding=True)),
        LEASES.c.state == bindparam("state"),
        LEASES.c.id.not_in(bindparam("ids", expanding=True)),
    )
)
_LOCK_TASKS = RawStatement(
    sa_select(
        TASKS.c.id,
        TASKS.c.job_id,
        TASKS.c.index,
        TASKS.c.state,
        TASKS.c.attempts,
        TASKS.c.replicas_needed,
        TASKS.c.quorum,
        TASKS.c.charged_micro,
    )
    .where(TASKS.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(TASKS.c.id)
    .with_for_update()
)
_LOCK_NODES = RawStatement(
    sa_select(
        NODES.c.id,
        NODES.c.owner_id,
        NODES.c.cpu_score,
        NODES.c.cpu_cores,
        NODES.c.valid_streak,
        NODES.c.valid_results,
        NODES.c.invalid_results,
        NODES.c.quarantined,
        NODES.c.trust_revision,
    )
    .where(NODES.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(NODES.c.id)
    .with_for_update(key_share=True)
)
_BLOB_SIZES = RawStatement(
    sa_select(BLOBS.c.sha256, BLOBS.c.size).where(
        BLOBS.c.sha256.in_(bindparam("shas", expanding=True))
    )
)

# The grant path: a poll's leases, and their tasks and jobs marked running.
_INSERT_LEASE = RawStatement(insert(LEASES))
# The queued-only test is in SET, not WHERE: in WHERE, SQLite's planner (which has no statistics) looked
# the rows up through the state index - walking every queued task, 0.8 ms per poll with 10,000 queued -
# instead of by id.
_TASKS_RUNNING = RawStatement(
    update(TASKS)
    .where(TASKS.c.id.in_(bindparam("ids", expanding=True)))
    .values(state=case((TASKS.c.state == TASK_QUEUED, TASK_RUNNING), else_=TASKS.c.state))
)
_TASKS_RAISED = RawStatement(
    update(TASKS)
    .where(TASKS.c.id.in_(bindparam("ids", expanding=True)))
    .values(quorum=2, replicas_needed=TASKS.c.replicas_needed + 1)
)
_JOBS_RUNNING = RawStatement(
    update(JOBS)
    .where(JOBS.c.id.in_(bindparam("ids", expanding=True)))
    .values(state=case((JOBS.c.state == JOB_QUEUED, JOB_RUNNING), else_=JOBS.c.state))
)


@functools.cache
def _update_by_id(table: Table, columns: tuple[str, ...]) -> RawStatement:
    """``UPDATE table SET columns... WHERE id = :b_id``, for an executemany over rows with these columns."""
    return RawStatement(
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .values({name: bindparam(f"b_{name}") for name in columns})
    )


@dataclass(slots=True)
class _LeaseRow:
    id: str
    task_id: str
    job_id: str
    node_id: str
    state: str
    created_at: datetime
    status: str
    exit_code: int | None
    stdout_sha256: str | None
    outputs: list[dict[str, Any]]
    result_hash: str | None
    usage: dict[str, Any]
    reason: str


@dataclass(slots=True)
class _TaskRow:
    id: str
    job_id: str
    index: int
    state: str
    attempts: int
    replicas_needed: int
    quorum: int
    charged_micro: int


@dataclass(slots=True)
class _NodeRow:
    id: str
    owner_id: int
    cpu_score: float
    cpu_cores: int
    trust: verification.TrustState
    changed: bool = False
    quarantine_reason: str = ""

    @classmethod
    def of(cls, row: Any) -> _NodeRow:
        return cls(
            row.id,
            int(row.owner_id),
            float(row.cpu_score),
            int(row.cpu_cores),
            verification.TrustState(
                int(row.valid_streak),
                int(row.valid_results),
                int(row.invalid_results),
                bool(row.quarantined),
                int(row.trust_revision),
            ),
        )


_JOB_ROW_ONLY = (defer(Job.spec), defer(Job.prices))  # type: ignore[arg-type]
PRICE_TABLES_KEPT = 10_000
"""Parsed job price tables the dispatcher keeps (a job's prices never change after submission)."""


class _Batch:
    """What one report transaction has loaded, and the row changes it will write in one go at the end."""

    def __init__(
        self,
        session: Session,
        conn: Connection,
        now: datetime,
        price_tables: dict[str, pricing.PriceTable],
    ) -> None:
        self.session = session
        self.conn = conn
        self.now = now
        self._prices = price_tables
        self.tasks: dict[str, _TaskRow] = {}
        self.jobs: dict[str, Job] = {}
        self.finishing: dict[str, Job] = {}  # jobs that closed a task: maybe done now
        self.unverifiable: list[tuple[str, str]] = []
        self._leases: dict[str, dict[str, Any]] = {}
        self._tasks: dict[str, dict[str, Any]] = {}
        self._nodes: dict[str, dict[str, Any]] = {}

    def prices(self, job: Job) -> pricing.PriceTable:
        """The job's price table (fixed at submission, so kept across batches)."""
        table = self._prices.get(job.id)
        if table is None:
            if len(self._prices) >= PRICE_TABLES_KEPT:
                self._prices.clear()
            table = self._prices[job.id] = pricing.PriceTable.from_dict(job.prices)
        return table

    def set_lease(self, lease: _LeaseRow, **values: Any) -> None:
        for name, value in values.items():
            if hasattr(lease, name):
                setattr(lease, name, value)
        self._leases.setdefault(lease.id, {}).update(values)

    def set_task(self, task: _TaskRow, **values: Any) -> None:
        for name, value in values.items():
            if hasattr(task, name):
                setattr(task, name, value)
        self._tasks.setdefault(task.id, {}).update(values)

    def set_node(self, node: _NodeRow) -> None:
        trust = node.trust
        values: dict[str, Any] = {
            "valid_streak": trust.valid_streak,
            "valid_results": trust.valid_results,
            "invalid_results": trust.invalid_results,
            "quarantined": trust.quarantined,
            "trust_revision": trust.revision,
        }
        if node.quarantine_reason:
            values["quarantine_reason"] = node.quarantine_reason
        self._nodes[node.id] = values

    def write(self) -> None:
        """One executemany UPDATE per table and set of changed columns."""
        for table, changes in ((LEASES, self._leases), (TASKS, self._tasks), (NODES, self._nodes)):
            groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            for row_id, values in changes.items():
                columns = tuple(sorted(values))
                row = {f"b_{name}": values[name] for name in columns}
                row["b_id"] = row_id
                groups.setdefault(columns, []).append(row)
            for columns, rows in groups.items():
                _update_by_id(table, columns).executemany(self.conn, rows)
            changes.clear()


class Dispatcher:
    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        clock: Clock,
        executor: ThreadPoolExecutor,
        liveness: LivenessStore,
        wake: WakeBus,
        *,
        prices: Callable[[], pricing.PriceTable],
        lease_ttl_s: float,
        heartbeat_interval_s: int,
        node_ttl_s: float,
        max_poll_wait_s: float,
        spot_check_rate: float,
        max_extra_replicas: int,
        max_output_bytes: int,
        default_max_attempts: int,
        replica_wait_s: float = 1800,
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.db = db
        self.blobs = blobs
        self.clock = clock
        self.executor = executor
        self.liveness = liveness
        self.wake = wake
        self.prices = prices
        self._price_tables: dict[str, pricing.PriceTable] = {}
        self.heartbeat_interval_s = heartbeat_interval_s
        self.node_ttl = timedelta(seconds=node_ttl_s)
        self.max_poll_wait_s = max_poll_wait_s
        self.max_extra_replicas = max_extra_replicas
        self.max_output_bytes = max_output_bytes
        self.default_max_attempts = default_max_attempts
        self.replica_wait = timedelta(seconds=replica_wait_s)
        # node id -> (when it last polled or heartbeat, what it can hold when idle), for nodes ready for
        # work (not quarantined, with Docker): which nodes a stranded task could still use (CheckStranded)
        self._ready: dict[str, tuple[datetime, core.NodeOffer]] = {}
        self._stranded_checked: datetime | None = None
        self.core = core.Scheduler(
            lease_ttl=timedelta(seconds=lease_ttl_s),
            new_id=lambda: str(uuid.uuid4()),
            rng=rng,
            spot_check_rate=spot_check_rate,
        )
        self.jobs: dict[str, JobInfo] = {}
        self.tasks: dict[str, TaskInfo] = {}
        # leases the worker must be told to stop, per node (job cancelled, task decided elsewhere)
        self.cancelled: dict[str, set[str]] = {}
        self._node_seen_written: dict[str, datetime] = {}
        # Trust as this process last wrote it, for the nodes whose trust it changed. A polling node's row may
        # be older (the servicer caches it, a long-poll holds it): see effective_trust.
        self.trust: dict[str, verification.TrustState] = {}
        self._log_bytes: dict[str, int] = {}
        self._wallets: dict[int, int] = {}
        self._log_lock = threading.Lock()
        self._tick_task: asyncio.Task[None] | None = None
        self.metrics = metrics or Metrics()
        self.metrics.queue_depth_source = self.core.queue_depth_by_priority
        # task id -> when it was queued, until its first lease (the submit-to-lease latency)
        self._queued_at: dict[str, datetime] = {}
        self.counters = {
            "leases_granted": 0,
            "leases_expired": 0,
            "tasks_accepted": 0,
            "tasks_failed": 0,
            "leases_released": 0,
        }
        # jobs this process has marked running (a grant need not mark them again), until requeued
        self._running_jobs: set[str] = set()
        # tasks started on the loop that nobody awaits (releasing a cancelled poll's leases)
        self._background: set[asyncio.Future[Any]] = set()

    # -- plumbing --------------------------------------------------------------------------------------
    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def _apply(self, effects: _Effects) -> None:
        """Feed a transaction's outcome to the core (on the loop thread), then persist what the core decided
        in turn (tasks out of attempts fail, which may end their jobs)."""
        now = self.clock()
        for node_id, trust in effects.trust.items():
            self._remember_trust(node_id, trust)
        for job, tasks, entries in effects.queued_jobs:
            self.jobs[job.job_id] = job
            self._running_jobs.discard(job.job_id)
            for info in tasks:
                self.tasks[info.task_id] = info
            for entry in entries:
                self.core.handle(core.TaskQueued(entry), now)
                self._queued_at.setdefault(entry.task_id, now)
            effects.wake = effects.wake or bool(entries)
        for counter, n in effects.counters.items():
            self.counters[counter] = self.counters.get(counter, 0) + n
        for outcome, n in effects.outcomes.items():
            self.metrics.verification_outcomes.labels(outcome).inc(n)
        failed: list[core.FailTask] = []
        for event in effects.events:
            if isinstance(event, core.TaskClosed):
                self._queued_at.pop(event.task_id, None)
            elif isinstance(event, core.JobCancelled):
                for task_id in [t for t in self._queued_at if self._job_of(t) == event.job_id]:
                    del self._queued_at[task_id]
            decisions = self.core.handle(event, now)
            self._route(decisions)
            failed += [d for d in decisions if isinstance(d, core.FailTask)]
        if effects.wake:
            await self.wake.publish(WORK_TOPIC)
        if failed:
            more = await self._db(self._persist_failures, failed, now)
            await self._apply(more)

    def _job_of(self, task_id: str) -> str:
        info = self.tasks.get(task_id)
        return info.job_id if info is not None else ""

    def note_trust(self, node_id: str, trust: verification.TrustState) -> None:
        """An administrator changed the node's trust (quarantine, release): it applies to its next poll,
        even one already waiting, unless a verification has written the node's trust since. Call on the
        event loop thread."""
        self._remember_trust(node_id, trust)

    def _remember_trust(self, node_id: str, trust: verification.TrustState) -> None:
        """Keep ``trust`` unless a newer one (a higher revision) is known: verifications may be applied out
        of commit order, and an administrator's change may reach the loop after a later verification."""
        known = self.trust.get(node_id)
        if known is None or trust.revision > known.revision:
            self.trust[node_id] = trust

    def _persist_failures(self, failed: list[core.FailTask], now: datetime) -> _Effects:
        effects = _Effects()
        with self.db.write() as session:
            _lock_tasks_first(session.connection(), {d.task_id for d in failed})
            self._fail_tasks(session, [(d.task_id, d.reason) for d in failed], effects, now)
        return effects

    def _route(self, decisions: Sequence[core.Decision]) -> None:
        """Decisions that need no database write right away (cancellations are told via heartbeats)."""
        for d in decisions:
            if isinstance(d, core.CancelLease):
                self.cancelled.setdefault(d.node_id, set()).add(d.lease_id)

    # -- lifecycle -------------------------------------------------------------------------------------
    async def start(self, tick_s: float = 1.0) -> None:
        await self.wake.start()
        effects, leases, reported = await self._db(self._load)
        await self._apply(effects)
        # Live workers renew within a lease TTL of the restart; the others expire and their tasks requeue.
        deadline = self.clock() + self.core.lease_ttl
        for lease_id, task_id, node_id, owner_id in leases:
            self.core.restore_lease(lease_id, task_id, node_id, owner_id, deadline)
        for task_id, node_id, owner_id in reported:
            self.core.restore_holder(task_id, node_id, owner_id)
        # The liveness store may be empty after a restart: count every restored holder as just seen, so
        # it gets a full node TTL to heartbeat before its leases are taken back.
        await self.liveness.touch_many(sorted({lease[2] for lease in leases}), self.clock())
        logger.info(
            "dispatcher loaded",
            extra={"queued_replicas": self.core.queued_replicas(), "leases": len(leases)},
        )
        self._tick_task = asyncio.create_task(self._ticker(tick_s))

    async def stop(self) -> None:
        if self._tick_task is not None:
            self._tick_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick_task
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self.wake.close()
        await self.liveness.close()

    def _load(self) -> tuple[_Effects, list[tuple[str, str, str, int]], list[tuple[str, str, int]]]:
        effects = _Effects()
        with self.db.read() as session:
            open_jobs = session.exec(
                select(Job).where(col(Job.state).in_((JOB_QUEUED, JOB_RUNNING)))
            ).all()
            for job in open_jobs:
                info = self._job_info(session, job)
                if info is None:
                    continue
                tasks = session.exec(
                    select(Task).where(
                        Task.job_id == job.id, col(Task.state).in_((TASK_QUEUED, TASK_RUNNING))
                    )
                ).all()
                held: dict[str, int] = {}
                for task_id, _lease_id in session.exec(
                    select(Lease.task_id, Lease.id).where(
                        Lease.job_id == job.id, col(Lease.state).in_((LEASE_ACTIVE, LEASE_REPORTED))
                    )
                ).all():
                    held[task_id] = held.get(task_id, 0) + 1
                infos = [TaskInfo(t.id, job.id, t.index, t.params) for t in tasks]
                entries = [
                    self._entry(job, info.spec, t, pending=t.replicas_needed - held.get(t.id, 0))
                    for t in tasks
                ]
                effects.queued_jobs.append((info, infos, entries))
            rows = session.execute(
                sa_select(
                    col(Lease.id),
                    col(Lease.task_id),
                    col(Lease.node_id),
                    col(Lease.node_owner_id),
                    col(Lease.state),
                ).where(
                    col(Lease.state).in_((LEASE_ACTIVE, LEASE_REPORTED)),
                    col(Lease.job_id).in_([j.id for j in open_jobs]),
                )
            ).all()
        active = [(r[0], r[1], r[2], int(r[3])) for r in rows if r[4] == LEASE_ACTIVE]
        reported = [(r[1], r[2], int(r[3])) for r in rows if r[4] == LEASE_REPORTED]
        return effects, active, reported

    async def _ticker(self, tick_s: float) -> None:
        while True:
            await asyncio.sleep(tick_s)
            try:
                await self.tick()
            except Exception:  # keep ticking; the next tick retries what failed
                logger.exception("dispatcher tick failed")

    # -- helpers shared by transactions ---------------------------------------------------------------
    def _job_info(self, session: Session, job: Job) -> JobInfo | None:
        spec = JobSpec.from_stored(job.spec)
        inputs: list[LeaseInput] = []
        for item in spec.inputs:
            if item.sha256:
                blob = session.get(Blob, item.sha256)
                if blob is None:
                    return None
                inputs.append(LeaseInput(item.path, item.sha256, blob.size))
            else:
                found = jobs.parent_output(session, item.from_job_id, item.from_output)
                if found is None:
                    return None
                inputs.append(LeaseInput(item.path, found[0], found[1]))
        return JobInfo(job.id, job.owner_id, spec, tuple(inputs))

    def _entry(
        self,
        job: Job,
        spec: JobSpec,
        task: Task | jobs.NewTask,
        *,
        pending: int,
        req: core.Requirements | None = None,
    ) -> core.TaskEntry:
        return core.TaskEntry(
            task_id=task.id,
            job_id=job.id,
            submitter_id=job.owner_id,
            priority=job.priority,
            req=req or _requirements(spec),
            pending=max(0, pending),
            quorum=task.quorum,
            max_attempts=spec.max_attempts,
            attempts=task.attempts,
            adaptive=spec.replicas == 1,
        )

    def _queue_job(
        self,
        session: Session,
        job: Job,
        effects: _Effects,
        created: Sequence[jobs.NewTask] = (),
    ) -> None:
        """Queue ``job``'s tasks in the core once the transaction commits: ``created``, those a submission
        just wrote (not read back), or else every task of the job as stored."""
        info = self._job_info(session, job)
        if info is None:
            raise NotFound(f"An input of job {job.id} is missing.")
        tasks: Sequence[Task | jobs.NewTask] = created or jobs.tasks_of(session, job.id)
        req = _requirements(info.spec)
        effects.queued_jobs.append(
            (
                info,
                [TaskInfo(t.id, job.id, t.index, t.params) for t in tasks],
                [self._entry(job, info.spec, t, pending=t.replicas_needed, req=req) for t in tasks],
            )
        )

    def _after_job_final(
        self, session: Session, job: Job, effects: _Effects, now: datetime
    ) -> None:
        """Release or fail the jobs that waited on ``job``."""
        ready, doomed = jobs.dependents_ready(session, job.id)
        for child in ready:
            jobs.mark_queued(session, child)
            self._queue_job(session, child, effects)
        for child in doomed:
            jobs.cancel_tasks(
                session,
                child,
                now=now,
                state=TASK_FAILED,
                reason="A job it depends on did not complete.",
            )
            jobs.close_job(
                session,
                child,
                JOB_FAILED,
                now=now,
                reason=f"The job it depends on ({job.id}) {job.state}.",
            )
            self._after_job_final(session, child, effects, now)

    # -- submitters ------------------------------------------------------------------------------------
    async def submit(
        self, principal: Principal, raw_spec: dict[str, Any], idempotency_key: str | None
    ) -> jobs.Submitted:
        def work() -> tuple[jobs.Submitted, _Effects]:
            effects = _Effects()
            with self.db.write() as session:
                submitted = jobs.submit(
                    session,
                    principal,
                    raw_spec,
                    prices=self.prices(),
                    now=self.clock(),
                    default_max_attempts=self.default_max_attempts,
                    idempotency_key=idempotency_key,
                )
                if not submitted.replayed and submitted.job.state == JOB_QUEUED:
                    self._queue_job(session, submitted.job, effects, submitted.tasks)
            return submitted, effects

        submitted, effects = await self._db(work)
        await self._apply(effects)
        return submitted

    async def cancel(
        self,
        principal: Principal,
        job_id: str,
        *,
        reason: str = "Cancelled by its owner.",
        also: Callable[[Session, Job, int], None] | None = None,
    ) -> int:
        """Cancel the job and refund what it did not consume. ``also(session, job, refund)`` runs in the same
        transaction (the admin API writes its audit entry there)."""

        def work() -> tuple[int, _Effects]:
            effects = _Effects()
            now = self.clock()
            with self.db.write() as session:
                job = jobs.get_job(session, job_id, principal)
                if job.state in JOB_FINAL:
                    raise FailedPrecondition(
                        f"The job has already {job.state}; there is nothing to cancel."
                    )
                jobs.cancel_tasks(session, job, now=now)
                session.execute(
                    update(Lease)
                    .where(
                        col(Lease.job_id) == job.id,
                        col(Lease.state).in_((LEASE_ACTIVE, LEASE_REPORTED)),
                    )
                    .values(state=LEASE_CANCELLED, reason="The job was cancelled.")
                )
                refund = jobs.close_job(session, job, JOB_CANCELLED, now=now, reason=reason)
                self._after_job_final(session, job, effects, now)
                if also is not None:
                    also(session, job, refund)
            effects.events.append(core.JobCancelled(job_id))
            return refund, effects

        refund, effects = await self._db(work)
        await self._apply(effects)
        return refund

    async def requeue(
        self,
        job_id: str,
        *,
        initiator_user_id: int | None = None,
        also: Callable[[Session, jobs.Requeued], None] | None = None,
    ) -> jobs.Requeued:
        """Put a failed or cancelled job's unfinished tasks back in the queue with a new escrow hold (see
        ``jobs.requeue_unfinished``). ``also(session, requeued)`` runs in the same transaction."""

        def work() -> tuple[jobs.Requeued, _Effects]:
            effects = _Effects()
            now = self.clock()
            with self.db.write() as session:
                job = session.get(Job, job_id, with_for_update=True) if len(job_id) <= 36 else None
                if job is None:
                    raise NotFound(f"There is no job {job_id[:36]!r}. Check the job id.")
                requeued = jobs.requeue_unfinished(
                    session, job, now=now, initiator_user_id=initiator_user_id
                )
                info = self._job_info(session, job)
                if info is None:
                    raise FailedPrecondition(
                        "An input of this job is no longer stored; submit the job again."
                    )
                effects.queued_jobs.append(
                    (
                        info,
                        [TaskInfo(t.id, job.id, t.index, t.params) for t in requeued.tasks],
                        [
                            self._entry(job, info.spec, t, pending=t.replicas_needed)
                            for t in requeued.tasks
                        ],
                    )
                )
                if also is not None:
                    also(session, requeued)
            return requeued, effects

        requeued, effects = await self._db(work)
        await self._apply(effects)
        return requeued

    # -- workers ---------------------------------------------------------------------------------------
    def _offer(self, node: Node, req: PollRequest) -> core.NodeOffer:
        trusted, quarantined = effective_trust(self._trust(node), self.trust.get(node.id))
        return core.NodeOffer(
            node_id=node.id,
            owner_id=node.owner_id,
            cpu_cores=max(0.0, min(req.free_cpu_cores or node.cpu_cores, float(node.cpu_cores))),
            memory_gb=max(0.0, min(req.free_memory_gb or node.memory_gb, node.memory_gb)),
            gpus=max(0, req.free_gpus),
            gpu_memory_gb=node.gpu_memory_gb,
            gpu_name=node.gpu_name,
            docker=req.docker_available,
            allow_network=req.allow_network,
            trusted=trusted,
            quarantined=quarantined,
            max_tasks=max(0, min(req.max_tasks, 64)),
        )

    async def poll(self, node: Node, req: PollRequest) -> list[LeaseGrant]:
        """Lease up to ``req.max_tasks`` tasks that fit, waiting up to ``req.wait_s`` for some to appear."""
        loop = asyncio.get_running_loop()
        wait_until = loop.time() + max(0.0, min(req.wait_s, self.max_poll_wait_s))
        await self.liveness.touch(node.id, self.clock())
        while True:
            now = self.clock()
            offer = self._offer(node, req)  # afresh: the node's trust may change during a long-poll
            self._note_ready(node, offer, now)
            grants = [
                d for d in self.core.handle(core.Poll(offer), now) if isinstance(d, core.Grant)
            ]
            if grants:
                self.counters["leases_granted"] += len(grants)
                self.metrics.leases_granted.inc(len(grants))
                for grant in grants:
                    queued_at = self._queued_at.pop(grant.task_id, None)
                    if queued_at is not None:
                        self.metrics.submit_to_lease.observe((now - queued_at).total_seconds())
                persist = asyncio.ensure_future(self._persist_grants(node, grants, now))
                try:
                    await asyncio.shield(persist)
                except BaseException:
                    # The poll was cancelled (the worker hung up, or its deadline passed) or the write
                    # failed: the answer will never reach the worker. Give the leases back at once,
                    # without charging the tasks an attempt, rather than let them expire.
                    self._in_background(self._release_undelivered(node, grants, persist))
                    raise
                return [self._lease_grant(g) for g in grants]
            remaining = wait_until - loop.time()
            if remaining <= 0:
                return []
            await self.wake.wait(WORK_TOPIC, remaining)

    def _note_ready(self, node: Node, offer: core.NodeOffer, now: datetime) -> None:
        """Remember a polling node as ready for work, with what it can hold when idle (its whole CPU and
        memory; the most GPUs it has offered), or forget it when it may not take work."""
        if offer.quarantined or not offer.docker:
            self._ready.pop(node.id, None)
            return
        known = self._ready.get(node.id)
        self._ready[node.id] = (
            now,
            replace(
                offer,
                cpu_cores=float(node.cpu_cores),
                memory_gb=float(node.memory_gb),
                gpus=max(offer.gpus, known[1].gpus if known else 0),
                max_tasks=1,
            ),
        )

    def _in_background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _release_undelivered(
        self, node: Node, grants: list[core.Grant], persist: asyncio.Future[None]
    ) -> None:
        """Return the leases of a poll whose answer could not be delivered: the leases are cancelled
        (if their write committed) and their tasks requeued at once, with no attempt lost."""
        try:
            try:
                await persist
                persisted = True
            except Exception:
                persisted = False  # nothing was written; only the core holds the leases
            if persisted:
                await self._db(self._persist_release, [g.lease_id for g in grants])
            now = self.clock()
            effects = _Effects(events=[core.LeaseReleased(g.lease_id) for g in grants], wake=True)
            for g in grants:
                self._queued_at.setdefault(g.task_id, now)
            await self._apply(effects)
            self.counters["leases_released"] += len(grants)
            logger.info(
                "poll cancelled after its grants; leases released",
                extra={"node_id": node.id, "leases": len(grants)},
            )
        except Exception:  # the leases then expire as before; the tick requeues their tasks
            logger.exception("could not release the leases of a cancelled poll")

    def _persist_release(self, lease_ids: list[str]) -> None:
        with self.db.write() as session:
            session.execute(
                update(Lease)
                .where(col(Lease.id).in_(lease_ids), col(Lease.state) == LEASE_ACTIVE)
                .values(
                    state=LEASE_CANCELLED,
                    reason="The poll that took it was cancelled before the worker got it.",
                )
            )

    async def _persist_grants(self, node: Node, grants: list[core.Grant], now: datetime) -> None:
        """Write a poll's leases, and mark their tasks (and jobs) running. The polls of one group are
        written together (``_write_grants``): a few statements for all of them. The group is the
        loop's, shared with the reports (``Database.write_grouped_async``), on SQLite and PostgreSQL alike:
        one thread hand-off and one commit per group. On PostgreSQL that costs no concurrency worth having:
        polls and reports of one job array meet on its rows (the job, its escrow, the fee account) anyway,
        and each commit waits for the disk."""
        task_ids = [g.task_id for g in grants]
        job_ids = sorted({self.tasks[t].job_id for t in task_ids} - self._running_jobs)
        rows = [
            {
                "id": g.lease_id,
                "task_id": g.task_id,
                "job_id": self.tasks[g.task_id].job_id,
                "node_id": node.id,
                "node_owner_id": node.owner_id,
                "state": LEASE_ACTIVE,
                "deadline": g.deadline,
                "created_at": now,
                "status": "",
                "outputs": [],
                "usage": {},
                "charged_micro": 0,
                "paid_micro": 0,
                "reason": "",
            }
            for g in grants
        ]
        granted = _Granted(
            rows, task_ids, [g.task_id for g in grants if g.quorum is not None], job_ids
        )
        await self.db.write_grouped_async(
            lambda session: _write_grants(session, [granted])[0],
            self.executor,
            refusals=PermissionDenied,
            batch=_write_grants,
            request=granted,
            short=True,
        )
        self._running_jobs.update(job_ids)

    def _lease_grant(self, grant: core.Grant) -> LeaseGrant:
        task = self.tasks[grant.task_id]
        job = self.jobs[task.job_id]
        spec = job.spec
        env = dict(spec.env)
        env.update(task.params.get("env", {}))
        env["HIVEMIND_TASK_INDEX"] = str(task.index)
        env["HIVEMIND_JOB_ID"] = job.job_id
        r = spec.resources
        return LeaseGrant(
            lease_id=grant.lease_id,
            task_id=task.task_id,
            job_id=job.job_id,
            image=spec.image,
            command=list(spec.command) + list(task.params.get("args", [])),
            env=env,
            inputs=job.inputs,
            output_paths=list(spec.output_paths),
            resources={
                "cpu_cores": r.cpu_cores,
                "memory_gb": r.memory_gb,
                "gpu_count": r.gpu_count,
                "gpu_memory_gb": r.gpu_memory_gb,
                "disk_gb": r.disk_gb,
                "gpu_name": r.gpu_name,
            },
            timeout_s=spec.timeout_s,
            network_access=spec.network_access,
            deadline=grant.deadline,
            max_output_bytes=self.max_output_bytes,
        )

    async def heartbeat(
        self, node: Node, lease_ids: Sequence[str], usage: dict[str, float], status: str
    ) -> tuple[list[str], list[str], datetime]:
        """Renew the node's leases. Returns (cancelled, unknown, new deadline)."""
        now = self.clock()
        self.metrics.heartbeats.inc()
        await self.liveness.touch(node.id, now)
        ready = self._ready.get(node.id)
        if ready is not None:  # a node busy with long tasks polls rarely; it is still there
            self._ready[node.id] = (now, ready[1])
        decisions = self.core.handle(core.Renew(node.id, tuple(lease_ids)), now)
        told = self.cancelled.pop(node.id, set())
        cancelled = sorted(told)
        unknown = [
            d.lease_id
            for d in decisions
            if isinstance(d, core.UnknownLease) and d.lease_id not in told
        ]
        last = self._node_seen_written.get(node.id)
        if last is None or now - last >= NODE_SEEN_WRITE_EVERY:
            self._node_seen_written[node.id] = now
            await self._db(self._write_node_seen, node.id, now, usage, status)
        return cancelled, unknown, now + self.core.lease_ttl

    def _write_node_seen(
        self, node_id: str, now: datetime, usage: dict[str, float], status: str
    ) -> None:
        values: dict[str, Any] = {"last_seen_at": now}
        if status in ("idle", "busy", "paused"):
            values["status"] = status
        for key in ("cpu_usage_percent", "memory_usage_percent", "gpu_usage_percent"):
            value = usage.get(key)
            if value is not None and 0 <= value <= 100:
                values[key] = value
        with self.db.write() as session:
            session.execute(update(Node).where(col(Node.id) == node_id).values(**values))

    async def tick(self) -> None:
        """Expire leases past their deadline and those of nodes silent past their TTL."""
        now = self.clock()
        decisions = self.core.handle(core.Tick(), now)
        holding = [n for n, leases in self.core.node_leases.items() if leases]
        if holding:
            silent = await self.liveness.silent_since(holding, now - self.node_ttl)
            for node_id in silent:
                decisions += self.core.handle(core.NodeLost(node_id), now)
        decisions += self._check_stranded(now)
        if not decisions:
            return
        expired = [d for d in decisions if isinstance(d, core.Expire)]
        failed = [d for d in decisions if isinstance(d, core.FailTask)]
        self._route(decisions)
        self.counters["leases_expired"] += len(expired)
        self.metrics.leases_expired.inc(len(expired))
        effects = await self._db(self._persist_expiry, expired, failed, now)
        effects.wake = effects.wake or bool(expired)
        await self._apply(effects)

    def _check_stranded(self, now: datetime) -> list[core.Decision]:
        """Every few seconds (it walks every open task), fail the tasks no ready node's owner may run."""
        every = min(STRANDED_CHECK_EVERY, self.replica_wait / 4)
        if self._stranded_checked is not None and now - self._stranded_checked < every:
            return []
        self._stranded_checked = now
        cutoff = now - self.node_ttl
        for node_id in [n for n, (seen, _) in self._ready.items() if seen < cutoff]:
            del self._ready[node_id]
        ready: dict[int, list[core.NodeOffer]] = {}
        for _, offer in self._ready.values():
            ready.setdefault(offer.owner_id, []).append(offer)
        return self.core.handle(core.CheckStranded(ready, self.replica_wait), now)

    def _persist_expiry(
        self, expired: list[core.Expire], failed: list[core.FailTask], now: datetime
    ) -> _Effects:
        effects = _Effects()
        with self.db.write() as session:
            _lock_tasks_first(
                session.connection(), {d.task_id for d in expired} | {d.task_id for d in failed}
            )
            for d in expired:
                session.execute(
                    update(Lease)
                    .where(col(Lease.id) == d.lease_id, col(Lease.state) == LEASE_ACTIVE)
                    .values(state=LEASE_EXPIRED, reason="No heartbeat before the lease deadline.")
                )
                session.execute(
                    update(Task)
                    .where(col(Task.id) == d.task_id, col(Task.state).not_in(TASK_FINAL))
                    .values(attempts=col(Task.attempts) + 1, state=TASK_QUEUED)
                )
            self._fail_tasks(session, [(d.task_id, d.reason) for d in failed], effects, now)
        return effects

    def _fail_tasks(
        self, session: Session, failures: list[tuple[str, str]], effects: _Effects, now: datetime
    ) -> None:
        for task_id, reason in failures:
            task = session.get(Task, task_id, with_for_update=True)
            if task is None or task.state in TASK_FINAL:
                continue
            task.state = TASK_FAILED
            task.failure_reason = reason[:500]
            task.finished_at = now
            session.add(task)
            effects.tally("tasks_failed")
            job = session.get(Job, task.job_id, with_for_update=True)
            assert job is not None
            job.tasks_failed += 1
            if not job.failure_reason:
                job.failure_reason = f"Task {task.index}: {reason}"[:500]
            session.add(job)
            session.flush()
            if jobs.finish_if_done(session, job, now=now):
                self._after_job_final(session, job, effects, now)

    # -- results ---------------------------------------------------------------------------------------
    async def report(self, node: Node, results: Sequence[ReportedResult]) -> list[Outcome]:
        """Record a node's results. Shielded: once its write has started, a caller that goes away (the
        worker hung up) still has what it wrote fed to the core, which would otherwise not hear of it."""
        task = asyncio.ensure_future(self._report(node.id, list(results)))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return await asyncio.shield(task)

    async def _report(self, node_id: str, results: list[ReportedResult]) -> list[Outcome]:
        def alone(session: Session) -> tuple[list[Outcome], _Effects]:
            return self._record_results_in(session, node_id, results)

        # Concurrent reports share a transaction (see _persist_grants) and are recorded in one pass together.
        outcomes, effects = await self.db.write_grouped_async(
            alone,
            self.executor,
            refusals=PermissionDenied,
            batch=self._record_reports,
            request=(node_id, results),
        )
        await self._apply(effects)
        return outcomes

    def _record_results_in(
        self, session: Session, node_id: str, results: list[ReportedResult]
    ) -> tuple[list[Outcome], _Effects]:
        """One node's report, in a write transaction: see :meth:`_record_reports`. Raises
        PermissionDenied, before writing anything, when a result is for a lease not given to the node."""
        [answer] = self._record_reports(session, [(node_id, results)])
        if isinstance(answer, PermissionDenied):
            raise answer
        return answer

    def _record_reports(
        self, session: Session, reports: list[tuple[str, list[ReportedResult]]]
    ) -> list[tuple[list[Outcome], _Effects] | PermissionDenied]:
        """Several nodes' reports (node id, results) in one write transaction, answered in order (see
        :meth:`_record_pass`). Reports that touch the same task go in successive passes, in the order
        they came, so each one meets the task as it would one at a time: a third replica that arrives
        with the two that decide it is late, as it would be a moment after them, not paid for."""
        task_of = _tasks_of_leases(session.connection(), reports)
        if len(reports) == 1:
            return self._record_pass(session, reports, task_of)
        passes: list[list[int]] = [[]]
        seen: set[str] = set()
        for i, (_, results) in enumerate(reports):
            tasks = {task_of[r.lease_id] for r in results if r.lease_id in task_of}
            if tasks & seen:
                passes.append([])
                seen = set()
            passes[-1].append(i)
            seen |= tasks
        answers: list[tuple[list[Outcome], _Effects] | PermissionDenied] = []
        for members in passes:
            answers += self._record_pass(session, [reports[i] for i in members], task_of)
        return answers

    def _record_pass(
        self,
        session: Session,
        reports: list[tuple[str, list[ReportedResult]]],
        task_of: dict[str, str],
    ) -> list[tuple[list[Outcome], _Effects] | PermissionDenied]:
        """Several nodes' reports, none touching a task another one touches, in a fixed number of
        statements whatever their number and size. ``task_of``: each named lease's task.

        Leases, tasks and nodes are read and written as plain rows with Core statements (one SELECT ...
        FOR UPDATE per table, one executemany UPDATE per table at the end); the jobs are the only ORM
        objects (a job array is one row). Every verified task's payment is its own ledger transaction
        with its own idempotency key, and all of them are posted together (``ledger.post_many``).

        Each report is answered in order: its outcomes and effects, or its refusal. A report naming a lease
        not given to its node is refused whole and records nothing. The effects of the whole batch go with
        the first answer that is not a refusal (the others carry none), so they are fed to the core once. A
        crash anywhere rolls everything back."""
        effects = _Effects()
        now = self.clock()
        batch = _Batch(session, session.connection(), now, self._price_tables)
        ids = sorted({r.lease_id for _, results in reports for r in results if r.lease_id})
        # Tasks before leases (PostgreSQL). A report settling a task writes the leases of the task's other
        # replicas too; a report that locked its own leases first and then waited for the task (a
        # repeated report, say) would hold exactly what the first one needs: a deadlock.
        task_ids = sorted({task_of[i] for i in ids if i in task_of})
        batch.tasks = {
            row.id: _TaskRow(*row)
            for row in _LOCK_TASKS.rows(batch.conn, {"ids": padded(task_ids)})
        }
        leases = {
            row.id: _LeaseRow(*row) for row in _LOCK_LEASES.rows(batch.conn, {"ids": padded(ids)})
        }
        answers: list[tuple[list[Outcome], _Effects] | PermissionDenied] = []
        for node_id, results in reports:  # all-or-nothing per report, before anything is written
            answers.append(_refusal(leases, node_id, results) or ([], _Effects()))
        job_ids = sorted({x.job_id for x in leases.values()})
        batch.jobs = self._lock_jobs(session, job_ids)
        recorded = [
            (results, answer[0])
            for (_, results), answer in zip(reports, answers, strict=True)
            if not isinstance(answer, PermissionDenied)
        ]
        shas = {r.stdout_sha256 for results, _ in recorded for r in results} | {
            o[1] for results, _ in recorded for r in results for o in r.outputs
        }
        blob_sizes = {
            str(sha): int(size)
            for sha, size in _BLOB_SIZES.rows(batch.conn, {"shas": padded(sorted(shas))})
        }
        touched: dict[str, None] = {}  # tasks with a new comparable result, in report order
        for results, outcomes in recorded:
            for result in results:
                lease = leases[result.lease_id]
                outcome = self._record_one(batch, lease, result, blob_sizes, effects)
                outcomes.append(outcome)
                if lease.state == LEASE_REPORTED and outcome.outcome == "accepted":
                    touched[lease.task_id] = None
        if touched:
            self._verify_batch(batch, leases, list(touched), effects)
        batch.write()
        for job in batch.finishing.values():
            if jobs.finish_if_done(session, job, now=now):
                self._after_job_final(session, job, effects, now)
        if batch.unverifiable:
            self._fail_tasks(session, batch.unverifiable, effects, now)
        for i, answer in enumerate(answers):
            if not isinstance(answer, PermissionDenied):
                answers[i] = (answer[0], effects)
                break
        return answers

    def _lock_jobs(self, session: Session, job_ids: list[str]) -> dict[str, Job]:
        """The batch's jobs as ORM objects, locked. The JSON columns are not loaded: they are kept parsed in
        memory (the dispatcher's jobs, the price tables), and reading them again for every report costs
        more than the rest of the row. On SQLite the whole database is locked already, and the reports of
        one group commit share a session: a job another report of the group loaded is taken from the
        session, not read again."""
        if self.db.is_sqlite:
            found = {j: session.get(Job, j, options=_JOB_ROW_ONLY) for j in job_ids}
            return {j: job for j, job in found.items() if job is not None}
        return {
            j.id: j
            for j in session.exec(
                select(Job)
                .where(col(Job.id).in_(job_ids))
                .order_by(col(Job.id))
                .with_for_update()
                .options(*_JOB_ROW_ONLY)
            )
        }

    def _record_one(
        self,
        batch: _Batch,
        lease: _LeaseRow,
        result: ReportedResult,
        blob_sizes: dict[str, int],
        effects: _Effects,
    ) -> Outcome:
        task = batch.tasks[lease.task_id]
        now = batch.now
        if lease.state != LEASE_ACTIVE:
            kind = (
                "duplicate"
                if lease.state in (LEASE_REPORTED, LEASE_VALID, LEASE_INVALID)
                else "late"
            )
            return Outcome(
                lease.id, kind, f"This lease was already {lease.state}; nothing changed."
            )
        if task.state in TASK_FINAL:
            batch.set_lease(lease, state=LEASE_CANCELLED)
            return Outcome(
                lease.id, "late", "The task was already decided; this result is not needed."
            )
        batch.set_lease(
            lease, reported_at=now, status=result.status[:24], reason=result.reason[:500]
        )
        if (
            result.status == "cancelled"
        ):  # the node's owner paused or stopped it: no attempt is lost
            batch.set_lease(lease, state=LEASE_CANCELLED)
            effects.events.append(core.LeaseReleased(lease.id))
            effects.wake = True
            return Outcome(lease.id, "accepted", "Given back; the task goes to another node.")
        if result.status in RUN_ERROR_STATUSES or result.status not in RESULT_STATUSES:
            batch.set_lease(lease, state=LEASE_FAILED)
            batch.set_task(task, attempts=task.attempts + 1)
            reason = result.reason or "The node could not run the task."
            effects.events.append(core.LeaseFailed(lease.id, reason))
            effects.wake = True
            return Outcome(
                lease.id, "accepted", "Recorded as a failed run; the task will be retried."
            )

        job = batch.jobs[lease.job_id]
        spec = self._spec(job)
        problem = self._check_outputs(spec, result, blob_sizes)
        if problem:
            batch.set_lease(lease, state=LEASE_FAILED, reason=problem[:500])
            effects.events.append(core.LeaseFailed(lease.id, problem))
            effects.wake = True
            return Outcome(lease.id, "rejected", problem)

        r = spec.resources
        checked = pricing.checked_usage(
            pricing.Usage(
                result.usage.cpu_seconds,
                result.usage.peak_memory_bytes,
                result.usage.wall_seconds,
                result.usage.gpu_seconds,
            ),
            observed_seconds=(now - lease.created_at).total_seconds(),
            cpu_cores=r.cpu_cores,
            memory_gb=r.memory_gb,
            gpu_count=r.gpu_count,
        )
        batch.set_lease(
            lease,
            state=LEASE_REPORTED,
            exit_code=result.exit_code,
            stdout_sha256=result.stdout_sha256,
            outputs=[{"path": p, "sha256": s, "size": n} for p, s, n in result.outputs],
            result_hash=verification.result_hash(
                result.exit_code,
                result.stdout_sha256,
                [(p, s) for p, s, _ in result.outputs],
                status=result.status,
            ),
            usage={
                "claimed": {
                    "cpu_seconds": result.usage.cpu_seconds,
                    "peak_memory_bytes": result.usage.peak_memory_bytes,
                    "wall_seconds": result.usage.wall_seconds,
                    "gpu_seconds": result.usage.gpu_seconds,
                },
                "checked": {
                    "cpu_seconds": checked.cpu_seconds,
                    "peak_memory_bytes": checked.peak_memory_bytes,
                    "wall_seconds": checked.wall_seconds,
                    "gpu_seconds": checked.gpu_seconds,
                },
            },
        )
        effects.events.append(core.LeaseReported(lease.id))
        return Outcome(lease.id, "accepted")

    def _spec(self, job: Job) -> JobSpec:
        known = self.jobs.get(job.id)
        return known.spec if known is not None else JobSpec.from_stored(job.spec)

    @staticmethod
    def _check_outputs(spec: JobSpec, result: ReportedResult, blob_sizes: dict[str, int]) -> str:
        for sha in {result.stdout_sha256} | {s for _, s, _ in result.outputs}:
            if not sha or sha not in blob_sizes:
                return "The report names a file that was never uploaded (stdout or an output); it is not accepted."
        declared = spec.output_paths
        for path, sha, size in result.outputs:
            if not any(path == d or path.startswith(d.rstrip("/") + "/") for d in declared):
                return f"The report names an output '{path[:80]}' that the job did not ask for."
            if blob_sizes[sha] != size:
                return f"The output '{path[:80]}' was reported with the wrong size."
        return ""

    def _verify_batch(
        self,
        batch: _Batch,
        leases: dict[str, _LeaseRow],
        touched: list[str],
        effects: _Effects,
    ) -> None:
        """Decide every touched task, then settle the accepted ones: their nodes are locked in one
        statement, their payments posted in one ledger call."""
        # Each touched task's reported replicas: this batch's (in memory) and earlier ones (one query).
        reported: dict[str, list[_LeaseRow]] = {t: [] for t in touched}
        for x in leases.values():
            if x.state == LEASE_REPORTED and x.task_id in reported:
                reported[x.task_id].append(x)
        for row in _REPORTED_OF.rows(
            batch.conn,
            {"tasks": padded(touched), "state": LEASE_REPORTED, "ids": padded(sorted(leases))},
        ):
            reported[row.task_id].append(_LeaseRow(*row))
        accepted: list[tuple[_TaskRow, verification.Accept, list[_LeaseRow]]] = []
        for task_id in touched:
            task = batch.tasks[task_id]
            if task.state in TASK_FINAL:
                continue
            replicas = sorted(reported[task_id], key=lambda x: (x.created_at, x.id))
            job = batch.jobs[task.job_id]
            spec = self._spec(job)
            # Replicas still to come: running ones and those queued but not leased yet.
            running = max(0, task.replicas_needed - len(replicas))
            max_replicas = max(spec.replicas, task.quorum) + self.max_extra_replicas
            verdict = verification.decide(
                [verification.Reported(x.id, x.node_id, x.result_hash or "") for x in replicas],
                quorum=task.quorum,
                running=running,
                max_replicas=max_replicas,
            )
            match verdict:
                case verification.Wait():
                    pass
                case verification.NeedMore(count):
                    batch.set_task(task, replicas_needed=task.replicas_needed + count)
                    effects.events.append(core.MoreReplicas(task.id, count))
                    effects.wake = True
                case verification.Unverifiable(reason):
                    effects.count("disagreed", len(replicas))
                    for x in replicas:
                        batch.set_lease(x, state=LEASE_INVALID)
                    batch.unverifiable.append((task.id, reason))
                    effects.events.append(core.TaskClosed(task.id))
                case verification.Accept():
                    accepted.append((task, verdict, replicas))
        if not accepted:
            return
        # Lock the nodes before reading their trust, so that tasks settled at the same moment (other
        # batches) each count; in id order, so two settlements cannot deadlock. NO KEY UPDATE
        # (PostgreSQL): it does not wait for the key-share locks that updating a lease takes on its node.
        node_ids = sorted({x.node_id for _, _, replicas in accepted for x in replicas})
        nodes = {
            row.id: _NodeRow.of(row)
            for row in _LOCK_NODES.rows(batch.conn, {"ids": padded(node_ids)})
        }
        payments: list[ledger.PostingRequest] = []
        for task, verdict, replicas in accepted:
            by_id = {x.id: x for x in replicas}
            job = batch.jobs[task.job_id]
            payment = self._settle(
                batch,
                job,
                task,
                [by_id[i] for i in verdict.valid],
                [by_id[i] for i in verdict.invalid],
                nodes,
                effects,
            )
            if payment is not None:
                payments.append(payment)
            winner = by_id[verdict.valid[0]]
            succeeded = winner.status == "succeeded" and winner.exit_code == 0
            failure = ""
            if not succeeded:
                failure = (
                    winner.reason
                    or f"The task ended with status {winner.status}, exit code {winner.exit_code}."
                )[:500]
            batch.set_task(
                task,
                result_hash=verdict.result_hash,
                exit_code=winner.exit_code,
                stdout_sha256=winner.stdout_sha256,
                outputs=list(winner.outputs),
                finished_at=batch.now,
                state=TASK_ACCEPTED if succeeded else TASK_FAILED,
                failure_reason=failure,
            )
            if succeeded:
                job.tasks_done += 1
                effects.tally("tasks_accepted")
            else:
                job.tasks_failed += 1
                effects.tally("tasks_failed")
                if not job.failure_reason:
                    job.failure_reason = f"Task {task.index}: {failure}"[:500]
            effects.events.append(core.TaskClosed(task.id))
            batch.finishing[job.id] = job
        if payments:
            ledger.post_many(batch.session, "task_payment", payments, now=batch.now)
        for node_row in nodes.values():
            if node_row.changed:
                node_row.trust = replace(node_row.trust, revision=node_row.trust.revision + 1)
                effects.trust[node_row.id] = node_row.trust
                batch.set_node(node_row)

    def _settle(
        self,
        batch: _Batch,
        job: Job,
        task: _TaskRow,
        valid: list[_LeaseRow],
        invalid: list[_LeaseRow],
        nodes: dict[str, _NodeRow],
        effects: _Effects,
    ) -> ledger.PostingRequest | None:
        """Charge the submitter's escrow for each agreeing replica and pay its node's owner, minus the fee;
        returns the task's ledger transaction (escrow -> each agreeing node's owner, and the fee)."""
        prices = batch.prices(job)
        spec = self._spec(job)
        agreed = pricing.smallest([pricing.Usage(**x.usage["checked"]) for x in valid])
        credits: dict[int, int] = {}
        total_fee = 0
        task_charged = task.charged_micro
        for lease in valid:
            node = nodes[lease.node_id]
            charge = pricing.price_micro(
                agreed,
                memory_gb=spec.resources.memory_gb,
                factor=pricing.cpu_factor(node.cpu_score, node.cpu_cores),
                prices=prices,
            )
            charge = min(charge, job.escrow_micro - job.charged_micro)
            worker_share, fee = pricing.split_fee(charge, prices)
            wallet = self._wallet(batch.session, node.owner_id)
            credits[wallet] = credits.get(wallet, 0) + worker_share
            total_fee += fee
            batch.set_lease(lease, state=LEASE_VALID, charged_micro=charge, paid_micro=worker_share)
            job.charged_micro += charge
            task_charged += charge
            node.trust = verification.after_valid(node.trust)
            node.changed = True
            effects.count("agreed")
        batch.set_task(task, charged_micro=task_charged)
        for lease in invalid:
            batch.set_lease(
                lease,
                state=LEASE_INVALID,
                reason="The result disagreed with the quorum; not paid.",
            )
            node = nodes[lease.node_id]
            effects.count("disagreed")
            was_quarantined = node.trust.quarantined
            node.trust = verification.after_invalid(node.trust)
            node.changed = True
            if node.trust.quarantined and not was_quarantined:
                effects.count("quarantined")
                node.quarantine_reason = (
                    f"{node.trust.invalid_results} results disagreed with the quorum."
                )
            if node.trust.quarantined:
                logger.warning(
                    "node quarantined",
                    extra={"node_id": node.id, "invalid_results": node.trust.invalid_results},
                )
        total = sum(credits.values()) + total_fee
        if total <= 0 or job.escrow_account_id is None:
            return None
        entries = [(job.escrow_account_id, -total), *((w, a) for w, a in credits.items() if a)]
        if total_fee:
            entries.append((ledger.system_accounts(batch.session, now=batch.now).fees, total_fee))
        return ledger.PostingRequest(
            entries,
            memo=f"Task {task.index} of job {job.name or job.id}"[:200],
            idempotency_key=f"pay:{task.id}",
        )

    def _wallet(self, session: Session, user_id: int) -> int:
        """A user's wallet account id (they never change, so they are remembered)."""
        wallet = self._wallets.get(user_id)
        if wallet is None:
            found = ledger.wallet_id(session, user_id)
            assert found is not None, f"user {user_id} has no wallet"
            wallet = self._wallets[user_id] = found
        return wallet

    @staticmethod
    def _trust(node: Node) -> verification.TrustState:
        return verification.TrustState(
            node.valid_streak,
            node.valid_results,
            node.invalid_results,
            node.quarantined,
            node.trust_revision,
        )

    # -- logs, inputs, outputs -------------------------------------------------------------------------
    def lease_for_node(self, node: Node, lease_id: str, *, active: bool = True) -> Lease:
        with self.db.read() as session:
            lease = session.get(Lease, lease_id) if lease_id else None
        if lease is None or lease.node_id != node.id:
            raise PermissionDenied(f"Lease {lease_id[:36]!r} was not given to this node.")
        if active and lease.state != LEASE_ACTIVE:
            raise FailedPrecondition(f"Lease {lease_id[:36]} is {lease.state}; stop working on it.")
        return lease

    async def append_logs(self, node: Node, lines: Sequence[tuple[str, str, str]]) -> int:
        def work() -> tuple[int, set[str]]:
            now = self.clock()
            tasks: dict[str, str] = {}
            rows: list[dict[str, Any]] = []
            for lease_id, stream, text in lines:
                if lease_id not in tasks:
                    # Any state: the last lines of a run may arrive just after its result.
                    tasks[lease_id] = self.lease_for_node(node, lease_id, active=False).task_id
                text = text[:8192]
                with self._log_lock:  # a lease's log is capped; what is past the cap is dropped
                    if (
                        len(self._log_bytes) > 100_000
                    ):  # old leases' counters: forget them wholesale
                        self._log_bytes.clear()
                    used = self._log_bytes.get(lease_id, 0)
                    if used + len(text) > MAX_LOG_BYTES_PER_TASK:
                        continue
                    self._log_bytes[lease_id] = used + len(text)
                rows.append(
                    {
                        "task_id": tasks[lease_id],
                        "lease_id": lease_id,
                        "stream": "stderr" if stream == "stderr" else "stdout",
                        "text": text,
                        "created_at": now,
                    }
                )
            if rows:
                with self.db.write() as session:
                    session.execute(insert(TaskLog), rows)
            return len(rows), set(tasks.values())

        count, task_ids = await self._db(work)
        for task_id in task_ids:
            await self.wake.publish(f"logs:{task_id}")
        return count

    def input_allowed(self, node: Node, lease_id: str, sha256: str) -> None:
        lease = self.lease_for_node(node, lease_id)
        info = self.jobs.get(lease.job_id)
        if info is None or all(i.sha256 != sha256 for i in info.inputs):
            raise PermissionDenied("That file is not an input of this lease.")

    def logs_after(
        self, task_id: str, after_id: int, limit: int = 500
    ) -> tuple[list[TaskLog], bool]:
        with self.db.read() as session:
            rows = list(
                session.exec(
                    select(TaskLog)
                    .where(TaskLog.task_id == task_id, col(TaskLog.id) > after_id)
                    .order_by(col(TaskLog.id))
                    .limit(limit)
                )
            )
            task = session.get(Task, task_id)
            final = task is None or task.state in TASK_FINAL
        return rows, final


@dataclass(frozen=True, slots=True)
class _Granted:
    """One poll's grants, as rows to write."""

    leases: list[dict[str, Any]]
    task_ids: list[str]
    raised: list[str]
    """Tasks to which adaptive replication added a cross-check replica."""
    job_ids: list[str]


def _write_grants(session: Session, polls: list[_Granted]) -> list[None]:
    """The grants of several polls, written together: their leases in one ``executemany``, their tasks
    (and jobs) marked running in one statement each (a task raised in more than one poll of the group is
    raised once per poll, as alone). The core decided them, so nothing is refused.

    The tasks are locked first, as reports, expiries and task failures lock theirs: a lease's insert takes
    a key-share lock on its task, and taken in grant order those could deadlock with an expiry locking the
    same tasks in id order."""
    conn = session.connection()
    task_ids = sorted({t for poll in polls for t in poll.task_ids})
    _lock_tasks_first(conn, task_ids)
    _INSERT_LEASE.executemany(conn, [row for poll in polls for row in poll.leases])
    _TASKS_RUNNING.rowcount(conn, {"ids": padded(task_ids)})
    raised = [t for poll in polls for t in poll.raised]
    if raised and len(set(raised)) == len(raised):
        _TASKS_RAISED.rowcount(conn, {"ids": padded(raised)})
    elif raised:  # a task raised twice is raised twice, as it would be poll by poll
        for poll in polls:
            if poll.raised:
                _TASKS_RAISED.rowcount(conn, {"ids": poll.raised})
    job_ids = sorted({j for poll in polls for j in poll.job_ids})
    if job_ids:
        _JOBS_RUNNING.rowcount(conn, {"ids": padded(job_ids)})
    return [None] * len(polls)


def _lock_tasks_first(conn: Connection, task_ids: Iterable[str]) -> None:
    """PostgreSQL: lock these tasks in id order before anything else, as a report does (its tasks, then
    its leases), so that the two cannot deadlock. SQLite locks the whole database already."""
    if conn.dialect.name == "postgresql":
        ids = sorted(set(task_ids))
        if ids:
            _LOCK_TASKS.rows(conn, {"ids": padded(ids)})


def _requirements(spec: JobSpec) -> core.Requirements:
    r = spec.resources
    return core.Requirements(
        r.cpu_cores, r.memory_gb, r.gpu_count, r.gpu_memory_gb, r.gpu_name, spec.network_access
    )


def _tasks_of_leases(
    conn: Connection, reports: list[tuple[str, list[ReportedResult]]]
) -> dict[str, str]:
    """Lease id -> task id, for the leases the reports name that exist (read without locking)."""
    ids = sorted({r.lease_id for _, results in reports for r in results if r.lease_id})
    return {str(i): str(t) for i, t in _TASKS_OF_LEASES.rows(conn, {"ids": padded(ids)})}


def _refusal(
    leases: dict[str, _LeaseRow], node_id: str, results: list[ReportedResult]
) -> PermissionDenied | None:
    for result in results:
        lease = leases.get(result.lease_id)
        if lease is None or lease.node_id != node_id:
            return PermissionDenied(
                f"Lease {result.lease_id[:36]!r} was not given to this node; its result cannot be accepted."
            )
    return None


def effective_trust(
    row: verification.TrustState, written: verification.TrustState | None
) -> tuple[bool, bool]:
    """(trusted, quarantined) for a polling node, from its row as the caller holds it (seconds old, perhaps:
    the servicer caches it, a long-poll holds it) and its trust as this process last wrote it, if it did.

    The newer of the two decides: the one with the higher revision (every write of a node's trust, a
    verification's or an administrator's, in this process or another, adds one under the row's lock). So a
    node is trusted from the result that earns it, not when its cached row is next read; a quarantine this
    process makes applies at once; and a row read after another process's write (a release, say) wins over
    what this one remembers."""
    if written is None or row.revision > written.revision:
        return row.trusted, row.quarantined
    if written.revision > row.revision:
        return written.trusted, written.quarantined
    # One revision is one write, so both hold the same state; were they to differ, the stricter applies.
    quarantined = row.quarantined or written.quarantined
    return row.trusted and written.trusted and not quarantined, quarantined


def parse_outputs(items: Sequence[tuple[str, str, int]]) -> tuple[tuple[str, str, int], ...]:
    for path, _sha, size in items:
        if size < 0:
            raise InvalidArgument(f"Output '{path[:60]}' has a negative size.")
    return tuple(items)
