"""Builders for the scheduling core's tests: a scheduler with a seeded RNG and readable lease ids, tasks,
offers, and a few ways to pick decisions out of a list."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from coordinator.scheduling.core import (
    Decision,
    Grant,
    NodeOffer,
    Poll,
    Requirements,
    Scheduler,
    TaskEntry,
    TaskQueued,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)
TTL = timedelta(seconds=30)

D = TypeVar("D")


def make_scheduler(*, spot_check_rate: float = 0.0, seed: int = 0) -> Scheduler:
    ids = itertools.count(1)
    return Scheduler(
        lease_ttl=TTL,
        new_id=lambda: f"L{next(ids)}",
        rng=random.Random(seed),
        spot_check_rate=spot_check_rate,
    )


def task(
    task_id: str,
    *,
    job: str = "job1",
    submitter: int = 1,
    priority: int = 0,
    replicas: int = 1,
    quorum: int | None = None,
    adaptive: bool = False,
    max_attempts: int = 3,
    req: Requirements | None = None,
) -> TaskEntry:
    """A task entry; not adaptive unless asked, so quorums stay where the test put them."""
    return TaskEntry(
        task_id=task_id,
        job_id=job,
        submitter_id=submitter,
        priority=priority,
        req=req or Requirements(),
        pending=replicas,
        quorum=replicas if quorum is None else quorum,
        max_attempts=max_attempts,
        adaptive=adaptive,
    )


def offer(
    node_id: str,
    owner: int,
    *,
    cpu: float = 8.0,
    mem: float = 16.0,
    gpus: int = 0,
    gpu_memory_gb: float = 0.0,
    gpu_name: str = "",
    docker: bool = True,
    allow_network: bool = False,
    trusted: bool = False,
    quarantined: bool = False,
    max_tasks: int = 1,
) -> NodeOffer:
    """A roomy node (8 cores, 16 GB) asking for one task unless told otherwise."""
    return NodeOffer(
        node_id,
        owner,
        cpu_cores=cpu,
        memory_gb=mem,
        gpus=gpus,
        gpu_memory_gb=gpu_memory_gb,
        gpu_name=gpu_name,
        docker=docker,
        allow_network=allow_network,
        trusted=trusted,
        quarantined=quarantined,
        max_tasks=max_tasks,
    )


def of_type(decisions: Sequence[Decision], kind: type[D]) -> list[D]:
    return [d for d in decisions if isinstance(d, kind)]


def queue(scheduler: Scheduler, *entries: TaskEntry) -> None:
    for entry in entries:
        assert scheduler.handle(TaskQueued(entry), T0) == []


def poll(scheduler: Scheduler, node: NodeOffer, now: datetime = T0) -> list[Grant]:
    """Poll and return the grants, checking a poll decides nothing else."""
    decisions = scheduler.handle(Poll(node), now)
    grants = of_type(decisions, Grant)
    assert len(grants) == len(decisions)
    return grants
