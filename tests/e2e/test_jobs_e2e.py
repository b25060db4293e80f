"""The whole loop with real parts: a coordinator, workers running real containers, verification, payment."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import select

from coordinator.jobs.models import Job, Lease
from coordinator.ledger import service as ledger
from coordinator.ledger.models import MICRO_PER_CPT
from shared_proto.v1 import jobs_pb2
from tests.e2e.cluster import cluster


def test_replicated_job_runs_verifies_and_pays_to_the_micro(db_url: str, tmp_path: Path) -> None:
    with cluster(db_url, tmp_path) as c:
        c.user("alice", grant_cpt=100)
        c.add_worker("bob")
        c.add_worker("carol")
        job_id = c.submit(
            "alice",
            name="hello",
            command=["sh", "-c", "echo hello from $HIVEMIND_TASK_INDEX > out.txt; echo done"],
            output_paths=["out.txt"],
            replicas=2,
            quorum=2,
        )
        status = c.wait("alice", job_id)
        assert status.state == "completed", status
        assert c.download("alice", job_id, "out.txt") == b"hello from 0\n"
        assert c.download("alice", job_id, "@stdout") == b"done\n"

        with c.db.read() as s:
            leases = s.exec(select(Lease).where(Lease.job_id == job_id)).all()
            valid = [x for x in leases if x.state == "valid"]
            fees = (
                ledger.get_balance_of_account(s, "system:fees")
                if hasattr(ledger, "get_balance_of_account")
                else None
            )
        assert len(valid) == 2 and {x.node_owner_id for x in valid} != 1
        charged = sum(x.charged_micro for x in valid)
        paid = {x.node_owner_id: x.paid_micro for x in valid}
        assert charged == status.charged_micro > 0
        assert c.balance("alice") == 100 * MICRO_PER_CPT - charged
        assert status.refunded_micro == MICRO_PER_CPT - charged
        assert c.balance("bob") + c.balance("carol") == sum(paid.values())
        assert fees is None or fees == charged - sum(paid.values())
        assert c.audit() == []


def test_dag_runs_in_order_and_arrays_fan_out(tmp_path: Path) -> None:
    with cluster(f"sqlite:///{tmp_path / 'c.db'}", tmp_path) as c:
        c.user("alice", grant_cpt=100)
        c.add_worker("bob")
        c.add_worker("carol")
        first = c.submit(
            "alice",
            name="step 1",
            command=["sh", "-c", "seq 1 10 > numbers.txt"],
            output_paths=["numbers.txt"],
        )
        second = c.submit(
            "alice",
            name="step 2",
            command=["sh", "-c", "awk '{s+=$1} END {print s}' in/n.txt > total.txt"],
            inputs=[
                jobs_pb2.InputRef(path="in/n.txt", from_job_id=first, from_output="numbers.txt")
            ],
            output_paths=["total.txt"],
            depends_on=[first],
        )
        array = c.submit(
            "alice",
            name="array",
            command=["sh", "-c", 'echo "$HIVEMIND_TASK_INDEX:$GREETING:$1" > out.txt', "sh"],
            output_paths=["out.txt"],
            parameter_sets=[
                jobs_pb2.ParameterSet(env={"GREETING": greeting}, args=[arg])
                for greeting, arg in (("hi", "a"), ("hej", "b"), ("ciao", "c"))
            ],
        )
        assert c.wait("alice", second).state == "completed"
        assert c.download("alice", second, "total.txt") == b"55\n"
        with c.db.read() as s:
            first_done = s.exec(select(Job.finished_at).where(Job.id == first)).one()
            second_started = min(
                s.exec(select(Lease.created_at).where(Lease.job_id == second)).all()
            )
        assert first_done is not None and second_started >= first_done
        status = c.wait("alice", array)
        assert status.state == "completed" and status.task_count == 3
        outputs = [c.download("alice", array, "out.txt", index=i) for i in range(3)]
        assert outputs == [b"0:hi:a\n", b"1:hej:b\n", b"2:ciao:c\n"]
        assert c.audit() == []


def test_a_failed_parent_fails_its_dependents_and_refunds(tmp_path: Path) -> None:
    with cluster(f"sqlite:///{tmp_path / 'c.db'}", tmp_path) as c:
        c.user("alice", grant_cpt=10)
        c.add_worker("bob")
        c.add_worker("carol")
        parent = c.submit("alice", command=["sh", "-c", "exit 3"], output_paths=["x"])
        child = c.submit(
            "alice",
            command=["true"],
            inputs=[jobs_pb2.InputRef(path="x", from_job_id=parent, from_output="x")],
            depends_on=[parent],
        )
        assert c.wait("alice", parent).state == "failed"
        status = c.wait("alice", child)
        assert status.state == "failed" and parent in status.failure_reason
        assert status.refunded_micro == MICRO_PER_CPT and status.charged_micro == 0
        assert c.audit() == []


HOSTILE = {
    "network": (
        ["sh", "-c", "wget -q -T 2 -O - http://172.17.0.1/ || nc -w 2 172.17.0.1 80 </dev/null"],
        "failed",
    ),
    "fork bomb": (["sh", "-c", "bomb() { bomb | bomb & }; bomb; sleep 3"], None),
    "memory bomb": (["sh", "-c", "x=y; while true; do x=$x$x; done"], "oom"),
    "endless loop": (["sh", "-c", "while true; do :; done"], "timeout"),
    "write outside": (["sh", "-c", "echo pwned > /etc/pwned && echo wrote"], "failed"),
    "10 GB output": (["sh", "-c", "dd if=/dev/zero of=big bs=1M count=10240"], "output_too_large"),
}


def test_hostile_jobs_are_contained_and_the_workers_go_on(tmp_path: Path) -> None:
    with cluster(
        f"sqlite:///{tmp_path / 'c.db'}", tmp_path, max_output_bytes=64 * 1024 * 1024
    ) as c:
        c.user("alice", grant_cpt=100)
        c.add_worker("bob")
        c.add_worker("carol")
        # A third owner: the fork bomb's outcome depends on the machine's load, so two replicas may
        # disagree, and the tie-breaking replica may not go to an owner that already ran one. With only
        # two owners that job waited forever for a node that may run it (seen once in CI, under load).
        c.add_worker("dave")
        for name, (command, expected) in HOSTILE.items():
            job_id = c.submit(
                "alice",
                name=name,
                command=command,
                timeout_s=5,
                resources={"cpu_cores": 0.5, "memory_gb": 0.0625},
                output_paths=["big"],
            )
            status = c.wait("alice", job_id, timeout_s=120)
            if (
                expected is None
            ):  # the fork bomb: contained by the pids limit, however the shell then ends
                continue
            assert status.state == "failed", (name, status)
            assert status.failure_reason, name
            with c.db.read() as s:
                leases = s.exec(select(Lease).where(Lease.job_id == job_id)).all()
            statuses = {x.status for x in leases if x.state in ("valid", "invalid", "reported")}
            assert statuses == {expected}, (name, statuses, status.failure_reason)
        # ... and both workers still serve a normal job.
        ok = c.submit(
            "alice",
            command=["sh", "-c", "echo fine > out.txt"],
            output_paths=["out.txt"],
            replicas=2,
            quorum=2,
        )
        assert c.wait("alice", ok).state == "completed"
        assert c.download("alice", ok, "out.txt") == b"fine\n"
        assert c.audit() == []
