"""Property tests: any sequence of events keeps the scheduling core's books straight. A plain Python model
follows each task's replicas, leases and holders from the decisions alone; after every event the core's
state must match it, and every decision must be one the rules allow."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.scheduling.core import (
    CancelLease,
    CheckStranded,
    Decision,
    Expire,
    FailTask,
    Grant,
    JobCancelled,
    LeaseFailed,
    LeaseInfo,
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
    stranded_since: dict[str, datetime] = field(default_factory=dict)

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
    by_task: dict[str, list[LeaseInfo]] = {}
    for lease in scheduler.leases.values():
        by_task.setdefault(lease.task_id, []).append(lease)
    for task_id, t in scheduler.tasks.items():
        assert t.pending == model.pending[task_id] >= 0
        assert t.holders == model.holders[task_id]
        assert t.attempts == model.attempts[task_id]
        assert len(set(t.holders.values())) == len(t.holders), "two holders of one owner"
        active = by_task.get(task_id, [])
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
# Fixed menus keep each event a few draws (cheap to generate and to shrink) while covering the rules.
REQUIREMENTS = [
    Requirements(),
    Requirements(cpu_cores=0.5, memory_gb=0.25),
    Requirements(cpu_cores=4.0, memory_gb=4.0),
    Requirements(cpu_cores=0.5, memory_gb=6.0),
    Requirements(cpu_cores=2.0, memory_gb=1.0, network=True),
    Requirements(gpu_count=1),
    Requirements(gpu_count=1, gpu_memory_gb=24.0, gpu_name="rtx"),
    Requirements(gpu_count=2, gpu_memory_gb=8.0),
    Requirements(cpu_cores=1.0, memory_gb=2.0, gpu_count=1, gpu_name="A100", network=True),
]
# What each node is (it does not change); node i belongs to owner i % OWNERS.
HARDWARE = [
    NodeOffer("n0", 0, cpu_cores=2.0, memory_gb=4.0),
    NodeOffer(
        "n1",
        1,
        cpu_cores=8.0,
        memory_gb=16.0,
        gpus=1,
        gpu_memory_gb=24.0,
        gpu_name="NVIDIA GeForce RTX 4090",
        allow_network=True,
    ),
    NodeOffer("n2", 2, cpu_cores=4.0, memory_gb=8.0, allow_network=True),
    NodeOffer(
        "n3", 0, cpu_cores=16.0, memory_gb=64.0, gpus=2, gpu_memory_gb=40.0, gpu_name="NVIDIA A100"
    ),
    NodeOffer("n4", 1, cpu_cores=1.0, memory_gb=1.0),
    NodeOffer(
        "n5",
        2,
        cpu_cores=8.0,
        memory_gb=8.0,
        gpus=2,
        gpu_memory_gb=16.0,
        gpu_name="NVIDIA RTX A4000",
        allow_network=True,
    ),
]
assert [(n.node_id, n.owner_id) for n in HARDWARE] == [(f"n{i}", i % OWNERS) for i in range(NODES)]


def make_offer(i: int, share: float, state: str, trusted: bool, max_tasks: int) -> NodeOffer:
    """Node ``i`` offering ``share`` of its CPU and memory (the rest is busy)."""
    node = HARDWARE[i]
    return replace(
        node,
        cpu_cores=node.cpu_cores * share,
        memory_gb=node.memory_gb * share,
        docker=state != "no-docker",
        quarantined=state == "quarantined",
        trusted=trusted,
        max_tasks=max_tasks,
    )


offers = st.builds(
    make_offer,
    st.integers(0, NODES - 1),
    st.sampled_from([1.0, 1.0, 0.5]),
    st.sampled_from(["ok"] * 6 + ["quarantined", "no-docker"]),
    st.booleans(),
    st.sampled_from([0, 1, 1, 1, 2, 2, 3, 4]),
)
pick = st.integers(0, 50)  # an index into what exists by then, taken modulo its size


def event(kind: str) -> st.SearchStrategy[tuple[Any, ...]]:
    """A fresh strategy for one kind of event (``one_of`` counts identical branches once)."""
    args: dict[str, tuple[st.SearchStrategy[Any], ...]] = {
        "queue": (
            st.integers(1, 3),  # submitter
            st.sampled_from(JOBS),
            st.integers(0, 2),  # priority
            st.sampled_from(REQUIREMENTS),
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
        "stranded": (st.frozensets(st.integers(0, OWNERS - 1)), st.sampled_from([0, 10, 30])),
    }
    return st.tuples(st.just(kind), *args[kind])


# Polls are what most rules are about: they come four times as often as the rarer events.
WEIGHTS = {"queue": 2, "poll": 4, "renew": 2, "tick": 2, "lost": 1, "report": 2}
WEIGHTS |= {"fail": 1, "more": 1, "close": 1, "cancel": 1, "stranded": 1}
events = st.one_of(*(event(kind) for kind, n in WEIGHTS.items() for _ in range(n)))


def pick_lease(model: Model, k: int, stale: bool) -> str | None:
    """A running lease, or (``stale``) any lease ever granted, ended ones included."""
    choices = model.ever_leased if stale else sorted(model.leases)
    return choices[k % len(choices)] if choices else None


def pick_task(model: Model, k: int) -> str:
    """Any task ever queued, closed ones included."""
    return f"t{k % max(len(model.entries), 1)}"


def on_queue(model: Model, s: Scheduler, *args: Any) -> None:
    submitter, job, priority, req, replicas, q, adaptive, max_attempts = args
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
    model.entries[task_id] = replace(entry, holders={})  # the model reads only what never changes
    model.pending[task_id] = replicas
    model.quorum[task_id] = entry.quorum
    model.holders[task_id] = {}
    assert s.handle(TaskQueued(entry), model.now) == []


def on_poll(model: Model, s: Scheduler, node: NodeOffer) -> None:
    decisions = s.handle(Poll(node), model.now)
    grants = [d for d in decisions if isinstance(d, Grant)]
    assert grants == decisions
    check_poll(model, node, grants)
    take_grants(model, node, grants)


def on_renew(model: Model, s: Scheduler, node: int, k: int) -> None:
    node_id = f"n{node}"
    own = sorted(i for i, (_, n, _) in model.leases.items() if n == node_id)
    other = pick_lease(model, k, stale=True)
    ids = (*own, *([other] if other else []), "never-granted")
    expected: list[Decision] = []
    for lease_id in ids:
        if lease_id in model.leases and model.leases[lease_id][1] == node_id:
            task_id, _, _ = model.leases[lease_id]
            model.leases[lease_id] = (task_id, node_id, model.now + TTL)
            expected.append(Renewed(lease_id, model.now + TTL))
        else:
            expected.append(UnknownLease(lease_id, node_id))
    assert s.handle(Renew(node_id, ids), model.now) == expected


def on_tick(model: Model, s: Scheduler, seconds: int) -> None:
    model.now += timedelta(seconds=seconds)
    doomed = {i for i, (_, _, deadline) in model.leases.items() if deadline <= model.now}
    model.expire(doomed, s.handle(Tick(), model.now))
    assert all(deadline > model.now for _, _, deadline in model.leases.values())


def on_lost(model: Model, s: Scheduler, node: int) -> None:
    doomed = {i for i, (_, n, _) in model.leases.items() if n == f"n{node}"}
    model.expire(doomed, s.handle(NodeLost(f"n{node}"), model.now))


def on_report(model: Model, s: Scheduler, k: int, stale: bool) -> None:
    lease_id = pick_lease(model, k, stale)
    if lease_id is not None:
        assert s.handle(LeaseReported(lease_id), model.now) == []
        if lease_id in model.leases:
            model.end_lease(lease_id, keep_holder=True)


def on_fail(model: Model, s: Scheduler, k: int, stale: bool) -> None:
    lease_id = pick_lease(model, k, stale)
    if lease_id is None:
        return
    decisions = s.handle(LeaseFailed(lease_id, "crashed"), model.now)
    if lease_id not in model.leases:
        assert decisions == []  # a replayed or late failure changes nothing
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


def on_more(model: Model, s: Scheduler, k: int, count: int) -> None:
    task_id = pick_task(model, k)
    assert s.handle(MoreReplicas(task_id, count), model.now) == []
    if task_id in model.pending and count > 0:
        model.pending[task_id] += count
        model.quorum[task_id] = max(
            model.quorum[task_id], len(model.holders[task_id]) + model.pending[task_id]
        )


def on_close(model: Model, s: Scheduler, k: int) -> None:
    task_id = pick_task(model, k)
    decisions = s.handle(TaskClosed(task_id), model.now)
    assert all(isinstance(d, CancelLease) for d in decisions)
    if task_id in model.pending:
        model.close(task_id, decisions)
    else:
        assert decisions == []


def on_cancel(model: Model, s: Scheduler, job_id: str) -> None:
    decisions = s.handle(JobCancelled(job_id), model.now)
    assert all(isinstance(d, CancelLease) for d in decisions)
    assert len(decisions) == len(set(decisions))
    for task_id in [t for t in model.pending if model.entries[t].job_id == job_id]:
        model.close(task_id, decisions)
    assert not any(model.entries[t].job_id == job_id for t in model.pending)


def on_stranded(model: Model, s: Scheduler, owners: frozenset[int], wait_s: int) -> None:
    """A task fails when, for ``wait_s`` running, it waited for a replica with none running while no ready
    node (both nodes of each owner in ``owners``, idle) could take it: each node's owner already held one,
    the node failed the task, or it is too small. With no node ready, every wait starts again."""
    wait = timedelta(seconds=wait_s)
    ready = {o: [n for n in HARDWARE if n.owner_id == o] for o in owners}
    decisions = s.handle(CheckStranded(ready, wait), model.now)
    doomed: list[str] = []
    for task_id, pending in model.pending.items():
        held = set(model.holders[task_id].values())
        running = any(t == task_id for t, _, _ in model.leases.values())
        usable = [
            n
            for o, nodes in ready.items()
            if o not in held
            for n in nodes
            if n.node_id not in model.failed_on.get(task_id, set())
            and fits(model.entries[task_id].req, n, 0.0, 0.0, 0)
        ]
        if not owners or pending <= 0 or not held or running or usable:
            model.stranded_since.pop(task_id, None)
            continue
        since = model.stranded_since.setdefault(task_id, model.now)
        if model.now - since >= wait:
            doomed.append(task_id)
    assert decisions == [FailTask(d, decisions[i].reason) for i, d in enumerate(doomed)]
    for task_id in doomed:
        model.failed[task_id] += 1
        model.close(task_id, decisions)
        model.stranded_since.pop(task_id, None)


HANDLERS: dict[str, Callable[..., None]] = {
    "queue": on_queue,
    "poll": on_poll,
    "renew": on_renew,
    "tick": on_tick,
    "lost": on_lost,
    "report": on_report,
    "fail": on_fail,
    "more": on_more,
    "close": on_close,
    "cancel": on_cancel,
    "stranded": on_stranded,
}


@settings(max_examples=250, deadline=None)
@given(
    backlog=st.lists(event("queue"), min_size=1, max_size=12),
    # Rounds of events: long scripts on average, yet a failure shrinks by dropping whole rounds.
    rounds=st.lists(st.lists(events, min_size=1, max_size=10), min_size=1, max_size=10),
    seed=st.integers(0, 2**16),  # spot checks must both happen and not happen across examples
)
def test_any_sequence_of_events_keeps_the_books(
    backlog: list[tuple[Any, ...]], rounds: list[list[tuple[Any, ...]]], seed: int
) -> None:
    scheduler = make_scheduler(spot_check_rate=0.5, seed=seed)
    model = Model()
    for kind, *args in backlog + [e for r in rounds for e in r]:
        HANDLERS[kind](model, scheduler, *args)
        check_state(model, scheduler)
