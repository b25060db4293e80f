"""The pure scheduling core: state plus an event in, decisions out. No I/O, no clock, no randomness of its
own (both are passed in), so every invariant can be tested directly and by property tests.

What it decides:
- which queued replicas a polling node gets (matching, priority, fair share between submitters);
- that two replicas of one task never go to the same node, nor to two nodes of the same owner;
- adaptive replication (BOINC): a task asking for one replica gets a cross-check replica when the node is
  not yet trusted, and at random (``spot_check_rate``) when it is;
- which leases expired (no heartbeat before the deadline) and whether their task is retried or failed;
- which tasks are stranded: their next replica may only go to a new owner, and no ready node has one.

The service (``coordinator/scheduling/service.py``) feeds events in and performs the decisions.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice

# How far down one submitter's queue a poll looks for a task that fits. Bounds the cost of a poll when the
# head of the queue holds tasks this node cannot run (say GPU tasks and a CPU-only node).
SCAN_LIMIT = 256


@dataclass(frozen=True, slots=True)
class Requirements:
    cpu_cores: float = 1.0
    memory_gb: float = 0.5
    gpu_count: int = 0
    gpu_memory_gb: float = 0.0
    gpu_name: str = ""
    network: bool = False


@dataclass(frozen=True, slots=True)
class NodeOffer:
    """A node asking for work: what is free on it right now and what it is."""

    node_id: str
    owner_id: int
    cpu_cores: float
    memory_gb: float
    gpus: int = 0
    gpu_memory_gb: float = 0.0
    gpu_name: str = ""
    docker: bool = True
    allow_network: bool = False
    trusted: bool = False
    quarantined: bool = False
    max_tasks: int = 1

    def fits(self, req: Requirements, used_cpu: float, used_mem: float, used_gpus: int) -> bool:
        if (
            req.cpu_cores > self.cpu_cores - used_cpu + 1e-9
            or req.memory_gb > self.memory_gb - used_mem + 1e-9
        ):
            return False
        if req.gpu_count:
            if (
                req.gpu_count > self.gpus - used_gpus
                or req.gpu_memory_gb > self.gpu_memory_gb + 1e-9
            ):
                return False
            if req.gpu_name and req.gpu_name.lower() not in self.gpu_name.lower():
                return False
        return not (req.network and not self.allow_network)


@dataclass(slots=True)
class TaskEntry:
    """A task the core knows about: queued replicas waiting for nodes, and who holds the others."""

    task_id: str
    job_id: str
    submitter_id: int
    priority: int
    req: Requirements
    pending: int  # replicas waiting to be leased
    quorum: int
    max_attempts: int = 3
    attempts: int = 0
    # Adaptive replication applies only to jobs that asked for a single replica.
    adaptive: bool = True
    # node_id -> owner_id for nodes holding an active or reported (not failed) replica of this task
    holders: dict[str, int] = field(default_factory=dict)
    seq: int = 0
    in_queue: bool = False
    # since when no ready node's owner may take the task's queued replicas (see CheckStranded)
    stranded_since: datetime | None = None


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    lease_id: str
    task_id: str
    node_id: str
    deadline: datetime


# -- events ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TaskQueued:
    entry: TaskEntry


@dataclass(frozen=True, slots=True)
class Poll:
    offer: NodeOffer


@dataclass(frozen=True, slots=True)
class Renew:
    node_id: str
    lease_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed: expire leases whose deadline is behind ``now``."""


@dataclass(frozen=True, slots=True)
class NodeLost:
    node_id: str


@dataclass(frozen=True, slots=True)
class LeaseReported:
    """The node delivered a result for the lease (the verifier decides what it is worth)."""

    lease_id: str


@dataclass(frozen=True, slots=True)
class LeaseFailed:
    """The run failed on the node without a comparable result (Docker missing, crash): retry elsewhere."""

    lease_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class LeaseReleased:
    """The node gave the lease back unfinished (its owner paused or stopped it): requeue, no attempt lost."""

    lease_id: str


@dataclass(frozen=True, slots=True)
class MoreReplicas:
    """The verifier needs ``count`` more results for the task (results disagreed)."""

    task_id: str
    count: int


@dataclass(frozen=True, slots=True)
class TaskClosed:
    """The task is accepted, failed or cancelled: forget it and cancel its leases still running."""

    task_id: str


@dataclass(frozen=True, slots=True)
class JobCancelled:
    job_id: str


@dataclass(frozen=True, slots=True)
class CheckStranded:
    """The nodes ready for work now (what each can hold when idle), by owner. A task that already has
    replicas, none of them still running, and waits for more can only use a node of an owner who has none
    of them, where it did not fail before and that can hold it; when no ready node qualifies the task is
    stranded, and after ``wait`` stranded it fails (a fleet of two owners never breaks a tie between them).
    With no node ready at all, every wait starts again: the fleet is away, not too small."""

    ready: Mapping[int, Sequence[NodeOffer]]  # owner id -> that owner's ready nodes
    wait: timedelta


Event = (
    TaskQueued
    | Poll
    | Renew
    | Tick
    | NodeLost
    | LeaseReported
    | LeaseFailed
    | LeaseReleased
    | MoreReplicas
    | TaskClosed
    | JobCancelled
    | CheckStranded
)


# -- decisions -------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Grant:
    lease_id: str
    task_id: str
    node_id: str
    deadline: datetime
    # Set when adaptive replication raised the task's quorum for this grant (the cross-check).
    quorum: int | None = None


@dataclass(frozen=True, slots=True)
class Expire:
    lease_id: str
    task_id: str
    node_id: str
    retry: bool  # False when the task has no attempts left (a FailTask follows)


@dataclass(frozen=True, slots=True)
class FailTask:
    task_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class CancelLease:
    lease_id: str
    task_id: str
    node_id: str


@dataclass(frozen=True, slots=True)
class Renewed:
    lease_id: str
    deadline: datetime


@dataclass(frozen=True, slots=True)
class UnknownLease:
    """A node renewed a lease the core does not hold for it (expired, cancelled): it must stop it."""

    lease_id: str
    node_id: str


Decision = Grant | Expire | FailTask | CancelLease | Renewed | UnknownLease


class Scheduler:
    """The scheduling state machine. Call :meth:`handle` with an event and the current time."""

    def __init__(
        self,
        *,
        lease_ttl: timedelta,
        new_id: Callable[[], str],
        rng: random.Random | None = None,
        spot_check_rate: float = 0.1,
    ) -> None:
        self.lease_ttl = lease_ttl
        self.new_id = new_id
        self.rng = rng or random.Random()
        self.spot_check_rate = spot_check_rate
        self.tasks: dict[str, TaskEntry] = {}
        self.leases: dict[str, LeaseInfo] = {}
        self.node_leases: dict[str, set[str]] = {}
        self.task_leases: dict[str, set[str]] = {}
        # priority -> submitter -> FIFO of task ids with pending replicas
        self._queues: dict[int, dict[int, deque[str]]] = {}
        self._running_by_submitter: dict[int, int] = {}
        # submitter -> number of the grant they last got: breaks fair-share ties in favour of the submitter
        # served longest ago, so submitters with equal running counts take turns.
        self._last_served: dict[int, int] = {}
        self._grants = 0
        # task_id -> nodes where a replica failed without a result: the retry goes elsewhere.
        self._failed_on: dict[str, set[str]] = {}
        self._seq = 0

    # -- queries ---------------------------------------------------------------------------------------
    def queued_replicas(self) -> int:
        return sum(t.pending for t in self.tasks.values())

    def queue_depth_by_priority(self) -> dict[int, int]:
        depth: dict[int, int] = {}
        for t in self.tasks.values():
            if t.pending:
                depth[t.priority] = depth.get(t.priority, 0) + t.pending
        return depth

    def restore_lease(
        self, lease_id: str, task_id: str, node_id: str, owner_id: int, deadline: datetime
    ) -> None:
        """Rebuild a lease that was active before a restart (its task must be queued first)."""
        task = self.tasks.get(task_id)
        if task is None:
            return
        task.holders[node_id] = owner_id
        self.leases[lease_id] = LeaseInfo(lease_id, task_id, node_id, deadline)
        self.node_leases.setdefault(node_id, set()).add(lease_id)
        self.task_leases.setdefault(task_id, set()).add(lease_id)
        self._running_by_submitter[task.submitter_id] = (
            self._running_by_submitter.get(task.submitter_id, 0) + 1
        )

    def restore_holder(self, task_id: str, node_id: str, owner_id: int) -> None:
        """A node that already reported a result for the task (before a restart) keeps excluding itself."""
        task = self.tasks.get(task_id)
        if task is not None:
            task.holders[node_id] = owner_id

    # -- the one entry point ---------------------------------------------------------------------------
    def handle(self, event: Event, now: datetime) -> list[Decision]:
        match event:
            case TaskQueued(entry):
                return self._queue(entry)
            case Poll(offer):
                return self._poll(offer, now)
            case Renew(node_id, lease_ids):
                return self._renew(node_id, lease_ids, now)
            case Tick():
                return self._expire(
                    lease for lease in list(self.leases.values()) if lease.deadline <= now
                )
            case NodeLost(node_id):
                return self._expire(self.leases[i] for i in list(self.node_leases.get(node_id, ())))
            case LeaseReported(lease_id):
                self._end_lease(lease_id, keep_holder=True)
                return []
            case LeaseFailed(lease_id, reason):
                return self._fail_lease(lease_id, reason)
            case LeaseReleased(lease_id):
                released = self._end_lease(lease_id, keep_holder=False)
                task = self.tasks.get(released.task_id) if released is not None else None
                if task is not None:
                    task.pending += 1
                    self._enqueue(task)
                return []
            case MoreReplicas(task_id, count):
                task = self.tasks.get(task_id)
                if task is not None and count > 0:
                    task.pending += count
                    task.quorum = max(task.quorum, len(task.holders) + task.pending)
                    self._enqueue(task)
                return []
            case TaskClosed(task_id):
                return self._close(task_id)
            case JobCancelled(job_id):
                out: list[Decision] = []
                for task_id in [t.task_id for t in self.tasks.values() if t.job_id == job_id]:
                    out += self._close(task_id)
                return out
            case CheckStranded(ready, wait):
                return self._check_stranded(ready, wait, now)
        raise TypeError(f"unknown event {event!r}")  # pragma: no cover

    # -- internals ---------------------------------------------------------------------------------------
    def _queue(self, entry: TaskEntry) -> list[Decision]:
        if entry.task_id in self.tasks:
            return []
        self._seq += 1
        entry.seq = self._seq
        self.tasks[entry.task_id] = entry
        if entry.pending > 0:
            self._enqueue(entry)
        return []

    def _enqueue(self, task: TaskEntry) -> None:
        if not task.in_queue:
            self._queues.setdefault(task.priority, {}).setdefault(
                task.submitter_id, deque()
            ).append(task.task_id)
            task.in_queue = True

    def _eligible(self, task: TaskEntry, offer: NodeOffer) -> bool:
        return (
            offer.node_id not in task.holders
            and offer.owner_id not in task.holders.values()
            and offer.node_id not in self._failed_on.get(task.task_id, ())
        )

    def _poll(self, offer: NodeOffer, now: datetime) -> list[Decision]:
        if offer.quarantined or not offer.docker or offer.max_tasks <= 0:
            return []
        grants: list[Decision] = []
        used_cpu = used_mem = 0.0
        used_gpus = 0
        for priority in sorted(self._queues, reverse=True):
            by_submitter = self._queues[priority]
            # Fair share: the submitter with the fewest running replicas goes first; on a tie the one served
            # longest ago, so that with quick tasks (nothing stays running) one submitter cannot starve another.
            for submitter in sorted(
                by_submitter,
                key=lambda s: (
                    self._running_by_submitter.get(s, 0),
                    self._last_served.get(s, 0),
                    s,
                ),
            ):
                queue = by_submitter[submitter]
                scanned = 0
                done: set[str] = set()
                for task_id in islice(queue, SCAN_LIMIT):
                    if len(grants) >= offer.max_tasks:
                        break
                    scanned += 1
                    task = self.tasks.get(task_id)
                    if task is None or task.pending <= 0:
                        done.add(task_id)
                        continue
                    if not self._eligible(task, offer) or not offer.fits(
                        task.req, used_cpu, used_mem, used_gpus
                    ):
                        continue
                    grants.append(self._grant(task, offer, now))
                    used_cpu += task.req.cpu_cores
                    used_mem += task.req.memory_gb
                    used_gpus += task.req.gpu_count
                    if task.pending <= 0:
                        done.add(task_id)
                if (
                    done
                ):  # drop finished entries from the scanned head only: O(SCAN_LIMIT), not O(queue)
                    head = [queue.popleft() for _ in range(scanned)]
                    queue.extendleft(reversed([t for t in head if t not in done]))
                    for task_id in done:
                        if task_id in self.tasks:
                            self.tasks[task_id].in_queue = False
                if not queue:
                    del by_submitter[submitter]
                if len(grants) >= offer.max_tasks:
                    break
            if not by_submitter:
                del self._queues[priority]
            if len(grants) >= offer.max_tasks:
                break
        return grants

    def _grant(self, task: TaskEntry, offer: NodeOffer, now: datetime) -> Grant:
        task.pending -= 1
        task.holders[offer.node_id] = offer.owner_id
        raised: int | None = None
        if (
            task.adaptive
            and task.quorum == 1
            and (not offer.trusted or self.rng.random() < self.spot_check_rate)
        ):
            # Cross-check: one more replica elsewhere, and both results must agree.
            task.quorum = 2
            task.pending += 1
            raised = 2
        lease = LeaseInfo(self.new_id(), task.task_id, offer.node_id, now + self.lease_ttl)
        self.leases[lease.lease_id] = lease
        self.node_leases.setdefault(offer.node_id, set()).add(lease.lease_id)
        self.task_leases.setdefault(task.task_id, set()).add(lease.lease_id)
        self._running_by_submitter[task.submitter_id] = (
            self._running_by_submitter.get(task.submitter_id, 0) + 1
        )
        self._grants += 1
        self._last_served[task.submitter_id] = self._grants
        return Grant(lease.lease_id, task.task_id, offer.node_id, lease.deadline, quorum=raised)

    def _renew(self, node_id: str, lease_ids: Iterable[str], now: datetime) -> list[Decision]:
        out: list[Decision] = []
        for lease_id in lease_ids:
            lease = self.leases.get(lease_id)
            if lease is None or lease.node_id != node_id:
                out.append(UnknownLease(lease_id, node_id))
                continue
            renewed = LeaseInfo(lease.lease_id, lease.task_id, lease.node_id, now + self.lease_ttl)
            self.leases[lease_id] = renewed
            out.append(Renewed(lease_id, renewed.deadline))
        return out

    def _end_lease(self, lease_id: str, *, keep_holder: bool) -> LeaseInfo | None:
        lease = self.leases.pop(lease_id, None)
        if lease is None:
            return None
        self.node_leases.get(lease.node_id, set()).discard(lease_id)
        self.task_leases.get(lease.task_id, set()).discard(lease_id)
        task = self.tasks.get(lease.task_id)
        if task is not None:
            submitter = task.submitter_id
            self._running_by_submitter[submitter] = max(
                0, self._running_by_submitter.get(submitter, 0) - 1
            )
            if not keep_holder:
                task.holders.pop(lease.node_id, None)
        return lease

    def _retry_or_fail(self, lease: LeaseInfo, reason: str) -> list[Decision]:
        task = self.tasks.get(lease.task_id)
        if task is None:
            return []
        task.attempts += 1
        if task.attempts >= task.max_attempts:
            out: list[Decision] = [
                FailTask(task.task_id, f"{reason} ({task.attempts} attempts, the limit)")
            ]
            return out + self._close(task.task_id)
        task.pending += 1
        self._enqueue(task)
        return []

    def _expire(self, leases: Iterable[LeaseInfo]) -> list[Decision]:
        out: list[Decision] = []
        for lease in list(leases):
            if self._end_lease(lease.lease_id, keep_holder=False) is None:
                continue
            task = self.tasks.get(lease.task_id)
            retry = task is not None and task.attempts + 1 < task.max_attempts
            out.append(Expire(lease.lease_id, lease.task_id, lease.node_id, retry))
            out += self._retry_or_fail(
                lease, "The worker stopped answering before the task finished"
            )
        return out

    def _fail_lease(self, lease_id: str, reason: str) -> list[Decision]:
        lease = self._end_lease(lease_id, keep_holder=False)
        if lease is None:
            return []
        if lease.task_id in self.tasks:
            self._failed_on.setdefault(lease.task_id, set()).add(lease.node_id)
        return self._retry_or_fail(lease, reason)

    def _check_stranded(
        self, ready: Mapping[int, Sequence[NodeOffer]], wait: timedelta, now: datetime
    ) -> list[Decision]:
        fleet = any(ready.values())
        out: list[Decision] = []
        for task in list(self.tasks.values()):
            if (
                not fleet
                or task.pending <= 0
                or not task.holders
                or self.task_leases.get(task.task_id)  # a replica still runs: wait for its result
                or self._could_take(task, ready)
            ):
                task.stranded_since = None
                continue
            if task.stranded_since is None:
                task.stranded_since = now
            if now - task.stranded_since < wait:
                continue
            owners = len(set(task.holders.values()))
            out.append(
                FailTask(
                    task.task_id,
                    f"Stranded: its next replica must run on a node of an owner who has not run this task "
                    f"(replicas never share an owner), and for {wait.total_seconds():.0f} s no connected "
                    f"node could take it: each belonged to one of the {owners} owner(s) who had, had failed "
                    f"it before, or was too small for it. Verifying it needs nodes of "
                    f"{owners + task.pending} different owners.",
                )
            )
            out += self._close(task.task_id)
        return out

    def _could_take(self, task: TaskEntry, ready: Mapping[int, Sequence[NodeOffer]]) -> bool:
        """Whether some ready node, idle, could get one of the task's queued replicas. Stops at the first
        node that qualifies: most owners hold no replica of a given task, so with a large fleet this is
        quick for every task that is not stranded."""
        held = set(task.holders.values())
        failed = self._failed_on.get(task.task_id, ())
        for owner, nodes in ready.items():
            if owner in held:
                continue
            for node in nodes:
                if node.node_id not in failed and node.fits(task.req, 0.0, 0.0, 0):
                    return True
        return False

    def _close(self, task_id: str) -> list[Decision]:
        task = self.tasks.get(task_id)
        if task is None:
            return []
        out: list[Decision] = []
        for lease_id in list(self.task_leases.get(task_id, ())):
            lease = self._end_lease(lease_id, keep_holder=True)
            if lease is not None:
                out.append(CancelLease(lease.lease_id, task_id, lease.node_id))
        self.task_leases.pop(task_id, None)
        self._failed_on.pop(task_id, None)
        task.pending = (
            0  # a queue entry left behind is dropped lazily by the next poll that meets it
        )
        del self.tasks[task_id]
        return out
