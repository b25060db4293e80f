"""The platform at a glance, for every signed-in user: nodes online and their free capacity, jobs by
state, the dispatch rate, what was paid today, and the last hour minute by minute.

Counts that only exist "now" (nodes online, jobs queued and running) are sampled once a minute into a ring
of 60 points in memory, so the minutes before this process started have none (``None``). Lease and payment
counts per minute come from the database. A computed overview is reused for a few seconds, so many open
panels cost one computation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlmodel import col, select

from coordinator.admin.nodes import online_condition
from coordinator.clock import Clock
from coordinator.db import Database
from coordinator.jobs.models import JOB_COMPLETED, Job, Lease
from coordinator.ledger.models import KIND_ESCROW, LedgerAccount, LedgerEntry, LedgerTransaction
from coordinator.nodes.models import Node
from coordinator.scheduling import core

logger = logging.getLogger(__name__)

POINTS = 60
CACHE_S = 3.0


@dataclass(frozen=True, slots=True)
class Point:
    at: datetime
    nodes_online: int | None
    jobs_queued: int | None
    jobs_running: int | None
    leases_per_min: int
    paid_micro: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    nodes_online: int
    cpu_cores_available: float
    gpus_available: int
    jobs_queued: int
    jobs_running: int
    jobs_done: int
    jobs_failed: int
    jobs_cancelled: int
    jobs_waiting: int
    dispatch_rate_per_min: int
    paid_today_micro: int
    series: list[Point]


@dataclass(frozen=True, slots=True)
class Usage:
    """What active leases hold per node: (cpu cores, gpus). Read from the scheduling core."""

    by_node: dict[str, tuple[float, int]]


def _minute(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


class Overview:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self._samples: deque[tuple[datetime, int, int, int]] = deque(maxlen=POINTS)
        self._cached: tuple[datetime, Snapshot] | None = None
        self._lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None

    # -- sampling ----------------------------------------------------------------------------------------
    async def start(
        self, run_blocking: Callable[[Callable[[], None]], asyncio.Future[None]]
    ) -> None:
        async def loop() -> None:
            while True:
                try:
                    await run_blocking(self.sample)
                except Exception:  # a failed sample leaves a gap in the chart, nothing worse
                    logger.exception("overview sample failed")
                now = self.clock()
                await asyncio.sleep(60 - now.second - now.microsecond / 1e6 + 0.05)

        self._task = asyncio.create_task(loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def sample(self) -> None:
        now = self.clock()
        nodes, states = self._now_counts(now)
        with self._lock:
            minute = _minute(now)
            if self._samples and self._samples[-1][0] == minute:
                self._samples.pop()
            self._samples.append((minute, nodes, states.get("queued", 0), states.get("running", 0)))

    # -- queries -----------------------------------------------------------------------------------------
    def _now_counts(self, now: datetime) -> tuple[int, dict[str, int]]:
        with self.db.read() as session:
            nodes = session.exec(
                select(func.count()).select_from(Node).where(online_condition(now))
            ).one()
            states = dict(
                session.exec(select(Job.state, func.count()).group_by(col(Job.state))).all()
            )
        return int(nodes), {str(k): int(v) for k, v in states.items()}

    def snapshot(self, usage: Usage) -> Snapshot:
        now = self.clock()
        with self._lock:
            cached = self._cached
        if cached is not None and (now - cached[0]).total_seconds() < CACHE_S:
            return cached[1]
        snap = self._compute(now, usage)
        with self._lock:
            self._cached = (now, snap)
        return snap

    def _compute(self, now: datetime, usage: Usage) -> Snapshot:
        start = _minute(now) - timedelta(minutes=POINTS - 1)
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        since = min(start, midnight)
        nodes_online, states = self._now_counts(now)
        with self.db.read() as session:
            online = session.exec(
                select(Node.id, Node.cpu_cores, Node.gpu_memory_gb, Node.gpu_name).where(
                    online_condition(now), col(Node.quarantined).is_(False)
                )
            ).all()
            lease_times = session.exec(
                select(Lease.created_at).where(col(Lease.created_at) >= start)
            ).all()
            payments = session.exec(
                select(LedgerTransaction.created_at, -col(LedgerEntry.amount_micro))
                .join(LedgerEntry, col(LedgerEntry.transaction_id) == col(LedgerTransaction.id))
                .join(LedgerAccount, col(LedgerAccount.id) == col(LedgerEntry.account_id))
                .where(
                    LedgerTransaction.kind == "task_payment",
                    col(LedgerTransaction.created_at) >= since,
                    LedgerAccount.kind == KIND_ESCROW,
                )
            ).all()
        cores = 0.0
        gpus = 0
        for node_id, node_cores, gpu_memory, gpu_name in online:
            used_cores, used_gpus = usage.by_node.get(node_id, (0.0, 0))
            cores += max(0.0, float(node_cores) - used_cores)
            if (gpu_memory > 0 or gpu_name) and used_gpus == 0:
                gpus += 1
        leases_by_minute: dict[datetime, int] = {}
        for created in lease_times:
            m = _minute(created)
            leases_by_minute[m] = leases_by_minute.get(m, 0) + 1
        paid_by_minute: dict[datetime, int] = {}
        paid_today = 0
        for created, amount in payments:
            if created >= midnight:
                paid_today += int(amount)
            if created >= start:
                m = _minute(created)
                paid_by_minute[m] = paid_by_minute.get(m, 0) + int(amount)
        with self._lock:
            samples = {m: (n, q, r) for m, n, q, r in self._samples}
        series = []
        for i in range(POINTS):
            m = start + timedelta(minutes=i)
            sampled = samples.get(m)
            series.append(
                Point(
                    at=m,
                    nodes_online=sampled[0] if sampled else None,
                    jobs_queued=sampled[1] if sampled else None,
                    jobs_running=sampled[2] if sampled else None,
                    leases_per_min=leases_by_minute.get(m, 0),
                    paid_micro=paid_by_minute.get(m, 0),
                )
            )
        # The last point is "now", whatever the sampler saw at the top of the minute.
        series[-1] = replace(
            series[-1],
            nodes_online=nodes_online,
            jobs_queued=states.get("queued", 0),
            jobs_running=states.get("running", 0),
        )
        recent = sum(1 for t in lease_times if (now - t).total_seconds() <= 60)
        return Snapshot(
            nodes_online=nodes_online,
            cpu_cores_available=round(cores, 3),
            gpus_available=gpus,
            jobs_queued=states.get("queued", 0),
            jobs_running=states.get("running", 0),
            jobs_done=states.get(JOB_COMPLETED, 0),
            jobs_failed=states.get("failed", 0),
            jobs_cancelled=states.get("cancelled", 0),
            jobs_waiting=states.get("waiting", 0),
            dispatch_rate_per_min=recent,
            paid_today_micro=paid_today,
            series=series,
        )

    def nodes_online(self) -> int:
        """For the metrics scrape: one count query."""
        now = self.clock()
        with self.db.read() as session:
            return int(
                session.exec(
                    select(func.count()).select_from(Node).where(online_condition(now))
                ).one()
            )


def core_usage(scheduler: core.Scheduler) -> Usage:
    """CPU cores and GPUs the active leases hold, per node. Call on the event loop thread (the core's)."""
    by_node: dict[str, tuple[float, int]] = {}
    for lease in scheduler.leases.values():
        task = scheduler.tasks.get(lease.task_id)
        if task is None:
            continue
        cores, gpus = by_node.get(lease.node_id, (0.0, 0))
        by_node[lease.node_id] = (cores + task.req.cpu_cores, gpus + task.req.gpu_count)
    return Usage(by_node)
