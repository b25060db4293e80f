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
    LEASE_INVALID,
    LEASE_VALID,
    TASK_FAILED,
    Job,
    Lease,
    Task,
)
from coordinator.ledger import service as ledger
from coordinator.ledger.models import LedgerTransaction
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


def test_reports_arriving_together_are_recorded_in_one_pass_each_answered_for_itself(
    coordinator: RunningCoordinator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several nodes' reports at the same moment share one transaction and are recorded in one pass (one
    set of statements for all of them), on SQLite and PostgreSQL. Each caller still gets its own answer:
    a report naming another node's lease is refused and records nothing, one repeated within the same
    moment is a duplicate, both replicas of a task are verified together and paid once, and the core
    hears of it all exactly once."""
    c = coordinator
    dispatcher = c.coordinator.dispatcher
    submitter, token = funded(c, "submitter")
    job_id = submit(c, token, array_size=2, replicas=2, output_paths=[])
    stdout_sha = c.coordinator.blobs.put([b"42\n"], max_size=1024).sha256
    nodes = {}
    for name in ("alice", "bob", "mallory"):
        owner, owner_token = c.signup(name)
        nodes[name] = (owner, StandInWorker(c, owner_token, f"{name}-pc").node)
    grants = {
        name: run_on_loop(c, dispatcher.poll(nodes[name][1], POLL)) for name in ("alice", "bob")
    }
    assert [len(g) for g in grants.values()] == [2, 2]
    passes: list[int] = []
    record = dispatcher._record_reports

    def counting(session: Any, reports: list[Any]) -> Any:
        passes.append(len(reports))
        return record(session, reports)

    monkeypatch.setattr(dispatcher, "_record_reports", counting)
    accepted_before = dispatcher.counters["tasks_accepted"]

    async def together() -> list[Any]:
        return await asyncio.gather(
            dispatcher.report(nodes["alice"][1], _results(grants["alice"], stdout_sha)),
            dispatcher.report(nodes["mallory"][1], _results(grants["alice"], stdout_sha)),
            dispatcher.report(nodes["bob"][1], _results(grants["bob"], stdout_sha)),
            dispatcher.report(nodes["alice"][1], _results(grants["alice"], stdout_sha)),
            return_exceptions=True,
        )

    alice, mallory, bob, alice_again = run_on_loop(c, together())
    assert passes == [4]
    assert [o.outcome for o in alice] == ["accepted"] * 2
    assert isinstance(mallory, PermissionDenied) and "not given to this node" in str(mallory)
    assert [o.outcome for o in bob] == ["accepted"] * 2
    assert [o.outcome for o in alice_again] == ["duplicate"] * 2

    job, leases, payments = _settled(c, job_id)
    with c.coordinator.db.read() as session:
        problems = ledger.audit(session)
    assert job.state == JOB_COMPLETED and job.tasks_done == 2
    assert sorted(x.state for x in leases) == [LEASE_VALID] * 4
    assert {x.node_owner_id for x in leases} == {nodes["alice"][0], nodes["bob"][0]}
    assert payments == 2
    assert balance(c, nodes["mallory"][0]) == 0
    assert balance(c, nodes["alice"][0]) == sum(
        x.paid_micro for x in leases if x.node_owner_id == nodes["alice"][0]
    )
    assert balance(c, submitter) == 10 * 1_000_000 - job.charged_micro
    assert problems == []
    # The effects of the shared pass reached the core once: two tasks accepted, none queued or held.
    assert dispatcher.counters["tasks_accepted"] - accepted_before == 2
    assert run_on_loop(c, dispatcher.poll(nodes["mallory"][1], POLL)) == []
