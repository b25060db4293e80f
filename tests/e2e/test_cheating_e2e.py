"""Cheating with real parts: a worker whose results are wrong is outvoted by the quorum and earns nothing,
a repeat offender is quarantined (even when caught several times at once), and a single-replica job on
untrusted nodes is cross-checked once."""

from __future__ import annotations

import dataclasses
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlmodel import select

from client_gui.engine.docker_status import DockerStatus
from client_gui.engine.executor import DockerExecutor, ExecResult, ExecSpec, LogCallback
from client_gui.engine.worker import Worker
from coordinator.jobs.models import Task
from coordinator.ledger.models import MICRO_PER_CPT
from coordinator.nodes.models import Node
from coordinator.verification.core import QUARANTINE_AFTER, TRUST_STREAK
from tests.e2e.cluster import Cluster, cluster
from tests.e2e.test_failures_e2e import (
    HandNode,
    in_state,
    leases_of,
    paid_by_owner,
    payments,
    sha,
    standby,
    wait_for,
)

GRANT = 100 * MICRO_PER_CPT
ANSWER = ["sh", "-c", "echo 42 > answer.txt; echo done"]


class TamperingExecutor:
    """Runs the task for real, then replaces each output with other bytes and the sha256 of those, so what
    it uploads is self-consistent: only comparing it with other nodes' results can tell it is wrong."""

    def __init__(self, work_dir: Path, allow_network: bool) -> None:
        self.honest = DockerExecutor(work_dir / "exec", allow_network=allow_network)

    def status(self) -> DockerStatus:
        return self.honest.status()

    def run(
        self,
        spec: ExecSpec,
        *,
        on_log: LogCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> ExecResult:
        result = self.honest.run(spec, on_log=on_log, cancel=cancel)
        forged = []
        for output in result.outputs:
            data = b"forged " + output.local_path.read_bytes()
            output.local_path.write_bytes(data)
            forged.append(dataclasses.replace(output, sha256=sha(data), size=len(data)))
        return dataclasses.replace(result, outputs=forged)


def add_cheater(c: Cluster, owner: str, slots: int = 2) -> Worker:
    work_dir = c.home / owner / "work"
    return c.add_worker(
        owner, slots=slots, executor_factory=lambda network: TamperingExecutor(work_dir, network)
    )


def node_row(c: Cluster, node_id: str) -> Node:
    with c.db.read() as s:
        node: Node | None = s.get(Node, node_id)
    assert node is not None
    return node


def test_a_wrong_result_is_outvoted_and_its_worker_earns_nothing(
    db_url: str, tmp_path: Path
) -> None:
    with cluster(db_url, tmp_path) as c:
        c.user("alice", grant_cpt=100)
        mallory = add_cheater(c, "mallory")
        c.add_worker("bob")
        carol = standby(c, "carol")
        job_id = c.submit(
            "alice", command=ANSWER, output_paths=["answer.txt"], replicas=3, quorum=2
        )
        # The third replica starts once the cheater's result is in, so the quorum has to weigh it.
        wait_for("two results", lambda: len(in_state(c, job_id, "reported")) == 2)
        carol.resume()
        status = c.wait("alice", job_id)

        assert status.state == "completed", status
        assert c.download("alice", job_id, "answer.txt") == b"42\n"
        leases = leases_of(c, job_id)
        (cheat,) = [x for x in leases if x.node_id == mallory.node_id]
        assert (cheat.state, cheat.charged_micro, cheat.paid_micro) == ("invalid", 0, 0)
        valid = [x for x in leases if x.state == "valid"]
        paid = paid_by_owner(c, valid)
        assert len(leases) == 3 and sorted(paid) == ["bob", "carol"]
        assert c.balance("mallory") == 0
        assert c.balance("bob") == paid["bob"] > 0 and c.balance("carol") == paid["carol"] > 0
        assert status.charged_micro == sum(x.charged_micro for x in valid)
        assert c.balance("alice") == GRANT - status.charged_micro
        assert payments(c) == 2
        node = node_row(c, mallory.node_id)
        assert (node.invalid_results, node.valid_streak, node.quarantined) == (1, 0, False)
        assert c.audit() == []


def test_a_repeat_offender_is_quarantined_and_gets_no_more_work(
    db_url: str, tmp_path: Path
) -> None:
    with cluster(db_url, tmp_path) as c:
        c.user("alice", grant_cpt=100)
        mallory = add_cheater(c, "mallory", slots=QUARANTINE_AFTER)
        c.add_worker("bob", slots=QUARANTINE_AFTER)
        carol = standby(c, "carol", slots=QUARANTINE_AFTER)
        caught = c.submit(
            "alice",
            command=ANSWER,
            output_paths=["answer.txt"],
            replicas=3,
            quorum=2,
            array_size=QUARANTINE_AFTER,
        )
        wait_for(
            "the first two results of every task",
            lambda: len(in_state(c, caught, "reported")) == 2 * QUARANTINE_AFTER,
        )
        carol.resume()
        assert c.wait("alice", caught).state == "completed"
        node = node_row(c, mallory.node_id)
        assert (node.invalid_results, node.valid_streak, node.quarantined) == (
            QUARANTINE_AFTER,
            0,
            True,
        )

        # Submitted at once: the cheater's worker is polling right now, and must get none of it.
        after = c.submit("alice", command=ANSWER, output_paths=["answer.txt"], replicas=3, quorum=2)
        status = c.wait("alice", after)
        assert status.state == "completed", status
        assert c.download("alice", after, "answer.txt") == b"42\n"
        leases = leases_of(c, after)
        assert mallory.node_id not in {x.node_id for x in leases}
        assert sorted(paid_by_owner(c, in_state(c, after, "valid"))) == ["bob", "carol"]
        assert c.balance("mallory") == 0
        assert c.audit() == []


def test_disagreements_settled_at_the_same_moment_all_count(db_url: str, tmp_path: Path) -> None:
    jobs = 6
    with cluster(db_url, tmp_path) as c:
        c.user("alice", grant_cpt=100)
        command = ["sh", "-c", "echo 42 > out.txt"]
        job_ids = [
            c.submit("alice", command=command, output_paths=["out.txt"], replicas=3, quorum=2)
            for _ in range(jobs)
        ]
        # Driven by hand: a worker's results arrive one by one, here they must arrive together.
        mallory, bob, carol = (HandNode(c, name) for name in ("mallory", "bob", "carol"))
        forged = [mallory.deliver(x.lease_id, b"43\n") for x in mallory.poll_many(jobs)]
        assert mallory.report(*forged) == ["accepted"] * jobs
        honest = [bob.deliver(x.lease_id) for x in bob.poll_many(jobs)]
        assert bob.report(*honest) == ["accepted"] * jobs
        # Each of carol's results settles one job: reported one by one at once, they are settled together.
        deciding = [carol.deliver(x.lease_id) for x in carol.poll_many(jobs)]
        with ThreadPoolExecutor(jobs) as pool:
            outcomes = list(pool.map(carol.report, deciding))
        assert outcomes == [["accepted"]] * jobs

        assert {c.wait("alice", job_id, timeout_s=10).state for job_id in job_ids} == {"completed"}
        cheat = node_row(c, mallory.node_id)
        assert (cheat.invalid_results, cheat.valid_results, cheat.quarantined) == (jobs, 0, True)
        for node in (node_row(c, bob.node_id), node_row(c, carol.node_id)):
            assert (node.valid_results, node.valid_streak, node.invalid_results) == (jobs, jobs, 0)
        paid = paid_by_owner(c, [x for job_id in job_ids for x in in_state(c, job_id, "valid")])
        assert sorted(paid) == ["bob", "carol"] and c.balance("mallory") == 0
        assert c.balance("bob") == paid["bob"] and c.balance("carol") == paid["carol"]
        assert payments(c) == 2 * jobs
        assert c.audit() == []


def test_a_single_replica_job_on_an_untrusted_node_gets_one_cross_check_elsewhere(
    db_url: str, tmp_path: Path
) -> None:
    with cluster(db_url, tmp_path) as c:
        c.user("alice", grant_cpt=100)
        bob = c.add_worker("bob")
        others = [standby(c, "carol"), standby(c, "dave")]
        job_id = c.submit("alice", command=ANSWER, output_paths=["answer.txt"], replicas=1)
        # Bob's node has no record yet, so his result alone does not settle the task.
        wait_for("bob's result", lambda: in_state(c, job_id, "reported"))
        assert node_row(c, bob.node_id).valid_streak < TRUST_STREAK
        assert c.job_row(job_id).state == "running"
        # Two idle nodes of other owners: one cross-check is needed, so only one of them runs it.
        for worker in others:
            worker.resume()
        status = c.wait("alice", job_id)

        assert status.state == "completed", status
        assert c.download("alice", job_id, "answer.txt") == b"42\n"
        leases = leases_of(c, job_id)
        valid = in_state(c, job_id, "valid")
        paid = paid_by_owner(c, valid)
        assert len(leases) == len(valid) == 2 and "bob" in paid, paid
        with c.db.read() as s:
            task = s.exec(select(Task).where(Task.job_id == job_id)).one()
        assert (task.quorum, task.replicas_needed) == (2, 2)
        assert status.charged_micro == sum(x.charged_micro for x in valid) > 0
        assert c.balance("alice") == GRANT - status.charged_micro
        assert all(c.balance(name) == amount > 0 for name, amount in paid.items())
        assert payments(c) == 2
        assert c.audit() == []
