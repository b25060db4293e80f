"""Property tests: any sequence of events keeps the scheduling core's books straight. A plain Python model
follows each task's replicas, leases and holders from the decisions alone; after every event the core's
state must match it, and every decision must be one the rules allow."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.scheduling.core import (
    CancelLease,
    Decision,
    Expire,
    FailTask,
    Grant,
    JobCancelled,
    LeaseFailed,
    LeaseReported,
    MoreReplicas,
    NodeLost,
    NodeOffer,
    Poll,
    Renew,
    Renewed,
    Requirements,
    Scheduler,
    TaskClosed,
    TaskEntry,
    TaskQueued,
    Tick,
    UnknownLease,
)
from tests.scheduling.helpers import T0, TTL, make_scheduler

NODES = 6
OWNERS = 3  # node i belongs to owner i % OWNERS: two nodes per owner
JOBS = ("j0", "j1", "j2")
EPS = 1e-9


def fits(req: Requirements, node: NodeOffer, cpu: float, mem: float, gpus: int) -> bool:
    """The matching rules, written out again for the oracle (``cpu``/``mem``/``gpus`` already used)."""
    if req.cpu_cores > node.cpu_cores - cpu + EPS or req.memory_gb > node.memory_gb - mem + EPS:
        return False
    if req.network and not node.allow_network:
        return False
    if req.gpu_count == 0:
        return True
    return (
        req.gpu_count <= node.gpus - gpus
        and req.gpu_memory_gb <= node.gpu_memory_gb + EPS
        and req.gpu_name.lower() in node.gpu_name.lower()
    )


@dataclass
class Model:
    """What the decisions say happened, kept without looking inside the scheduler."""

    now: datetime = T0
    entries: dict[str, TaskEntry] = field(default_factory=dict)  # every task ever queued (a copy)
    pending: dict[str, int] = field(default_factory=dict)  # open tasks only
    quorum: dict[str, int] = field(default_factory=dict)
    attempts: Counter[str] = field(default_factory=Counter)
    holders: dict[str, dict[str, int]] = field(default_factory=dict)  # task -> node -> owner
    failed_on: dict[str, set[str]] = field(default_factory=dict)
    # lease id -> task, node, deadline, for the leases running now
    leases: dict[str, tuple[str, str, datetime]] = field(default_factory=dict)
    ever_leased: list[str] = field(default_factory=list)
    closed: set[str] = field(default_factory=set)
    failed: Counter[str] = field(default_factory=Counter)
    last_served: dict[int, int] = field(default_factory=dict)
    grants: int = 0

    def running(self, submitter: int) -> int:
        return sum(
            1 for t, _, _ in self.leases.values() if self.entries[t].submitter_id == submitter
        )

    def eligible(self, task_id: str, node: NodeOffer) -> bool:
        held = self.holders[task_id]
        return (
            node.node_id not in held
            and node.owner_id not in held.values()
            and node.node_id not in self.failed_on.get(task_id, set())
        )

    def end_lease(self, lease_id: str, *, keep_holder: bool) -> str:
        task_id, node_id, _ = self.leases.pop(lease_id)
        if not keep_holder:
            del self.holders[task_id][node_id]
        return task_id

    def close(self, task_id: str, decisions: list[Decision]) -> None:
        """The task is closed: ``decisions`` must cancel exactly its leases still running."""
        mine = {i for i, (t, _, _) in self.leases.items() if t == task_id}
        cancelled = {
            d.lease_id for d in decisions if isinstance(d, CancelLease) and d.task_id == task_id
        }
        assert cancelled == mine, (task_id, cancelled, mine)
        for lease_id in mine:
            self.end_lease(lease_id, keep_holder=True)
        del self.pending[task_id]
        self.closed.add(task_id)

    def retry_or_fail(self, task_id: str, decisions: list[Decision]) -> None:
        self.attempts[task_id] += 1
        if self.attempts[task_id] >= self.entries[task_id].max_attempts:
            fails = [d for d in decisions if isinstance(d, FailTask) and d.task_id == task_id]
            assert len(fails) == 1, (task_id, decisions)
            self.failed[task_id] += 1
            self.close(task_id, decisions)
        else:
            self.pending[task_id] += 1

    def expire(self, doomed: set[str], decisions: list[Decision]) -> None:
        """``doomed`` leases end now: each gets an Expire, or a CancelLease when its task failed first."""
        expired = [d for d in decisions if isinstance(d, Expire)]
        # A lease of a task that failed on an earlier expiry is cancelled with the task (checked by close).
        cancelled = {d.lease_id for d in decisions if isinstance(d, CancelLease)} & doomed
        assert {e.lease_id for e in expired} | cancelled == doomed
        assert len(expired) + len(cancelled) == len(doomed)
        for e in expired:
            task_id, node_id, _ = self.leases[e.lease_id]
            assert (e.task_id, e.node_id) == (task_id, node_id)
            assert e.retry == (self.attempts[task_id] + 1 < self.entries[task_id].max_attempts)
            self.end_lease(e.lease_id, keep_holder=False)
            self.retry_or_fail(task_id, decisions)
        assert len([d for d in decisions if isinstance(d, FailTask)]) == len(
            [e for e in expired if not e.retry]
        )


def check_poll(model: Model, node: NodeOffer, grants: list[Grant]) -> None:
    """Before the model takes the grants in: they fit the node, and none skipped a better task."""
    assert len(grants) <= max(node.max_tasks, 0)
    if node.quarantined or not node.docker:
        assert grants == []
    granted = [g.task_id for g in grants]
    assert len(set(granted)) == len(granted), "two replicas of one task to one node"
    cpu = mem = 0.0
    gpus = 0
    open_waiting = [t for t, n in model.pending.items() if n > 0 and t not in granted]
    for g in grants:
        assert g.node_id == node.node_id
        assert g.task_id not in model.closed, "a lease for a closed task"
        assert model.pending.get(g.task_id, 0) > 0
        assert model.eligible(g.task_id, node), "replica on a node or owner that holds one"
        entry = model.entries[g.task_id]
        assert fits(entry.req, node, cpu, mem, gpus), (entry.req, node, cpu, mem, gpus)
        # Priority: no waiting task of higher priority could have gone here instead.
        for other in open_waiting:
            better = model.entries[other]
            if better.priority > entry.priority and model.eligible(other, node):
                assert not fits(better.req, node, cpu, mem, gpus), (other, g.task_id)
        cpu += entry.req.cpu_cores
        mem += entry.req.memory_gb
        gpus += entry.req.gpu_count
    if grants:
        # Fair share: the first grant's submitter runs no more than any other with a task that fitted
        # at that priority (ties: the one served longest ago).
        first = model.entries[grants[0].task_id]

        def share(submitter: int) -> tuple[int, int]:
            return model.running(submitter), model.last_served.get(submitter, 0)

        for other in open_waiting + granted[1:]:
            rival = model.entries[other]
            if (
                rival.priority == first.priority
                and rival.submitter_id != first.submitter_id
                and model.eligible(other, node)
                and fits(rival.req, node, 0.0, 0.0, 0)
            ):
                assert share(first.submitter_id) <= share(rival.submitter_id), (first, rival)


def take_grants(model: Model, node: NodeOffer, grants: list[Grant]) -> None:
    for g in grants:
        entry = model.entries[g.task_id]
        if entry.adaptive and model.quorum[g.task_id] == 1 and not node.trusted:
            assert g.quorum == 2, "an untrusted node's result of a single-replica task unchecked"
        elif not entry.adaptive or model.quorum[g.task_id] != 1:
            assert g.quorum is None, "quorum raised on a task that may not be raised"
        model.pending[g.task_id] -= 1
        if g.quorum is not None:
            assert g.quorum == 2
            model.quorum[g.task_id] = 2
            model.pending[g.task_id] += 1
        assert g.deadline == model.now + TTL
        model.holders[g.task_id][node.node_id] = node.owner_id
        model.leases[g.lease_id] = (g.task_id, node.node_id, g.deadline)
        model.ever_leased.append(g.lease_id)
        model.grants += 1
        model.last_served[entry.submitter_id] = model.grants


def check_state(model: Model, scheduler: Scheduler) -> None:
    """After every event: the core's state is the model's."""
    assert set(scheduler.tasks) == set(model.pending)
    assert not set(scheduler.tasks) & model.closed
    assert set(model.pending) | model.closed == set(model.entries)
    assert scheduler.queued_replicas() == sum(model.pending.values())
    assert {
        i: (lease.task_id, lease.node_id, lease.deadline) for i, lease in scheduler.leases.items()
    } == model.leases
    assert all(n <= 1 for n in model.failed.values()), "a task failed twice"
    queued = {
        task_id
        for by_submitter in scheduler._queues.values()
        for q in by_submitter.values()
        for task_id in q
    }
    for task_id, t in scheduler.tasks.items():
        assert t.pending == model.pending[task_id] >= 0
        assert t.holders == model.holders[task_id]
        assert t.attempts == model.attempts[task_id]
        assert len(set(t.holders.values())) == len(t.holders), "two holders of one owner"
        active = [lease for lease in scheduler.leases.values() if lease.task_id == task_id]
        assert {lease.lease_id for lease in active} == scheduler.task_leases.get(task_id, set())
        assert len(active) <= len(t.holders)
        assert all(lease.node_id in t.holders for lease in active)
        # An open task is waiting for nodes (reachable through a queue), running, or all reported.
        if t.pending > 0:
            assert task_id in queued, f"{task_id} has replicas waiting but no queue holds it"
        elif not active:
            assert t.holders, f"{task_id} is open with nothing waiting, running or reported"
    for lease_id in scheduler.leases:
        assert lease_id in scheduler.node_leases[scheduler.leases[lease_id].node_id]
    for submitter in {e.submitter_id for e in model.entries.values()}:
        running = scheduler._running_by_submitter.get(submitter, 0)
        assert running == model.running(submitter) >= 0


# -- the events, as data ----------------------------------------------------------------------------------
requirements = st.builds(
    Requirements,
    cpu_cores=st.sampled_from([0.5, 1.0, 2.0, 4.0]),
    memory_gb=st.sampled_from([0.5, 1.0, 4.0]),
    gpu_count=st.sampled_from([0, 0, 0, 1, 2]),
    gpu_memory_gb=st.sampled_from([0.0, 8.0, 24.0]),
    gpu_name=st.sampled_from(["", "", "rtx", "A100"]),
    network=st.booleans(),
)
offers = st.builds(
    lambda i, **kw: NodeOffer(f"n{i}", i % OWNERS, **kw),
    st.integers(0, NODES - 1),
    cpu_cores=st.sampled_from([1.0, 2.0, 4.0, 8.0]),
    memory_gb=st.sampled_from([1.0, 4.0, 16.0]),
    gpus=st.sampled_from([0, 0, 1, 2]),
    gpu_memory_gb=st.sampled_from([0.0, 16.0, 40.0]),
    gpu_name=st.sampled_from(["", "NVIDIA GeForce RTX 4090", "NVIDIA A100-SXM4"]),
    docker=st.sampled_from([True] * 7 + [False]),
    allow_network=st.booleans(),
    trusted=st.booleans(),
    quarantined=st.sampled_from([False] * 7 + [True]),
    max_tasks=st.sampled_from([0, 1, 1, 1, 2, 2, 3, 4]),
)
pick = st.integers(0, 50)  # an index into what exists by then, taken modulo its size


def event(kind: str) -> st.SearchStrategy[tuple[Any, ...]]:
    """A fresh strategy for one kind of event (``one_of`` counts identical branches once)."""
    args: dict[str, tuple[st.SearchStrategy[Any], ...]] = {
        "queue": (
            st.integers(1, 3),  # submitter
            st.sampled_from(JOBS),
            st.integers(0, 2),  # priority
            requirements,
            st.integers(1, 3),  # replicas
            pick,  # quorum, out of the replicas
            st.booleans(),  # adaptive, when a single replica
            st.integers(1, 3),  # max attempts
        ),
        "poll": (offers,),
        "renew": (st.integers(0, NODES - 1), pick),
        "tick": (st.sampled_from([0, 5, 15, 31, 60]),),
        "lost": (st.integers(0, NODES - 1),),
        "report": (pick, st.booleans()),  # the boolean: any lease ever granted, not just live ones
        "fail": (pick, st.booleans()),
        "more": (pick, st.integers(0, 2)),
        "close": (pick,),
        "cancel": (st.sampled_from(JOBS),),
    }
    return st.tuples(st.just(kind), *args[kind])


# Polls are what most rules are about: they come four times as often as the rarer events.
WEIGHTS = {"queue": 2, "poll": 4, "renew": 2, "tick": 2, "lost": 1, "report": 2}
WEIGHTS |= {"fail": 1, "more": 1, "close": 1, "cancel": 1}
events = st.one_of(*(event(kind) for kind, n in WEIGHTS.items() for _ in range(n)))


def pick_lease(model: Model, k: int, stale: bool) -> str | None:
    """A running lease, or (``stale``) any lease ever granted, ended ones included."""
    choices = model.ever_leased if stale else sorted(model.leases)
    return choices[k % len(choices)] if choices else None


def step(model: Model, s: Scheduler, event: tuple[Any, ...]) -> None:
    kind = event[0]
    if kind == "queue":
        _, submitter, job, priority, req, replicas, q, adaptive, max_attempts = event
        task_id = f"t{len(model.entries)}"
        entry = TaskEntry(
            task_id,
            job,
            submitter,
            priority,
            req,
            pending=replicas,
            quorum=1 + q % replicas,
            max_attempts=max_attempts,
            adaptive=adaptive and replicas == 1,
        )
        model.entries[task_id] = replace(
            entry, holders={}
        )  # the model reads only what never changes
        model.pending[task_id] = replicas
        model.quorum[task_id] = entry.quorum
        model.holders[task_id] = {}
        assert s.handle(TaskQueued(entry), model.now) == []
    elif kind == "poll":
        node: NodeOffer = event[1]
        decisions = s.handle(Poll(node), model.now)
        grants = [d for d in decisions if isinstance(d, Grant)]
        assert grants == decisions
        check_poll(model, node, grants)
        take_grants(model, node, grants)
    elif kind == "renew":
        node_id = f"n{event[1]}"
        own = sorted(i for i, (_, n, _) in model.leases.items() if n == node_id)
        extra = pick_lease(model, event[2], stale=True)
        ids = (*own, *([extra] if extra else []), "never-granted")
        expected: list[Decision] = []
        for lease_id in ids:
            if lease_id in model.leases and model.leases[lease_id][1] == node_id:
                task_id, _, _ = model.leases[lease_id]
                model.leases[lease_id] = (task_id, node_id, model.now + TTL)
                expected.append(Renewed(lease_id, model.now + TTL))
            else:
                expected.append(UnknownLease(lease_id, node_id))
        assert s.handle(Renew(node_id, ids), model.now) == expected
    elif kind == "tick":
        model.now += timedelta(seconds=event[1])
        doomed = {i for i, (_, _, deadline) in model.leases.items() if deadline <= model.now}
        model.expire(doomed, s.handle(Tick(), model.now))
        assert all(deadline > model.now for _, _, deadline in model.leases.values())
    elif kind == "lost":
        node_id = f"n{event[1]}"
        doomed = {i for i, (_, n, _) in model.leases.items() if n == node_id}
        model.expire(doomed, s.handle(NodeLost(node_id), model.now))
    elif kind in ("report", "fail"):
        lease_id = pick_lease(model, event[1], stale=event[2])
        if lease_id is None:
            return
        live = lease_id in model.leases
        if kind == "report":
            assert s.handle(LeaseReported(lease_id), model.now) == []
            if live:
                model.end_lease(lease_id, keep_holder=True)
            return
        decisions = s.handle(LeaseFailed(lease_id, "crashed"), model.now)
        if not live:
            assert decisions == []
            return
        task_id, node_id, _ = model.leases[lease_id]
        model.end_lease(lease_id, keep_holder=False)
        model.failed_on.setdefault(task_id, set()).add(node_id)
        model.retry_or_fail(task_id, decisions)
        if task_id in model.pending:
            assert decisions == []
        else:  # the last attempt: FailTask, then the task's other leases cancelled
            assert isinstance(decisions[0], FailTask)
            assert all(isinstance(d, CancelLease) for d in decisions[1:])
    elif kind == "more":
        task_id = f"t{event[1] % max(len(model.entries), 1)}"
        assert s.handle(MoreReplicas(task_id, event[2]), model.now) == []
        if task_id in model.pending and event[2] > 0:
            model.pending[task_id] += event[2]
            model.quorum[task_id] = max(
                model.quorum[task_id], len(model.holders[task_id]) + model.pending[task_id]
            )
    elif kind == "close":
        task_id = f"t{event[1] % max(len(model.entries), 1)}"
        decisions = s.handle(TaskClosed(task_id), model.now)
        if task_id in model.pending:
            model.close(task_id, decisions)
        assert all(isinstance(d, CancelLease) for d in decisions)
        assert len(decisions) == len({d.lease_id for d in decisions if isinstance(d, CancelLease)})
    elif kind == "cancel":
        decisions = s.handle(JobCancelled(event[1]), model.now)
        for task_id in [t for t in model.pending if model.entries[t].job_id == event[1]]:
            model.close(task_id, decisions)
        assert all(isinstance(d, CancelLease) for d in decisions)
        assert len(decisions) == len({d.lease_id for d in decisions if isinstance(d, CancelLease)})


@settings(max_examples=200, deadline=None)
@given(
    backlog=st.lists(event("queue"), min_size=2, max_size=12),
    script=st.lists(events, min_size=20, max_size=80),
)
def test_any_sequence_of_events_keeps_the_books(
    backlog: list[tuple[Any, ...]], script: list[tuple[Any, ...]]
) -> None:
    scheduler = make_scheduler(spot_check_rate=0.5, seed=7)
    model = Model()
    for event in backlog + script:
        step(model, scheduler, event)
        check_state(model, scheduler)
