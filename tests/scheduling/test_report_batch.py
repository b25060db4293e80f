"""A worker reports several leases in one call: the dispatcher records, verifies and pays them in one
transaction. Each task is paid once, to the micro-CPT, in its own ledger transaction; the whole batch
replayed pays nothing more; the job completes and refunds the rest. On SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import col, func, select

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

    with c.coordinator.db.read() as session:
        job = session.get(Job, job_id)
        assert job is not None
        leases = list(session.exec(select(Lease).where(Lease.job_id == job_id)))
        payments = session.exec(
            select(func.count())
            .select_from(LedgerTransaction)
            .where(col(LedgerTransaction.kind) == "task_payment")
        ).one()
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
