"""The scheduling core, rule by rule: matching a task to a node, replicas on distinct nodes and owners,
priority and fair share, adaptive replication, leases that expire or fail, and closing tasks."""

from __future__ import annotations

from datetime import timedelta

import pytest

from coordinator.scheduling.core import (
    CancelLease,
    CheckStranded,
    Expire,
    FailTask,
    JobCancelled,
    LeaseFailed,
    LeaseReported,
    MoreReplicas,
    NodeLost,
    NodeOffer,
    Renew,
    Renewed,
    Requirements,
    Scheduler,
    TaskClosed,
    Tick,
    UnknownLease,
)
from tests.scheduling.helpers import T0, TTL, make_scheduler, of_type, offer, poll, queue, task


# -- a node gets only what it can hold -------------------------------------------------------------------
def test_a_node_gets_at_most_max_tasks() -> None:
    s = make_scheduler()
    queue(s, *(task(f"t{i}") for i in range(5)))
    assert len(poll(s, offer("n1", 1, max_tasks=3))) == 3
    assert s.queued_replicas() == 2


@pytest.mark.parametrize(
    ("req", "node", "expected"),
    [
        (Requirements(cpu_cores=3), offer("n1", 1, cpu=8, max_tasks=9), 2),
        (Requirements(memory_gb=6), offer("n1", 1, mem=16, max_tasks=9), 2),
        (Requirements(gpu_count=1), offer("n1", 1, gpus=2, max_tasks=9), 2),
        (Requirements(cpu_cores=0.5, memory_gb=0.25), offer("n1", 1, cpu=2, mem=1, max_tasks=9), 4),
    ],
    ids=["cpu", "memory", "gpus", "exact-fit"],
)
def test_grants_together_fit_the_free_resources(
    req: Requirements, node: NodeOffer, expected: int
) -> None:
    s = make_scheduler()
    queue(s, *(task(f"t{i}", req=req) for i in range(6)))
    assert len(poll(s, node)) == expected


def test_a_task_bigger_than_the_node_waits_without_blocking_smaller_ones() -> None:
    s = make_scheduler()
    queue(s, task("big", req=Requirements(cpu_cores=16)), task("small"))
    assert [g.task_id for g in poll(s, offer("n1", 1, max_tasks=2))] == ["small"]
    assert s.queued_replicas() == 1


@pytest.mark.parametrize(
    "node",
    [offer("n1", 1, quarantined=True), offer("n1", 1, docker=False), offer("n1", 1, max_tasks=0)],
    ids=["quarantined", "no-docker", "max-tasks-0"],
)
def test_a_node_that_may_not_run_work_gets_nothing(node: NodeOffer) -> None:
    s = make_scheduler()
    queue(s, task("t1"))
    assert poll(s, node) == []
    assert s.queued_replicas() == 1


@pytest.mark.parametrize(
    ("req", "node", "granted"),
    [
        (Requirements(network=True), offer("n", 1), False),
        (Requirements(network=True), offer("n", 1, allow_network=True), True),
        (Requirements(network=False), offer("n", 1, allow_network=True), True),
        (Requirements(gpu_count=1), offer("n", 1), False),
        (Requirements(gpu_count=2), offer("n", 1, gpus=1), False),
        (Requirements(gpu_count=2), offer("n", 1, gpus=2), True),
        (
            Requirements(gpu_count=1, gpu_memory_gb=24),
            offer("n", 1, gpus=1, gpu_memory_gb=16),
            False,
        ),
        (
            Requirements(gpu_count=1, gpu_memory_gb=24),
            offer("n", 1, gpus=1, gpu_memory_gb=24),
            True,
        ),
        (
            Requirements(gpu_count=1, gpu_name="rtx 4090"),
            offer("n", 1, gpus=1, gpu_name="NVIDIA GeForce RTX 4090"),
            True,
        ),
        (
            Requirements(gpu_count=1, gpu_name="A100"),
            offer("n", 1, gpus=1, gpu_name="NVIDIA GeForce RTX 4090"),
            False,
        ),
        (Requirements(gpu_count=1, gpu_name="A100"), offer("n", 1, gpus=1), False),
    ],
    ids=[
        "network-refused",
        "network-allowed",
        "no-network-on-open-node",
        "gpu-on-cpu-node",
        "too-few-gpus",
        "enough-gpus",
        "too-little-gpu-memory",
        "enough-gpu-memory",
        "gpu-name-substring-any-case",
        "gpu-name-mismatch",
        "gpu-name-on-unnamed-gpu",
    ],
)
def test_matching(req: Requirements, node: NodeOffer, granted: bool) -> None:
    s = make_scheduler()
    queue(s, task("t1", req=req))
    assert len(poll(s, node)) == int(granted)


# -- replicas of one task ----------------------------------------------------------------------------------
def test_two_replicas_never_go_to_the_same_node() -> None:
    s = make_scheduler()
    queue(s, task("t1", replicas=2))
    assert len(poll(s, offer("n1", 1, max_tasks=4))) == 1
    assert poll(s, offer("n1", 1, max_tasks=4)) == []
    assert [g.node_id for g in poll(s, offer("n2", 2))] == ["n2"]


def test_two_replicas_never_go_to_two_nodes_of_one_owner() -> None:
    s = make_scheduler()
    queue(s, task("t1", replicas=2))
    poll(s, offer("n1", 7))
    assert poll(s, offer("n2", 7)) == []
    assert [g.node_id for g in poll(s, offer("n3", 8))] == ["n3"]


def test_a_reported_replica_still_excludes_its_node_and_owner() -> None:
    s = make_scheduler()
    queue(s, task("t1", replicas=2))
    (grant,) = poll(s, offer("n1", 7))
    s.handle(LeaseReported(grant.lease_id), T0)
    assert poll(s, offer("n1", 7)) == []
    assert poll(s, offer("n2", 7)) == []
    assert len(poll(s, offer("n3", 8))) == 1


# -- priority and fair share -------------------------------------------------------------------------------
def test_a_higher_priority_task_goes_first_whatever_the_queue_order() -> None:
    s = make_scheduler()
    queue(s, task("low", priority=0), task("mid", priority=5), task("high", priority=9))
    order = [poll(s, offer(f"n{i}", i))[0].task_id for i in range(3)]
    assert order == ["high", "mid", "low"]


def test_a_higher_priority_task_that_does_not_fit_does_not_block_lower_ones() -> None:
    s = make_scheduler()
    queue(s, task("gpu", priority=9, req=Requirements(gpu_count=1)), task("cpu", priority=0))
    assert [g.task_id for g in poll(s, offer("n1", 1))] == ["cpu"]
    assert [g.task_id for g in poll(s, offer("n2", 2, gpus=1))] == ["gpu"]


def _queue_two_submitters() -> list[str]:
    """Submitter 1 queues 100 tasks, then submitter 2 queues 3, at the same priority."""
    return [f"a{i}" for i in range(100)] + ["b0", "b1", "b2"]


def test_fair_share_alternates_between_submitters_while_leases_run() -> None:
    s = make_scheduler()
    queue(s, *(task(t, submitter=1 if t[0] == "a" else 2) for t in _queue_two_submitters()))
    order = [poll(s, offer(f"n{i}", i))[0].task_id[0] for i in range(10)]
    assert order == ["a", "b", "a", "b", "a", "b", "a", "a", "a", "a"]


def test_fair_share_alternates_when_every_task_finishes_before_the_next_poll() -> None:
    # One node working through tasks one by one: nothing stays running, so the tie-break decides.
    s = make_scheduler()
    queue(s, *(task(t, submitter=1 if t[0] == "a" else 2) for t in _queue_two_submitters()))
    order = []
    for _ in range(8):
        (grant,) = poll(s, offer("n1", 1))
        s.handle(LeaseReported(grant.lease_id), T0)
        order.append(grant.task_id[0])
    assert order == ["a", "b", "a", "b", "a", "b", "a", "a"]


def test_fair_share_favours_the_submitter_with_fewer_running() -> None:
    s = make_scheduler()
    queue(s, *(task(f"a{i}", submitter=1) for i in range(5)))
    poll(s, offer("n1", 1, max_tasks=3))  # submitter 1 now runs 3
    queue(s, task("b0", submitter=2), task("b1", submitter=2))
    assert [g.task_id for g in poll(s, offer("n2", 2, max_tasks=2))] == ["b0", "b1"]


# -- adaptive replication ----------------------------------------------------------------------------------
def test_adaptive_task_on_an_untrusted_node_gets_a_cross_check_elsewhere() -> None:
    s = make_scheduler()
    queue(s, task("t1", adaptive=True))
    (first,) = poll(s, offer("n1", 1))
    assert first.quorum == 2
    assert s.tasks["t1"].quorum == 2
    assert s.queued_replicas() == 1
    assert poll(s, offer("n2", 1)) == []  # same owner
    (second,) = poll(s, offer("n3", 2))
    assert second.quorum is None  # already raised: no third replica
    assert s.queued_replicas() == 0


@pytest.mark.parametrize(("rate", "quorum"), [(0.0, None), (1.0, 2)])
def test_adaptive_task_on_a_trusted_node_is_spot_checked_at_the_rate(
    rate: float, quorum: int | None
) -> None:
    s = make_scheduler(spot_check_rate=rate)
    queue(s, *(task(f"t{i}", adaptive=True) for i in range(20)))
    grants = poll(s, offer("n1", 1, trusted=True, cpu=100, mem=100, max_tasks=20))
    assert len(grants) == 20
    assert {g.quorum for g in grants} == {quorum}
    assert s.queued_replicas() == (0 if quorum is None else 20)


def test_spot_checks_follow_the_seeded_random_source() -> None:
    def checked(seed: int) -> list[bool]:
        s = make_scheduler(spot_check_rate=0.5, seed=seed)
        queue(s, *(task(f"t{i}", adaptive=True) for i in range(200)))
        return [
            g.quorum == 2
            for g in poll(s, offer("n1", 1, trusted=True, cpu=500, mem=500, max_tasks=200))
        ]

    first = checked(42)
    assert first == checked(42)
    assert 60 < sum(first) < 140  # about half, and neither none nor all


@pytest.mark.parametrize("trusted", [False, True])
def test_non_adaptive_tasks_never_change_quorum(trusted: bool) -> None:
    s = make_scheduler(spot_check_rate=1.0)
    queue(s, task("single"), task("pair", replicas=2, quorum=2, adaptive=True))
    grants = poll(s, offer("n1", 1, trusted=trusted, max_tasks=2))
    assert {g.task_id: g.quorum for g in grants} == {"single": None, "pair": None}
    assert (s.tasks["single"].quorum, s.tasks["pair"].quorum) == (1, 2)
    assert s.queued_replicas() == 1  # the pair's second replica only


# -- leases --------------------------------------------------------------------------------------------------
def test_renew_moves_the_deadline_and_tick_expires_only_after_it() -> None:
    s = make_scheduler()
    queue(s, task("t1"))
    (grant,) = poll(s, offer("n1", 1))
    assert grant.deadline == T0 + TTL
    later = T0 + TTL - TTL / 3
    assert s.handle(Renew("n1", (grant.lease_id,)), later) == [Renewed(grant.lease_id, later + TTL)]
    assert s.handle(Tick(), T0 + TTL) == []  # the old deadline no longer counts
    assert s.handle(Tick(), later + TTL) == [Expire(grant.lease_id, "t1", "n1", retry=True)]


def test_an_expired_lease_requeues_its_task_until_max_attempts_then_fails_it_once() -> None:
    s = make_scheduler()
    queue(s, task("t1", max_attempts=3))
    now = T0
    for attempt in (1, 2):
        (grant,) = poll(s, offer(f"n{attempt}", attempt), now)
        now += TTL
        assert s.handle(Tick(), now) == [Expire(grant.lease_id, "t1", f"n{attempt}", retry=True)]
        assert s.tasks["t1"].attempts == attempt
        assert s.queued_replicas() == 1
    (grant,) = poll(s, offer("n3", 3), now)
    now += TTL
    expire, fail = s.handle(Tick(), now)
    assert expire == Expire(grant.lease_id, "t1", "n3", retry=False)
    assert isinstance(fail, FailTask)
    assert fail.task_id == "t1"
    assert "3 attempts" in fail.reason
    assert "t1" not in s.tasks
    assert s.handle(Tick(), now + 10 * TTL) == []
    assert poll(s, offer("n9", 9), now) == []


def test_an_expired_replica_may_run_again_on_the_same_node() -> None:
    s = make_scheduler()
    queue(s, task("t1"))
    poll(s, offer("n1", 1))
    s.handle(Tick(), T0 + TTL)
    assert len(poll(s, offer("n1", 1), T0 + TTL)) == 1


def test_failing_a_task_cancels_its_other_running_replica() -> None:
    s = make_scheduler()
    queue(s, task("t1", replicas=2, max_attempts=1))
    (g1,) = poll(s, offer("n1", 1))
    (g2,) = poll(s, offer("n2", 2), T0 + TTL / 2)
    decisions = s.handle(Tick(), T0 + TTL)
    assert decisions[0] == Expire(g1.lease_id, "t1", "n1", retry=False)
    assert isinstance(decisions[1], FailTask)
    assert decisions[2:] == [CancelLease(g2.lease_id, "t1", "n2")]


def test_node_lost_expires_all_of_its_leases_and_no_others() -> None:
    s = make_scheduler()
    queue(s, *(task(f"t{i}") for i in range(4)))
    mine = poll(s, offer("n1", 1, max_tasks=3))
    (other,) = poll(s, offer("n2", 2))
    decisions = s.handle(NodeLost("n1"), T0)
    assert sorted(decisions, key=str) == sorted(
        (Expire(g.lease_id, g.task_id, "n1", retry=True) for g in mine), key=str
    )
    assert set(s.leases) == {other.lease_id}
    assert s.queued_replicas() == 3
    assert s.handle(NodeLost("n1"), T0) == []


def test_renew_of_a_lease_the_node_does_not_hold_is_unknown() -> None:
    s = make_scheduler()
    queue(s, task("t1"))
    (grant,) = poll(s, offer("n1", 1))
    later = T0 + TTL / 2
    assert s.handle(Renew("n2", (grant.lease_id, "nope")), later) == [
        UnknownLease(grant.lease_id, "n2"),
        UnknownLease("nope", "n2"),
    ]
    assert s.leases[grant.lease_id].deadline == T0 + TTL  # not moved by the stranger
    s.handle(Tick(), T0 + TTL)
    assert s.handle(Renew("n1", (grant.lease_id,)), later) == [UnknownLease(grant.lease_id, "n1")]


def test_a_failed_lease_is_retried_on_another_node() -> None:
    s = make_scheduler()
    queue(s, task("t1", max_attempts=3))
    (grant,) = poll(s, offer("n1", 1))
    assert s.handle(LeaseFailed(grant.lease_id, "docker missing"), T0) == []
    assert s.tasks["t1"].attempts == 1
    assert poll(s, offer("n1", 1)) == []
    assert [g.node_id for g in poll(s, offer("n2", 1))] == [
        "n2"
    ]  # another node of the owner is fine
    assert (
        s.handle(LeaseFailed(grant.lease_id, "again"), T0) == []
    )  # a replayed report changes nothing
    assert s.tasks["t1"].attempts == 1


def test_a_failed_lease_on_the_last_attempt_fails_the_task() -> None:
    s = make_scheduler()
    queue(s, task("t1", max_attempts=1))
    (grant,) = poll(s, offer("n1", 1))
    (fail,) = s.handle(LeaseFailed(grant.lease_id, "crashed"), T0)
    assert isinstance(fail, FailTask)
    assert fail.task_id == "t1"
    assert "crashed" in fail.reason
    assert "t1" not in s.tasks


def test_more_replicas_go_to_new_nodes_of_new_owners() -> None:
    s = make_scheduler()
    queue(s, task("t1", replicas=2))
    for grant in [*poll(s, offer("n1", 1)), *poll(s, offer("n2", 2))]:
        s.handle(LeaseReported(grant.lease_id), T0)
    assert s.handle(MoreReplicas("t1", 2), T0) == []
    assert s.queued_replicas() == 2
    for node in (offer("n1", 1), offer("n2", 2), offer("n1b", 1), offer("n2b", 2)):
        assert poll(s, node) == []
    assert len(poll(s, offer("n3", 3))) == 1
    assert len(poll(s, offer("n4", 4))) == 1
    assert s.queued_replicas() == 0


def _tied(s: Scheduler) -> None:
    """t1 ran on owners 1 and 2, who disagreed, and a third replica is asked for; t2 waits unleased."""
    queue(s, task("t1", replicas=2), task("t2"))
    grants = [*poll(s, offer("n1", 1, max_tasks=1)), *poll(s, offer("n2", 2, max_tasks=1))]
    assert [g.task_id for g in grants] == ["t1", "t1"]
    for grant in grants:
        s.handle(LeaseReported(grant.lease_id), T0)
    s.handle(MoreReplicas("t1", 1), T0)


WAIT = timedelta(seconds=600)


def ready(*owners: int, **nodes: NodeOffer) -> CheckStranded:
    """Owner ``o``'s node ``n<o>`` (a roomy one) is ready for work, for each owner given; ``nodes`` adds
    other ready nodes by id."""
    fleet: dict[int, list[NodeOffer]] = {o: [offer(f"n{o}", o)] for o in owners}
    for node in nodes.values():
        fleet.setdefault(node.owner_id, []).append(node)
    return CheckStranded(fleet, WAIT)


def test_a_tie_no_ready_owner_may_break_fails_after_the_wait() -> None:
    s = make_scheduler()
    _tied(s)
    owners_1_2 = ready(1, 2)
    assert s.handle(owners_1_2, T0) == []  # stranded from now on
    assert s.handle(owners_1_2, T0 + WAIT - timedelta(seconds=1)) == []
    failed = s.handle(owners_1_2, T0 + WAIT)
    assert [type(d) for d in failed] == [FailTask] and failed[0].task_id == "t1"
    reason = failed[0].reason
    assert "600 s" in reason and "2 owner(s)" in reason and "3 different owners" in reason
    assert s.queued_replicas() == 1  # t2 is untouched: it has no replica yet, any owner may take it
    assert poll(s, offer("n3", 3)) and s.queued_replicas() == 0


def test_a_new_owner_resets_the_wait_and_an_empty_fleet_restarts_it() -> None:
    s = make_scheduler()
    _tied(s)
    s.handle(ready(1, 2), T0)
    assert s.handle(ready(), T0 + WAIT / 2) == []  # nobody online: the wait starts again...
    assert s.handle(ready(1, 2), T0 + WAIT) == []  # ...from here
    assert s.handle(ready(1, 2), T0 + 2 * WAIT - timedelta(seconds=1)) == []
    assert s.handle(ready(1, 3), T0 + 2 * WAIT) == []  # owner 3 could: not stranded
    later = T0 + 3 * WAIT
    assert s.handle(ready(2), later) == []  # stranded again, from now
    assert s.handle(ready(2), later + WAIT / 2) == []
    assert [type(d) for d in s.handle(ready(2), later + WAIT)] == [FailTask]


def test_a_task_waits_while_a_replica_still_runs() -> None:
    """Its result may settle the task; the clock starts once every replica has reported."""
    s = make_scheduler()
    queue(s, task("t1", replicas=3))
    running = [*poll(s, offer("n1", 1)), *poll(s, offer("n2", 2))]
    s.handle(LeaseReported(running[0].lease_id), T0)
    assert s.handle(ready(1, 2), T0) == []
    assert s.handle(ready(1, 2), T0 + 2 * WAIT) == []  # n2's replica is still running
    s.handle(LeaseReported(running[1].lease_id), T0 + 2 * WAIT)
    assert s.handle(ready(1, 2), T0 + 2 * WAIT) == []
    out = s.handle(ready(1, 2), T0 + 3 * WAIT)
    assert [type(d) for d in out] == [FailTask]  # nothing left to cancel
    assert s.queued_replicas() == 0


def test_a_new_owner_whose_only_node_failed_the_task_cannot_break_the_tie() -> None:
    s = make_scheduler()
    _tied(s)
    # owner 3 takes the tie-breaker (and t2), and the tie-breaker's run fails on its only node
    (grant,) = [g for g in poll(s, offer("n3", 3, max_tasks=2)) if g.task_id == "t1"]
    s.handle(LeaseFailed(grant.lease_id, "crashed"), T0)
    assert s.handle(ready(1, 2, 3), T0) == []
    failed = s.handle(ready(1, 2, 3), T0 + WAIT)
    assert [d.task_id for d in failed if isinstance(d, FailTask)] == ["t1"]
    assert "had failed it before" in failed[0].reason


def _gpu_tie() -> Scheduler:
    """A GPU task run by owners 1 and 2 (nodes g1, g2), whose results disagreed: a third is asked for."""
    s = make_scheduler()
    queue(s, task("t1", replicas=2, req=Requirements(gpu_count=1, gpu_memory_gb=16)))
    for node in (
        offer("g1", 1, gpus=1, gpu_memory_gb=24),
        offer("g2", 2, gpus=1, gpu_memory_gb=24),
    ):
        (grant,) = poll(s, node)
        s.handle(LeaseReported(grant.lease_id), T0)
    s.handle(MoreReplicas("t1", 1), T0)
    return s


def test_a_new_owner_too_small_for_the_task_cannot_break_the_tie() -> None:
    s = _gpu_tie()
    cpu_only = ready(1, 2, n3=offer("n3", 3))
    assert s.handle(cpu_only, T0) == []
    assert [type(d) for d in s.handle(cpu_only, T0 + WAIT)] == [FailTask]

    s = _gpu_tie()  # a third owner whose node has a GPU: the task waits for it
    gpu_node = offer("g3", 3, gpus=1, gpu_memory_gb=24)
    with_gpu = ready(1, 2, g3=gpu_node)
    assert s.handle(with_gpu, T0) == [] and s.handle(with_gpu, T0 + 2 * WAIT) == []
    assert [g.task_id for g in poll(s, gpu_node)] == ["t1"]


def test_more_replicas_for_a_closed_or_unknown_task_is_ignored() -> None:
    s = make_scheduler()
    queue(s, task("t1"))
    s.handle(TaskClosed("t1"), T0)
    assert s.handle(MoreReplicas("t1", 2), T0) == []
    assert s.handle(MoreReplicas("zzz", 2), T0) == []
    assert s.queued_replicas() == 0
    assert poll(s, offer("n1", 1)) == []


# -- closing --------------------------------------------------------------------------------------------------
def test_closing_a_task_cancels_its_running_leases_and_it_is_never_granted_again() -> None:
    s = make_scheduler()
    queue(s, task("t1", replicas=4, quorum=2))
    g1, g2, g3 = (poll(s, offer(f"n{i}", i))[0] for i in (1, 2, 3))
    s.handle(LeaseReported(g1.lease_id), T0)
    decisions = s.handle(TaskClosed("t1"), T0)
    assert sorted(decisions, key=str) == [
        CancelLease(g2.lease_id, "t1", "n2"),
        CancelLease(g3.lease_id, "t1", "n3"),
    ]
    assert s.leases == {}
    assert s.queued_replicas() == 0
    assert poll(s, offer("n4", 4)) == []
    assert s.handle(TaskClosed("t1"), T0) == []
    assert s.handle(Tick(), T0 + 10 * TTL) == []


def test_cancelling_a_job_closes_only_its_tasks() -> None:
    s = make_scheduler()
    queue(s, task("a1", job="A"), task("a2", job="A"), task("a3", job="A"), task("b1", job="B"))
    running = poll(s, offer("n1", 1, max_tasks=2))
    assert [g.task_id for g in running] == ["a1", "a2"]
    decisions = s.handle(JobCancelled("A"), T0)
    assert sorted(decisions, key=str) == sorted(
        (CancelLease(g.lease_id, g.task_id, "n1") for g in running), key=str
    )
    assert set(s.tasks) == {"b1"}
    assert [g.task_id for g in poll(s, offer("n2", 2, max_tasks=5))] == ["b1"]
    assert poll(s, offer("n3", 3, max_tasks=5)) == []


def test_queueing_the_same_task_twice_keeps_the_first() -> None:
    s = make_scheduler()
    queue(s, task("t1"), task("t1", replicas=3))
    assert s.queued_replicas() == 1


# -- queries and restart -------------------------------------------------------------------------------------
def test_queue_depth_counts_waiting_replicas_by_priority() -> None:
    s = make_scheduler()
    queue(s, task("a", priority=1, replicas=3), task("b", priority=1), task("c", priority=5))
    poll(s, offer("n1", 1, max_tasks=2))  # takes c, then one replica of a
    assert s.queue_depth_by_priority() == {1: 3}
    assert s.queued_replicas() == 3


def test_a_restored_lease_behaves_like_a_granted_one() -> None:
    s = make_scheduler()
    queue(s, task("a1", submitter=1), task("b1", submitter=2, replicas=2), task("b2", submitter=2))
    s.tasks["b1"].pending = 1  # the service queues only the replicas not already running
    s.restore_lease("L-old", "b1", "n1", 1, T0 + TTL)
    s.restore_lease("L-gone", "zzz", "n1", 1, T0 + TTL)  # its task is no longer queued: ignored
    assert set(s.leases) == {"L-old"}
    # Submitter 2 already runs one, so submitter 1 goes first; n1's owner may not take b1 again.
    assert [g.task_id for g in poll(s, offer("n2", 2))] == ["a1"]
    assert [g.task_id for g in poll(s, offer("n1b", 1))] == ["b2"]
    later = T0 + TTL / 2
    assert s.handle(Renew("n1", ("L-old",)), later) == [Renewed("L-old", later + TTL)]
    expired = of_type(s.handle(Tick(), T0 + TTL), Expire)
    assert {e.lease_id for e in expired} == {"L1", "L2"}  # the restored lease was renewed
    assert s.handle(Tick(), later + TTL) == [Expire("L-old", "b1", "n1", retry=True)]
    assert s.tasks["b1"].pending == 2
    assert s._running_by_submitter == {1: 0, 2: 0}


def test_a_restored_holder_keeps_excluding_its_node_and_owner() -> None:
    s = make_scheduler()
    queue(s, task("t1", replicas=2))
    s.tasks["t1"].pending = 1  # one replica already reported before the restart
    s.restore_holder("t1", "n1", 1)
    assert poll(s, offer("n1", 1)) == []
    assert poll(s, offer("n1b", 1)) == []
    assert [g.node_id for g in poll(s, offer("n2", 2))] == ["n2"]
