"""Things going wrong with real parts: a worker process killed mid-task, the coordinator restarted mid-run,
results reported twice or too late, and nodes reaching for leases that are not theirs."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TypeVar

import grpc
import pytest
from sqlmodel import col, func, select

from client_gui.engine.executor import DockerExecutor
from client_gui.engine.identity import FileCredentialStore
from client_gui.engine.worker import NodeIdentity, Worker
from coordinator.accounts.models import User
from coordinator.jobs.models import Blob, Lease, Task, TaskLog
from coordinator.ledger.models import MICRO_PER_CPT, LedgerAccount, LedgerEntry, LedgerTransaction
from coordinator.server import BackgroundCoordinator
from coordinator.settings import Settings
from shared_proto.v1 import jobs_pb2, nodes_pb2, worker_pb2, worker_pb2_grpc
from tests.e2e.cluster import Cluster, cluster, rpc_code
from tests.jobs.helpers import run_on_loop
from tests.support import TEST_JWT_SECRET, RunningCoordinator, auth

T = TypeVar("T")
GRANT = 100 * MICRO_PER_CPT
REPO_ROOT = Path(__file__).resolve().parents[2]
SLOW_TASK = ["sh", "-c", "echo started; sleep 4; echo ok > out.txt"]
# What a hand-driven node says its run printed and wrote to out.txt.
STDOUT = b"done\n"
OUTPUT = b"42\n"


# -- helpers ---------------------------------------------------------------------------------------------


def wait_for(what: str, probe: Callable[[], T], timeout_s: float = 60) -> T:
    """Poll ``probe`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout_s
    while not (found := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.1)
    return found


def standby(c: Cluster, owner: str, slots: int = 2) -> Worker:
    """A worker that registers now but takes no work until ``resume()``, so that starting it later costs
    no time (registering benchmarks the computer)."""
    worker = c.add_worker(owner, slots=slots)
    worker.pause()  # long before its first poll: registering takes seconds
    return worker


def leases_of(c: Cluster, job_id: str) -> list[Lease]:
    with c.db.read() as s:
        return list(
            s.exec(select(Lease).where(Lease.job_id == job_id).order_by(col(Lease.created_at)))
        )


def in_state(c: Cluster, job_id: str, state: str) -> list[Lease]:
    return [x for x in leases_of(c, job_id) if x.state == state]


def paid_by_owner(c: Cluster, leases: list[Lease]) -> dict[str, int]:
    """What the leases paid, by the username of each node's owner."""
    with c.db.read() as s:
        names = {u.id: u.username for u in s.exec(select(User))}
    paid: dict[str, int] = {}
    for x in leases:
        paid[names[x.node_owner_id]] = paid.get(names[x.node_owner_id], 0) + x.paid_micro
    return paid


def payments(c: Cluster) -> int:
    """How many times a worker's wallet was credited for a task (one task is paid in one ledger transaction,
    with a credit per agreeing node's owner)."""
    with c.db.read() as s:
        return int(
            s.exec(
                select(func.count())
                .select_from(LedgerEntry)
                .join(
                    LedgerTransaction, col(LedgerTransaction.id) == col(LedgerEntry.transaction_id)
                )
                .join(LedgerAccount, col(LedgerAccount.id) == col(LedgerEntry.account_id))
                .where(
                    LedgerTransaction.kind == "task_payment",
                    LedgerAccount.kind == "user",
                    col(LedgerEntry.amount_micro) > 0,
                )
            ).one()
        )


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def denied(call: Callable[[], object]) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    assert rpc_code(caught.value) is grpc.StatusCode.PERMISSION_DENIED, caught.value


class HandNode:
    """A node driven call by call over the real WorkerService, the way a worker (or a misbehaving one)
    would: registered with its owner's token, then acting with its own node credential."""

    def __init__(self, c: Cluster, owner: str) -> None:
        token = c.tokens.get(owner) or c.user(owner)
        reply = c.running.nodes.RegisterWorkerNode(
            nodes_pb2.RegisterWorkerNodeRequest(
                hostname=f"{owner}-pc",
                cpu_cores=4,
                memory_gb=8.0,
                cpu_score=500.0,
                docker_status=True,
            ),
            metadata=auth(token),
        )
        self.node_id = reply.node_id
        self.credential = reply.node_credential
        self.metadata = auth(self.credential)
        self.stub = worker_pb2_grpc.WorkerServiceStub(c.running.channel)

    def poll(self) -> worker_pb2.Lease:
        (lease,) = self.poll_many(1)
        return lease

    def poll_many(self, count: int) -> list[worker_pb2.Lease]:
        reply = self.stub.PollTasks(
            worker_pb2.PollTasksRequest(
                max_tasks=count, free_cpu_cores=4, free_memory_gb=8, wait_s=5, docker_available=True
            ),
            metadata=self.metadata,
        )
        assert len(reply.leases) == count, reply
        return list(reply.leases)

    def upload(self, lease_id: str, path: str, data: bytes) -> str:
        first = jobs_pb2.FileChunk(
            data=data, lease_id=lease_id, path=path, expected_sha256=sha(data), total_size=len(data)
        )
        return str(self.stub.UploadOutput(iter([first]), metadata=self.metadata).sha256)

    def download(self, lease_id: str, sha256: str) -> bytes:
        chunks = self.stub.DownloadInput(
            worker_pb2.DownloadInputRequest(lease_id=lease_id, sha256=sha256),
            metadata=self.metadata,
        )
        return b"".join(chunk.data for chunk in chunks)

    @staticmethod
    def result(lease_id: str, output: bytes = OUTPUT) -> worker_pb2.TaskResult:
        """The report of a run that printed STDOUT and wrote ``output`` to out.txt."""
        return worker_pb2.TaskResult(
            lease_id=lease_id,
            status="succeeded",
            exit_code=0,
            stdout_sha256=sha(STDOUT),
            outputs=[jobs_pb2.OutputFile(path="out.txt", sha256=sha(output), size=len(output))],
            usage=worker_pb2.Usage(cpu_seconds=0.5, peak_memory_bytes=2**20, wall_seconds=1.0),
        )

    def deliver(self, lease_id: str, output: bytes = OUTPUT) -> worker_pb2.TaskResult:
        """Upload that run's stdout and out.txt for ``lease_id``; returns its report."""
        assert self.upload(lease_id, "@stdout", STDOUT) == sha(STDOUT)
        assert self.upload(lease_id, "out.txt", output) == sha(output)
        return self.result(lease_id, output)

    def report(self, *results: worker_pb2.TaskResult) -> list[str]:
        reply = self.stub.ReportResults(
            worker_pb2.ReportResultsRequest(results=results), metadata=self.metadata
        )
        return [o.outcome for o in reply.outcomes]


# -- a worker killed mid-task ------------------------------------------------------------------------------


def start_cli_worker(c: Cluster, owner: str, home: Path) -> subprocess.Popen[bytes]:
    """``hivemind worker`` as its own process, as a volunteer runs it on a computer registered before
    (registering anew would spend ~10 s on the full benchmark)."""
    node = HandNode(c, owner)
    credentials = home / "credentials.json"
    NodeIdentity(
        FileCredentialStore(credentials),
        c.running.grpc_target,
        config_path=home / "worker.json",
        credential_file=credentials,
    ).save(node.node_id, node.credential)
    # Never touch a real keyring: the credential is in --credential-file.
    env = {**os.environ, "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
    with (home / "worker.log").open("wb") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "coordinator",
                "worker",
                f"--coordinator={c.running.grpc_target}",
                f"--credential-file={credentials}",
                f"--config={home / 'worker.json'}",
                f"--work-dir={home / 'work'}",
                "--slots=1",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def printed(c: Cluster, lease_id: str) -> list[str]:
    """The log lines of a lease that reached the coordinator (what the submitter can stream)."""
    with c.db.read() as s:
        return list(s.exec(select(TaskLog.text).where(TaskLog.lease_id == lease_id)))


def test_a_worker_killed_mid_task_is_not_paid_and_the_task_completes_elsewhere(
    db_url: str, tmp_path: Path
) -> None:
    bob_home = tmp_path / "bob-process"
    bob_home.mkdir()
    with cluster(db_url, tmp_path, lease_ttl_s=4) as c:
        c.user("alice", grant_cpt=100)
        others = [standby(c, "carol", slots=1), standby(c, "dave", slots=1)]
        job_id = c.submit("alice", command=SLOW_TASK, output_paths=["out.txt"], replicas=1)
        bob = start_cli_worker(c, "bob", bob_home)
        try:
            (killed,) = wait_for(
                "the worker process to lease the task", lambda: in_state(c, job_id, "active")
            )
            wait_for("its container to run", lambda: printed(c, killed.id))
            bob.kill()
            bob.wait(10)
            # Fresh nodes are untrusted: one of them runs the cross-check at once, the other takes the
            # killed worker's replica once its lease has expired.
            for worker in others:
                worker.resume()
            status = c.wait("alice", job_id, timeout_s=60)
        finally:
            if bob.poll() is None:
                bob.kill()
                bob.wait(10)
            # The killed worker's container outlives it; its next start would remove it, as this does.
            DockerExecutor(bob_home / "work" / "exec").remove_leftovers()

        assert status.state == "completed", (status, (bob_home / "worker.log").read_text())
        assert c.download("alice", job_id, "out.txt") == b"ok\n"
        leases = leases_of(c, job_id)
        lost = next(x for x in leases if x.id == killed.id)
        assert (lost.state, lost.charged_micro, lost.paid_micro) == ("expired", 0, 0)
        valid = [x for x in leases if x.state == "valid"]
        paid = paid_by_owner(c, valid)
        assert len(leases) == 3 and sorted(paid) == ["carol", "dave"]
        assert status.tasks[0].attempts == 1  # the lost replica counted as an attempt
        charged = sum(x.charged_micro for x in valid)
        assert charged == status.charged_micro > 0
        assert c.balance("alice") == GRANT - charged
        assert c.balance("bob") == 0
        assert c.balance("carol") == paid["carol"] > 0 and c.balance("dave") == paid["dave"] > 0
        assert payments(c) == 2
        assert c.audit() == []


# -- the coordinator restarted mid-run ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(settings: Settings) -> Iterator[RunningCoordinator]:
    background = BackgroundCoordinator(settings)
    background.start()
    running = RunningCoordinator(background)
    try:
        yield running
    finally:
        running.channel.close()
        running.http.close()
        background.stop()


def test_a_coordinator_restart_mid_run_loses_no_job_and_no_lease(
    db_url: str, tmp_path: Path
) -> None:
    # Same port, database and data dir on both sides of the restart, as a restarted service would have.
    settings = Settings(
        db=db_url,
        data_dir=tmp_path / "coordinator",
        grpc_port=free_port(),
        http_port=0,
        jwt_secret=TEST_JWT_SECRET,
        log_format="text",
        lease_ttl_s=8,
        heartbeat_interval_s=1,
        node_ttl_s=16,
    )
    with serving(settings) as first:
        c = Cluster(first, tmp_path)
        try:
            c.user("alice", grant_cpt=100)
            c.add_worker("bob", slots=1)
            c.add_worker("carol", slots=1)
            running_job = c.submit(
                "alice",
                command=["sh", "-c", "sleep 5; echo ok > out.txt"],
                output_paths=["out.txt"],
                replicas=2,
                quorum=2,
            )
            # Both workers are busy with the first job, so this one is still queued at the restart.
            queued_job = c.submit(
                "alice", command=["sh", "-c", "echo second"], replicas=2, quorum=2
            )
            wait_for("both replicas to run", lambda: len(in_state(c, running_job, "active")) == 2)
            held = in_state(c, running_job, "active")
        except BaseException:
            c.stop_workers()
            raise

    try:
        with serving(settings) as second:
            c = Cluster(second, tmp_path, workers=c.workers, tokens=c.tokens)
            core = second.coordinator.dispatcher.core

            async def restored() -> set[str]:
                return set(core.leases)

            assert {x.id for x in held} <= run_on_loop(second, restored())
            statuses = [c.wait("alice", job_id) for job_id in (running_job, queued_job)]
            c.stop_workers()  # while the coordinator answers, so that they stop at once
            assert [s.state for s in statuses] == ["completed", "completed"], statuses
            assert c.download("alice", running_job, "out.txt") == b"ok\n"
            assert c.download("alice", queued_job, "@stdout") == b"second\n"
            listed = c.jobs.ListJobs(
                jobs_pb2.ListJobsRequest(page_size=10), metadata=auth(c.tokens["alice"])
            )
            assert sorted(j.job_id for j in listed.jobs) == sorted([running_job, queued_job])
            # The leases held across the restart were renewed and paid: nothing expired, nothing ran twice.
            first_leases = leases_of(c, running_job)
            assert sorted(x.id for x in first_leases) == sorted(x.id for x in held)
            assert {x.state for x in first_leases} == {"valid"}
            valid = first_leases + in_state(c, queued_job, "valid")
            assert len(valid) == 4 and payments(c) == 4
            charged = sum(s.charged_micro for s in statuses)
            assert charged == sum(x.charged_micro for x in valid) > 0
            assert c.balance("alice") == GRANT - charged
            assert c.balance("bob") + c.balance("carol") == sum(x.paid_micro for x in valid)
            assert c.audit() == []
    finally:
        c.stop_workers()


# -- duplicate and late reports ----------------------------------------------------------------------------


def test_a_duplicate_report_is_answered_again_and_paid_once(db_url: str, tmp_path: Path) -> None:
    with cluster(db_url, tmp_path) as c:
        c.user("alice", grant_cpt=100)
        bob, carol = HandNode(c, "bob"), HandNode(c, "carol")
        job_id = c.submit(
            "alice", command=["sh", "-c", "echo 42"], output_paths=["out.txt"], replicas=2, quorum=2
        )
        bob_result = bob.deliver(bob.poll().lease_id)
        carol_result = carol.deliver(carol.poll().lease_id)

        # Sent twice in one batch and again while the quorum is still open: stored once.
        assert bob.report(bob_result, bob_result) == ["accepted", "duplicate"]
        assert bob.report(bob_result) == ["duplicate"]
        assert carol.report(carol_result) == ["accepted"]
        status = c.wait("alice", job_id, timeout_s=10)
        assert status.state == "completed", status
        balances = {name: c.balance(name) for name in ("alice", "bob", "carol")}

        # Sent again after it was paid (a worker that missed the answer retries): nothing moves.
        assert bob.report(bob_result) == ["duplicate"]
        assert carol.report(carol_result, carol_result) == ["duplicate", "duplicate"]
        assert {name: c.balance(name) for name in balances} == balances
        valid = in_state(c, job_id, "valid")
        assert len(valid) == 2 and payments(c) == 2
        assert balances["alice"] == GRANT - status.charged_micro
        assert status.charged_micro == sum(x.charged_micro for x in valid) > 0
        assert balances["bob"] + balances["carol"] == sum(x.paid_micro for x in valid)
        assert c.download("alice", job_id, "out.txt") == OUTPUT
        assert c.audit() == []


def test_a_report_for_an_expired_lease_pays_nothing(db_url: str, tmp_path: Path) -> None:
    with cluster(db_url, tmp_path, lease_ttl_s=2) as c:
        c.user("alice", grant_cpt=100)
        bob = HandNode(c, "bob")
        job_id = c.submit(
            "alice", command=["sh", "-c", "echo 42"], output_paths=["out.txt"], replicas=2, quorum=2
        )
        lease = bob.poll()
        result = bob.deliver(lease.lease_id)
        # No heartbeat: the coordinator takes the lease back and queues the replica again.
        wait_for("the lease to expire", lambda: in_state(c, job_id, "expired"), timeout_s=20)
        balances = {name: c.balance(name) for name in ("alice", "bob")}

        assert bob.report(result) == ["late"]
        (row,) = leases_of(c, job_id)
        assert (row.id, row.state, row.charged_micro, row.paid_micro) == (
            lease.lease_id,
            "expired",
            0,
            0,
        )
        assert {name: c.balance(name) for name in balances} == balances
        assert balances["bob"] == 0 and payments(c) == 0
        assert c.job_row(job_id).state in ("queued", "running")
        with c.db.read() as s:
            task = s.exec(select(Task).where(Task.job_id == job_id)).one()
        assert (task.state, task.attempts) == ("queued", 1)
        assert c.audit() == []


# -- leases that are not the caller's ----------------------------------------------------------------------


def test_a_node_cannot_report_upload_or_download_for_a_lease_it_was_not_given(
    db_url: str, tmp_path: Path
) -> None:
    with cluster(db_url, tmp_path) as c:
        c.user("alice", grant_cpt=100)
        secret = b"the submitter's input\n"
        uploaded = c.jobs.UploadInput(
            iter(
                [
                    jobs_pb2.FileChunk(
                        data=secret, expected_sha256=sha(secret), total_size=len(secret)
                    )
                ]
            ),
            metadata=auth(c.tokens["alice"]),
        )
        job_id = c.submit(
            "alice",
            command=["sh", "-c", "cat in.txt"],
            inputs=[jobs_pb2.InputRef(path="in.txt", sha256=uploaded.sha256)],
            output_paths=["out.txt"],
            replicas=2,
            quorum=2,
        )
        bob, carol = HandNode(c, "bob"), HandNode(c, "carol")
        own, others = bob.poll(), carol.poll()
        assert bob.download(own.lease_id, uploaded.sha256) == secret
        own_result = bob.deliver(own.lease_id)
        forged = b"forged\n"

        for lease_id in (others.lease_id, str(uuid.uuid4())):
            denied(partial(bob.report, bob.result(lease_id)))
            denied(partial(bob.upload, lease_id, "out.txt", forged))
            denied(partial(bob.download, lease_id, uploaded.sha256))
        # A batch with one foreign lease is refused whole: the node's own result is not half-recorded.
        denied(lambda: bob.report(own_result, bob.result(others.lease_id)))

        with c.db.read() as s:
            assert s.get(Blob, sha(forged)) is None
        assert {x.state for x in leases_of(c, job_id)} == {"active"}
        assert c.balance("bob") == c.balance("carol") == 0
        # The rightful holders carry on as if nothing happened.
        assert bob.report(own_result) == ["accepted"]
        assert carol.report(carol.deliver(others.lease_id)) == ["accepted"]
        status = c.wait("alice", job_id, timeout_s=10)
        assert status.state == "completed", status
        assert c.balance("alice") == GRANT - status.charged_micro
        assert c.audit() == []
