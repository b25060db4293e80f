"""A worker reports several leases in one call: the dispatcher records, verifies and pays them in one
transaction. Each task is paid once, to the micro-CPT, in its own ledger transaction; the whole batch
replayed pays nothing more; the job completes and refunds the rest. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, func, select

from coordinator.errors import PermissionDenied
from coordinator.jobs.models import (
    JOB_COMPLETED,
    JOB_FAILED,
    LEASE_CANCELLED,
    LEASE_INVALID,
    LEASE_VALID,
    TASK_FAILED,
    Job,
    Lease,
    Task,
)
from coordinator.ledger import service as ledger
from coordinator.ledger.models import LedgerTransaction
from coordinator.nodes.models import Node
from coordinator.scheduling.service import LeaseGrant, PollRequest, ReportedResult, ReportedUsage
from tests.admin.helpers import funded, submit
from tests.jobs.helpers import StandInWorker, balance, escrow_balance, run_on_loop
from tests.support import RunningCoordinator

POLL = PollRequest(
    max_tasks=4,
    free_cpu_cores=8,
    free_memory_gb=16,
    free_gpus=0,
    wait_s=0,
    docker_available=True,
    allow_network=False,
)


def _results(grants: list[LeaseGrant], stdout_sha: str) -> list[ReportedResult]:
    return [
        ReportedResult(
            lease_id=g.lease_id,
            status="succeeded",
            exit_code=0,
            stdout_sha256=stdout_sha,
            outputs=(),
            usage=ReportedUsage(2.0, 1024**2, 2.0, 0.0),
        )
        for g in grants
    ]


def _settled(c: RunningCoordinator, job_id: str) -> tuple[Job, list[Lease], int]:
    """The job, its leases, and how many task payments the ledger holds."""
    with c.coordinator.db.read() as session:
        job = session.get(Job, job_id)
        assert job is not None
        leases = list(session.exec(select(Lease).where(Lease.job_id == job_id)))
        payments = session.exec(
            select(func.count())
            .select_from(LedgerTransaction)
            .where(col(LedgerTransaction.kind) == "task_payment")
        ).one()
    return job, leases, payments


def test_a_batch_of_reports_verifies_and_pays_each_task_once(
    coordinator: RunningCoordinator,
) -> None:
    c = coordinator
    dispatcher = c.coordinator.dispatcher
    submitter, token = funded(c, "submitter")
    job_id = submit(c, token, array_size=4, replicas=2, output_paths=[])
    stdout_sha = c.coordinator.blobs.put([b"42\n"], max_size=1024).sha256
    workers = []
    for name in ("alice", "bob"):
        owner, owner_token = c.signup(name)
        workers.append((owner, StandInWorker(c, owner_token, f"{name}-pc")))
    grants = {
        owner: run_on_loop(c, dispatcher.poll(worker.node, POLL)) for owner, worker in workers
    }
    for owner, _ in workers:  # every task runs on both owners' nodes
        assert len(grants[owner]) == 4
        assert len({g.task_id for g in grants[owner]}) == 4

    (alice, alice_node), (bob, bob_node) = workers
    first = run_on_loop(c, dispatcher.report(alice_node.node, _results(grants[alice], stdout_sha)))
    assert [o.outcome for o in first] == ["accepted"] * 4
    assert balance(c, alice) == 0  # no quorum yet: nobody is paid
    second = run_on_loop(c, dispatcher.report(bob_node.node, _results(grants[bob], stdout_sha)))
    assert [o.outcome for o in second] == ["accepted"] * 4

    job, leases, payments = _settled(c, job_id)
    assert job.state == JOB_COMPLETED and job.tasks_done == 4
    assert [x.state for x in leases] == [LEASE_VALID] * 8
    assert payments == 4  # one ledger transaction per task
    paid = {
        owner: sum(x.paid_micro for x in leases if x.node_owner_id == owner) for owner, _ in workers
    }
    assert paid[alice] > 0 and paid[bob] > 0
    assert balance(c, alice) == paid[alice]
    assert balance(c, bob) == paid[bob]
    charged = sum(x.charged_micro for x in leases)
    assert job.charged_micro == charged
    # The escrow is settled: what was charged went out, the rest came back to the submitter.
    assert escrow_balance(c, job_id) == 0
    assert balance(c, submitter) == 10 * 1_000_000 - charged

    # The same batch again (a worker retrying after a lost answer): answered, nothing paid twice.
    again = run_on_loop(c, dispatcher.report(bob_node.node, _results(grants[bob], stdout_sha)))
    assert [o.outcome for o in again] == ["duplicate"] * 4
    assert balance(c, bob) == paid[bob]
    assert balance(c, submitter) == 10 * 1_000_000 - charged
    with c.coordinator.db.read() as session:
        assert ledger.audit(session) == []


def test_disagreeing_replicas_past_the_limit_fail_the_job_and_pay_nobody(
    db_url: str, tmp_path: Path
) -> None:
    with RunningCoordinator.start(db_url=db_url, data_dir=tmp_path, max_extra_replicas=0) as c:
        dispatcher = c.coordinator.dispatcher
        submitter, token = funded(c, "submitter")
        job_id = submit(c, token, replicas=2, output_paths=[])
        outputs = [c.coordinator.blobs.put([text], max_size=1024).sha256 for text in (b"1", b"2")]
        workers = []
        for name in ("alice", "bob"):
            owner, owner_token = c.signup(name)
            workers.append((owner, StandInWorker(c, owner_token, f"{name}-pc")))
        for (_, worker), stdout_sha in zip(workers, outputs, strict=True):
            (grant,) = run_on_loop(c, dispatcher.poll(worker.node, POLL))
            (outcome,) = run_on_loop(
                c, dispatcher.report(worker.node, _results([grant], stdout_sha))
            )
            assert outcome.outcome == "accepted"

        with c.coordinator.db.read() as session:
            job = session.get(Job, job_id)
            assert job is not None
            task = session.exec(select(Task).where(Task.job_id == job_id)).one()
            leases = list(session.exec(select(Lease).where(Lease.job_id == job_id)))
            problems = ledger.audit(session)
        assert job.state == JOB_FAILED and job.tasks_failed == 1
        assert task.state == TASK_FAILED and "did not agree" in task.failure_reason
        assert [x.state for x in leases] == [LEASE_INVALID, LEASE_INVALID]
        # Nobody is paid for an unverifiable result, and the whole budget goes back.
        assert job.charged_micro == 0
        assert [balance(c, owner) for owner, _ in workers] == [0, 0]
        assert balance(c, submitter) == 10 * 1_000_000
        assert escrow_balance(c, job_id) == 0
        assert problems == []


def _counting_passes(dispatcher: Any, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many reports each recording pass takes, in order (a spy on the real method)."""
    passes: list[int] = []
    record = dispatcher._record_pass

    def counting(session: Any, reports: list[Any], *rest: Any) -> Any:
        passes.append(len(reports))
        return record(session, reports, *rest)

    monkeypatch.setattr(dispatcher, "_record_pass", counting)
    return passes


def _job_and_nodes(
    c: RunningCoordinator, names: tuple[str, ...], **job: Any
) -> tuple[int, str, str, dict[str, tuple[int, Any]]]:
    """A funded submitter's job (no outputs), a stored stdout, and a node for each name: (owner, node)."""
    submitter, token = funded(c, "submitter")
    job_id = submit(c, token, output_paths=[], **job)
    stdout_sha = c.coordinator.blobs.put([b"42\n"], max_size=1024).sha256
    nodes = {}
    for name in names:
        owner, owner_token = c.signup(name)
        nodes[name] = (owner, StandInWorker(c, owner_token, f"{name}-pc").node)
    return submitter, job_id, stdout_sha, nodes


def _by_task(grants: list[LeaseGrant]) -> list[LeaseGrant]:
    return sorted(grants, key=lambda g: g.task_id)


def test_reports_arriving_together_are_recorded_in_one_pass_each_answered_for_itself(
    coordinator: RunningCoordinator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several nodes' reports at the same moment share one transaction, and those about different tasks
    are recorded in one pass (one set of statements for all of them), on SQLite and PostgreSQL. Each
    caller still gets its own answer: a report naming another node's lease is refused and records
    nothing; one repeated within the same moment is a duplicate; the replicas that complete a task are
    verified and paid once; and the core hears of it all exactly once."""
    c = coordinator
    dispatcher = c.coordinator.dispatcher
    submitter, job_id, stdout_sha, nodes = _job_and_nodes(
        c, ("alice", "bob", "mallory"), array_size=2, replicas=2
    )
    (a1, a2), (b1, b2) = (
        _by_task(run_on_loop(c, dispatcher.poll(nodes[name][1], POLL))) for name in ("alice", "bob")
    )
    assert (a1.task_id, a2.task_id) == (b1.task_id, b2.task_id)
    passes = _counting_passes(dispatcher, monkeypatch)
    accepted_before = dispatcher.counters["tasks_accepted"]

    def report(name: str, grant: LeaseGrant) -> Any:
        return dispatcher.report(nodes[name][1], _results([grant], stdout_sha))

    async def first() -> list[Any]:
        return await asyncio.gather(
            report("alice", a1), report("mallory", a1), report("bob", b2), return_exceptions=True
        )

    alice, mallory, bob = run_on_loop(c, first())
    # Mallory's report names a lease of task 1, as alice's does: it goes in a second pass, with bob's.
    assert passes == [1, 2]
    assert [o.outcome for o in alice] == [o.outcome for o in bob] == ["accepted"]
    assert isinstance(mallory, PermissionDenied) and "not given to this node" in str(mallory)
    assert balance(c, nodes["alice"][0]) == balance(c, nodes["bob"][0]) == 0  # no quorum yet

    async def second() -> list[Any]:
        return await asyncio.gather(
            report("alice", a2), report("bob", b1), report("alice", a2), return_exceptions=True
        )

    alice, bob, alice_again = run_on_loop(c, second())
    assert passes == [1, 2, 2, 1]  # both tasks complete in one pass; the repeat comes after it
    assert [o.outcome for o in alice] == [o.outcome for o in bob] == ["accepted"]
    assert [o.outcome for o in alice_again] == ["duplicate"]

    job, leases, payments = _settled(c, job_id)
    with c.coordinator.db.read() as session:
        problems = ledger.audit(session)
    assert job.state == JOB_COMPLETED and job.tasks_done == 2
    assert sorted(x.state for x in leases) == [LEASE_VALID] * 4
    assert payments == 2
    assert balance(c, nodes["mallory"][0]) == 0
    for owner in (nodes["alice"][0], nodes["bob"][0]):
        assert (
            balance(c, owner) == sum(x.paid_micro for x in leases if x.node_owner_id == owner) > 0
        )
    assert balance(c, submitter) == 10 * 1_000_000 - job.charged_micro
    assert problems == []
    # The effects of the shared passes reached the core once: two tasks accepted, none queued or held.
    assert dispatcher.counters["tasks_accepted"] - accepted_before == 2
    assert run_on_loop(c, dispatcher.poll(nodes["mallory"][1], POLL)) == []


def test_a_replica_arriving_with_those_that_decide_its_task_is_late_as_it_would_be_after_them(
    coordinator: RunningCoordinator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three replicas, a quorum of two, all three reported at once: recorded one after another, the
    third finds the task decided. It is late: not charged to the submitter, not paid, and its node's
    trust is not touched, exactly as when it comes a moment after the other two."""
    c = coordinator
    dispatcher = c.coordinator.dispatcher
    submitter, job_id, stdout_sha, nodes = _job_and_nodes(
        c, ("alice", "bob", "carol"), replicas=3, quorum=2
    )
    grants = {
        name: run_on_loop(c, dispatcher.poll(node, POLL)) for name, (_, node) in nodes.items()
    }
    assert [len(g) for g in grants.values()] == [1, 1, 1]
    passes = _counting_passes(dispatcher, monkeypatch)

    async def together() -> list[Any]:
        return await asyncio.gather(
            *(
                dispatcher.report(node, _results(grants[name], stdout_sha))
                for name, (_, node) in nodes.items()
            )
        )

    answers = run_on_loop(c, together())
    assert passes == [1, 1, 1]
    assert [[o.outcome for o in a] for a in answers] == [["accepted"], ["accepted"], ["late"]]
    job, leases, payments = _settled(c, job_id)
    carol = nodes["carol"][0]
    assert job.state == JOB_COMPLETED and payments == 1
    assert sorted(x.state for x in leases) == sorted([LEASE_VALID, LEASE_VALID, LEASE_CANCELLED])
    assert [x.charged_micro for x in leases if x.node_owner_id == carol] == [0]
    assert balance(c, carol) == 0
    assert job.charged_micro == sum(x.charged_micro for x in leases) > 0
    assert balance(c, submitter) == 10 * 1_000_000 - job.charged_micro
    with c.coordinator.db.read() as session:
        carol_node = session.get(Node, nodes["carol"][1].id)
        assert carol_node is not None and carol_node.valid_results == 0
        assert ledger.audit(session) == []


def test_polls_arriving_together_write_their_grants_in_one_batch(
    coordinator: RunningCoordinator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Concurrent polls share one write: every poll's leases go in together, and the tasks and the job
    are marked running once. A task that adaptive replication raised (its first replica went to an
    untrusted node) is raised once in the database, as it was poll by poll, even though its cross-check
    replica was granted in the same batch. On SQLite and PostgreSQL."""
    from coordinator.scheduling import service

    c = coordinator
    dispatcher = c.coordinator.dispatcher
    _, job_id, _, nodes = _job_and_nodes(c, ("alice", "bob", "carol"), array_size=3)
    batches: list[int] = []
    write = service._write_grants

    def counting(session: Any, polls: list[Any]) -> Any:
        batches.append(len(polls))
        return write(session, polls)

    monkeypatch.setattr(service, "_write_grants", counting)

    async def together() -> list[list[LeaseGrant]]:
        return list(
            await asyncio.gather(*(dispatcher.poll(node, POLL) for _, node in nodes.values()))
        )

    granted = run_on_loop(c, together())
    # Alice's poll takes the three tasks, each raised to a cross-check; bob's takes those cross-checks
    # (never two replicas on one owner); carol's finds nothing left and writes nothing.
    assert [len(grants) for grants in granted] == [3, 3, 0]
    assert batches == [2]
    leases = [g for grants in granted for g in grants]
    with c.coordinator.db.read() as session:
        rows = {x.id: x for x in session.exec(select(Lease).where(Lease.job_id == job_id))}
        tasks = list(session.exec(select(Task).where(Task.job_id == job_id)))
        job = session.get(Job, job_id)
    assert sorted(rows) == sorted(g.lease_id for g in leases)
    for (_, node), grants in zip(nodes.values(), granted, strict=True):
        assert {rows[g.lease_id].node_id for g in grants} <= {node.id}
    assert sorted((t.state, t.quorum, t.replicas_needed) for t in tasks) == [("running", 2, 2)] * 3
    assert job is not None and job.state == "running"
