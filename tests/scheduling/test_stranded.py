"""A task whose replicas disagree needs a tie-breaker from a node of a new owner. When every connected node
belongs to an owner who already ran it, the task does not wait forever: after ``replica_wait_s`` it fails,
with a reason the submitter can read, and the job ends (escrow refunded, nobody paid for the tie)."""

from __future__ import annotations

import time
from pathlib import Path

from sqlmodel import col, select

from coordinator.jobs.models import JOB_FAILED, LEASE_REPORTED, TASK_FAILED, Job, Lease, Task
from tests.admin.helpers import funded, submit
from tests.jobs.helpers import CPT, StandInWorker, balance, run_on_loop
from tests.scheduling.test_report_batch import POLL
from tests.support import RunningCoordinator, bearer


def test_a_tie_two_owners_cannot_break_fails_with_a_reason(db_url: str, tmp_path: Path) -> None:
    with RunningCoordinator.start(db_url=db_url, data_dir=tmp_path, replica_wait_s=2) as c:
        dispatcher = c.coordinator.dispatcher
        submitter, token = funded(c, "submitter")
        job_id = submit(c, token, replicas=2, output_paths=[])
        workers = []
        for name in ("alice", "bob"):
            owner, owner_token = c.signup(name)
            workers.append((owner, StandInWorker(c, owner_token, f"{name}-pc")))
        for (_, worker), stdout in zip(workers, (b"heads\n", b"tails\n"), strict=True):
            assert worker.run_one({}, stdout, []) is not None  # the two replicas disagree

        with c.coordinator.db.read() as session:
            (task,) = session.exec(select(Task).where(col(Task.job_id) == job_id)).all()
            assert task.replicas_needed == 3  # a tie-breaker is asked for; neither owner may run it
        for _, worker in workers:  # both nodes keep asking for work, and get none
            assert run_on_loop(c, dispatcher.poll(worker.node, POLL)) == []

        deadline = time.monotonic() + 30
        while True:
            with c.coordinator.db.read() as session:
                # The job first: on PostgreSQL each statement of a read sees what was committed when it
                # ran, and the task fails in the transaction that fails the job, so a job seen failed
                # means its task is seen failed too (read the other way round, the task could be read
                # just before that commit and the job just after).
                job = session.get(Job, job_id)
                task = session.get(Task, task.id)
                assert task is not None and job is not None
                if job.state == JOB_FAILED or time.monotonic() > deadline:
                    break
            time.sleep(0.2)
            # stay connected: a node silent for a node TTL would not count as ready
            for _, worker in workers:
                run_on_loop(c, dispatcher.poll(worker.node, POLL))

        assert (job.state, task.state) == (JOB_FAILED, TASK_FAILED)
        assert task.failure_reason.startswith(
            "Stranded: its next replica must run on a node of an owner"
        )
        assert "2 owner(s)" in task.failure_reason and "3 different owners" in task.failure_reason
        shown = c.http.get(f"/api/v1/jobs/{job_id}", headers=bearer(token)).json()
        assert "Stranded" in shown["failure_reason"]
        with c.coordinator.db.read() as session:
            leases = session.exec(select(Lease).where(col(Lease.task_id) == task.id)).all()
            assert sorted(x.state for x in leases) == [LEASE_REPORTED, LEASE_REPORTED]
        admin = bearer(c.make_admin("ada"))
        seen = c.http.get(f"/api/v1/admin/jobs/{job_id}", headers=admin).json()
        assert [t["verification"] for t in seen["tasks"]] == ["undecided"]
        assert balance(c, submitter) == 10 * CPT  # the whole escrow came back
        assert [balance(c, owner) for owner, _ in workers] == [0, 0]


def test_a_busy_third_owner_that_heartbeats_keeps_the_tie_waiting(tmp_path: Path) -> None:
    """A node busy with long tasks stops polling but heartbeats: it still counts as ready, so the tie waits
    for it. Once it goes silent for a node TTL, the wait runs and the task fails."""
    with RunningCoordinator.start(
        db_url=f"sqlite:///{tmp_path / 'c.db'}",
        data_dir=tmp_path,
        replica_wait_s=2,
        node_ttl_s=4,
    ) as c:
        dispatcher = c.coordinator.dispatcher
        _, carol_token = c.signup("carol")
        carol = StandInWorker(c, carol_token, "carol-pc")
        assert run_on_loop(c, dispatcher.poll(carol.node, POLL)) == []  # ready; nothing queued yet
        _, token = funded(c, "submitter")
        job_id = submit(c, token, replicas=2, output_paths=[])
        workers = []
        for name, stdout in (("alice", b"heads\n"), ("bob", b"tails\n")):
            _, owner_token = c.signup(name)
            worker = StandInWorker(c, owner_token, f"{name}-pc")
            assert worker.run_one({}, stdout, []) is not None
            workers.append(worker)

        def job_state() -> str:
            with c.coordinator.db.read() as session:
                job = session.get(Job, job_id)
                assert job is not None
                return job.state

        # Without the heartbeats carol would be dropped after a node TTL and the task failed one wait later
        # (about 6 s). The TTL leaves the heartbeats (every 0.3 s) a wide margin on a loaded machine.
        until = time.monotonic() + 10
        while time.monotonic() < until:
            run_on_loop(c, dispatcher.heartbeat(carol.node, [], {}, "busy"))
            for worker in workers:
                run_on_loop(c, dispatcher.poll(worker.node, POLL))
            time.sleep(0.3)
        assert job_state() != JOB_FAILED  # carol's node may still take the tie-breaker

        deadline = time.monotonic() + 30  # carol goes silent
        while job_state() != JOB_FAILED and time.monotonic() < deadline:
            for worker in workers:
                run_on_loop(c, dispatcher.poll(worker.node, POLL))
            time.sleep(0.3)
        assert job_state() == JOB_FAILED
