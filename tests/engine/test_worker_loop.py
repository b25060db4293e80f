"""The worker's client and engine loop against a real in-test gRPC coordinator (tests/engine/worker_support)
and, for tasks, the real Docker engine with the local busybox image."""

from __future__ import annotations

import hashlib
import os
import queue
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import docker
import pytest

from client_gui.engine.benchmark import BenchmarkReport
from client_gui.engine.coordinator_client import (
    CHUNK_SIZE,
    CoordinatorClient,
    CoordinatorUnreachable,
    TransferCorrupted,
)
from client_gui.engine.identity import FileCredentialStore
from client_gui.engine.usage import HostUsage
from client_gui.engine.worker import (
    Error,
    NodeIdentity,
    Registered,
    SignIn,
    StateChanged,
    TaskFinished,
    Worker,
    WorkerEvent,
    WorkerLimits,
)
from shared_proto.v1 import worker_pb2
from tests.engine.worker_support import (
    NODE_CREDENTIAL,
    NODE_ID,
    PASSWORD,
    USER,
    FakeCoordinator,
    busybox_lease,
)

BUSYBOX = "hivemind/busybox:latest"
REPO = Path(__file__).resolve().parents[2]
E = TypeVar("E", TaskFinished, Registered, StateChanged)


@pytest.fixture
def fake() -> Iterator[FakeCoordinator]:
    with FakeCoordinator.serve() as running:
        yield running


@pytest.fixture
def client(fake: FakeCoordinator) -> Iterator[CoordinatorClient]:
    with CoordinatorClient(fake.target, node_credential=NODE_CREDENTIAL) as c:
        yield c


@pytest.fixture(scope="module")
def docker_ready() -> None:
    """The local Docker engine with the busybox image (scripts/services.sh, scripts/build_images.sh)."""
    try:
        engine = docker.from_env(timeout=10)
        engine.images.get(BUSYBOX)
        engine.close()
    except Exception as exc:
        message = f"Docker with {BUSYBOX} is needed: run scripts/services.sh start ({exc!r})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


class Events:
    """Collects the worker's events (delivered from its threads) for the test thread to wait on."""

    def __init__(self) -> None:
        self.all: list[WorkerEvent] = []
        self._queue: queue.Queue[WorkerEvent] = queue.Queue()

    def __call__(self, event: WorkerEvent) -> None:
        self._queue.put(event)

    def next_of(self, kind: type[E], timeout_s: float = 60.0) -> E:
        while True:
            event = self._queue.get(timeout=timeout_s)
            self.all.append(event)
            if isinstance(event, kind):
                return event

    def next_finished(self, timeout_s: float = 60.0) -> TaskFinished:
        return self.next_of(TaskFinished, timeout_s)

    def next_state(self, state: str, timeout_s: float = 60.0) -> StateChanged:
        while True:
            event = self.next_of(StateChanged, timeout_s)
            if event.state == state:
                return event


def stored_identity(tmp_path: Path, target: str, *, registered: bool = True) -> NodeIdentity:
    store = FileCredentialStore(tmp_path / "secrets.json")
    identity = NodeIdentity(store, target, config_path=tmp_path / "worker.json")
    if registered:
        identity.save(NODE_ID, NODE_CREDENTIAL)
    return identity


def make_worker(
    fake: FakeCoordinator,
    tmp_path: Path,
    events: Events,
    *,
    limits: WorkerLimits | None = None,
    poll_wait_s: float = 2.0,
) -> Worker:
    client = CoordinatorClient(fake.target)
    return Worker(
        client,
        stored_identity(tmp_path, fake.target),
        work_dir=tmp_path / "work",
        limits=limits or WorkerLimits(use_gpu=False),
        on_event=events,
        gpu_count=lambda: 0,
        poll_wait_s=poll_wait_s,
    )


def containers_running(marker: str) -> list[str]:
    """Containers (any state) whose command mentions ``marker``: other tests share the engine."""
    engine = docker.from_env(timeout=10)
    try:
        return [
            str(c.name)
            for c in engine.containers.list(all=True, filters={"label": "hivemind.task"})
            if marker in " ".join(c.attrs.get("Args") or [])
        ]
    finally:
        engine.close()


# --- the client ------------------------------------------------------------------------------------


def test_download_refuses_a_corrupted_blob_and_keeps_nothing(
    fake: FakeCoordinator, client: CoordinatorClient, tmp_path: Path
) -> None:
    data = os.urandom(300 * 1024)
    sha = fake.add_blob(data, corrupt=True)
    dest = tmp_path / "inputs" / "blob"

    with pytest.raises(TransferCorrupted, match="arrived corrupted"):
        client.download_input("lease-1", sha, dest)

    assert list((tmp_path / "inputs").iterdir()) == []


def test_download_keeps_a_blob_whose_sha256_matches(
    fake: FakeCoordinator, client: CoordinatorClient, tmp_path: Path
) -> None:
    data = os.urandom(250 * 1024)
    sha = fake.add_blob(data)
    dest = tmp_path / "blob"

    assert client.download_input("lease-1", sha, dest) == len(data)
    assert dest.read_bytes() == data


def test_upload_names_lease_and_path_in_the_first_chunk_only(
    fake: FakeCoordinator, client: CoordinatorClient, tmp_path: Path
) -> None:
    data = os.urandom(2 * CHUNK_SIZE + 1000)
    source = tmp_path / "result.bin"
    source.write_bytes(data)

    uploaded = client.upload_output("lease-7", "out/result.bin", source)

    upload = fake.snapshot(lambda seen: seen.uploads[("lease-7", "out/result.bin")])
    assert upload.data == data
    assert uploaded.sha256 == hashlib.sha256(data).hexdigest() and uploaded.size == len(data)
    assert upload.total_size == len(data)
    assert [len(c.data) for c in upload.chunks] == [CHUNK_SIZE, CHUNK_SIZE, 1000]
    assert [(c.lease_id, c.path) for c in upload.chunks[1:]] == [("", ""), ("", "")]


def test_upload_of_empty_stdout_still_names_its_lease(
    fake: FakeCoordinator, client: CoordinatorClient
) -> None:
    uploaded = client.upload_output("lease-8", "@stdout", b"")

    upload = fake.snapshot(lambda seen: seen.uploads[("lease-8", "@stdout")])
    assert upload.data == b"" and len(upload.chunks) == 1
    assert upload.expected_sha256 == uploaded.sha256 == hashlib.sha256(b"").hexdigest()


def test_unreachable_coordinator_says_where_and_when_it_retries() -> None:
    with (
        CoordinatorClient("127.0.0.1:1", node_credential=NODE_CREDENTIAL) as c,
        pytest.raises(CoordinatorUnreachable) as caught,
    ):
        c.heartbeat([], _usage(), "idle")
    assert caught.value.retry_message(8) == (
        "The coordinator at 127.0.0.1:1 cannot be reached. Check the address and your network; "
        "retrying in 8 s."
    )


def _usage() -> HostUsage:
    return HostUsage(cpu_percent=1.0, memory_percent=2.0)


# --- the loop --------------------------------------------------------------------------------------


def test_a_task_runs_in_docker_and_its_logs_outputs_and_result_reach_the_coordinator(
    docker_ready: None, fake: FakeCoordinator, tmp_path: Path
) -> None:
    events = Events()
    worker = make_worker(fake, tmp_path, events)
    sha = fake.add_blob(b"hello volunteers\n")
    fake.queue_lease(
        busybox_lease(
            "lease-ok",
            "tr a-z A-Z < data/in.txt > out.txt; echo done",
            inputs=[worker_pb2.LeaseInput(path="data/in.txt", sha256=sha, size=17)],
            output_paths=["out.txt"],
        )
    )
    worker.start()
    try:
        finished = events.next_finished()
    finally:
        assert worker.stop(timeout=60)

    assert (finished.status, finished.outcome) == ("succeeded", "accepted")
    uploads = fake.snapshot(lambda seen: dict(seen.uploads))
    assert uploads[("lease-ok", "out.txt")].data == b"HELLO VOLUNTEERS\n"
    assert uploads[("lease-ok", "@stdout")].data == b"done\n"
    [result] = fake.snapshot(lambda seen: list(seen.results))
    assert result.status == "succeeded" and result.exit_code == 0
    assert result.stdout_sha256 == hashlib.sha256(b"done\n").hexdigest()
    assert [(o.path, o.sha256) for o in result.outputs] == [
        ("out.txt", hashlib.sha256(b"HELLO VOLUNTEERS\n").hexdigest())
    ]
    logs = fake.snapshot(lambda seen: [(x.lease_id, x.stream, x.text) for x in seen.logs])
    assert ("lease-ok", "stdout", "done") in [(a, b, c.rstrip("\n")) for a, b, c in logs]
    assert not (tmp_path / "work" / "leases" / "lease-ok").exists()


def _two_tasks_one_after_the_other(
    fake: FakeCoordinator,
    tmp_path: Path,
    first: str,
    second: str,
    events: Events | None = None,
) -> list[TaskFinished]:
    """Run lease ``first``, then, once it has finished, lease ``second``; their finished events."""
    events = events or Events()
    worker = make_worker(fake, tmp_path, events, poll_wait_s=5.0)
    fake.queue_lease(busybox_lease(first, f"echo {first}"))
    worker.start()
    try:
        finished = [events.next_finished()]
        fake.queue_lease(busybox_lease(second, f"echo {second}"))
        finished.append(events.next_finished())
    finally:
        assert worker.stop(timeout=60)
    return finished


def test_a_finished_tasks_result_goes_with_the_next_poll(
    docker_ready: None, fake: FakeCoordinator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slot that frees asks for work at once, and the result that freed it goes in that same call
    (one RPC, not a ReportResults and a poll); that poll does not wait, so the answer comes back now."""
    # The reporter leaves a result this long to the poll loop; longer here, for a slow test machine.
    monkeypatch.setattr("client_gui.engine.worker.RESULT_BATCH_WINDOW_S", 2.0)
    finished = _two_tasks_one_after_the_other(fake, tmp_path, "lease-1", "lease-2")
    assert [(f.lease_id, f.outcome) for f in finished] == [
        ("lease-1", "accepted"),
        ("lease-2", "accepted"),
    ]
    polls = fake.snapshot(
        lambda seen: [(p.wait_s, [r.lease_id for r in p.results]) for p in seen.polls]
    )
    assert (0.0, ["lease-1"]) in polls
    assert all(wait == 0.0 for wait, carried in polls if carried)
    assert fake.snapshot(lambda seen: seen.report_calls) <= 1  # lease-2's, at the latest on stop
    assert [r.lease_id for r in fake.snapshot(lambda seen: list(seen.results))] == [
        "lease-1",
        "lease-2",
    ]


def test_a_tasks_last_log_lines_reach_the_coordinator_before_its_result(
    docker_ready: None, fake: FakeCoordinator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The desktop app reloads a job's log when the job moves on: lines that came after the result
    would be missing from it. The shipper sends what it holds before the result goes, even when its own
    timer (here far longer than the task) has not come round."""
    monkeypatch.setattr("client_gui.engine.worker.LOG_FLUSH_S", 30.0)
    monkeypatch.setattr("client_gui.engine.worker.RESULT_BATCH_WINDOW_S", 0.0)
    finished = _two_tasks_one_after_the_other(fake, tmp_path, "lease-l1", "lease-l2")
    assert [(f.lease_id, f.outcome) for f in finished] == [
        ("lease-l1", "accepted"),
        ("lease-l2", "accepted"),
    ]
    arrivals = fake.snapshot(lambda seen: list(seen.arrivals))
    for lease_id in ("lease-l1", "lease-l2"):
        mine = [(kind, text) for kind, lease, text in arrivals if lease == lease_id]
        assert mine == [("log", lease_id), ("result", "")], arrivals


def test_a_result_a_poll_could_not_deliver_is_reported_on_its_own(
    docker_ready: None, fake: FakeCoordinator, tmp_path: Path
) -> None:
    """When the poll carrying a result is refused, the poll is not retried with it: the result goes to
    ReportResults, and the worker keeps polling without an error."""
    fake.refused_in_polls.add("lease-x")
    events = Events()
    finished = _two_tasks_one_after_the_other(fake, tmp_path, "lease-x", "lease-y", events)
    assert [(f.lease_id, f.outcome) for f in finished] == [
        ("lease-x", "accepted"),
        ("lease-y", "accepted"),
    ]
    assert fake.snapshot(lambda seen: seen.report_calls) >= 1
    assert [r.lease_id for r in fake.snapshot(lambda seen: list(seen.results))].count(
        "lease-x"
    ) == 1
    assert not [e for e in events.all if isinstance(e, Error)]


def test_results_go_apart_when_the_coordinator_ignores_them_in_polls(
    docker_ready: None, fake: FakeCoordinator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A coordinator from before results in polls drops them and answers none: the worker reports them
    with ReportResults instead, then stops sending them with polls. Nothing is lost or counted twice."""
    monkeypatch.setattr("client_gui.engine.worker.RESULT_BATCH_WINDOW_S", 2.0)
    fake.polls_ignore_results = True
    finished = _two_tasks_one_after_the_other(fake, tmp_path, "lease-a", "lease-b")
    assert [(f.lease_id, f.outcome) for f in finished] == [
        ("lease-a", "accepted"),
        ("lease-b", "accepted"),
    ]
    assert [r.lease_id for r in fake.snapshot(lambda seen: list(seen.results))] == [
        "lease-a",
        "lease-b",
    ]
    carried = fake.snapshot(lambda seen: [r.lease_id for p in seen.polls for r in p.results])
    assert carried == ["lease-a"]  # after the first ignored poll, none are sent with polls


def test_a_corrupted_input_is_reported_as_an_error_and_never_run(
    docker_ready: None, fake: FakeCoordinator, tmp_path: Path
) -> None:
    events = Events()
    worker = make_worker(fake, tmp_path, events)
    sha = fake.add_blob(b"payload", corrupt=True)
    fake.queue_lease(
        busybox_lease(
            "lease-bad",
            "echo ran",
            inputs=[worker_pb2.LeaseInput(path="in.txt", sha256=sha, size=7)],
        )
    )
    worker.start()
    try:
        finished = events.next_finished()
    finally:
        worker.stop(timeout=60)

    assert finished.status == "error"
    [result] = fake.snapshot(lambda seen: list(seen.results))
    assert result.status == "error" and "corrupted" in result.reason
    assert fake.snapshot(lambda seen: [k for k in seen.uploads if k[0] == "lease-bad"]) == []


def test_a_missing_image_is_reported_as_an_error_not_run_on_the_host(
    docker_ready: None, fake: FakeCoordinator, tmp_path: Path
) -> None:
    events = Events()
    worker = make_worker(fake, tmp_path, events)
    lease = busybox_lease("lease-noimage", "echo ran")
    lease.image = "hivemind/no-such-image:latest"
    fake.queue_lease(lease)
    worker.start()
    try:
        finished = events.next_finished(timeout_s=120)
    finally:
        worker.stop(timeout=60)

    [result] = fake.snapshot(lambda seen: list(seen.results))
    assert finished.status == result.status == "error"
    assert "hivemind/no-such-image:latest" in result.reason


def test_a_lease_cancelled_in_a_heartbeat_kills_its_container(
    docker_ready: None, fake: FakeCoordinator, tmp_path: Path
) -> None:
    events = Events()
    worker = make_worker(fake, tmp_path, events)
    marker = f"started-{uuid.uuid4().hex}"
    fake.queue_lease(busybox_lease("lease-long", f"echo {marker}; sleep 300", timeout_s=600))
    worker.start()
    try:
        fake.wait_for(
            "the task's first log line",
            lambda seen: any(x.text.startswith(marker) for x in seen.logs),
        )
        fake.cancel_lease("lease-long")
        finished = events.next_finished(timeout_s=60)
        assert (finished.status, finished.outcome) == ("cancelled", "not_reported")
        assert containers_running(marker) == []
        # The coordinator cancelled it, so there is nothing to report back.
        assert fake.snapshot(lambda seen: list(seen.results)) == []
        assert worker.active_leases() == []
    finally:
        worker.stop(timeout=60)


def test_pause_stops_polling_and_resume_starts_it_again(
    fake: FakeCoordinator, tmp_path: Path
) -> None:
    events = Events()
    worker = make_worker(fake, tmp_path, events, poll_wait_s=0.5)
    worker.start()
    try:
        fake.wait_for("a few polls", lambda seen: len(seen.polls) >= 2)
        worker.pause()
        fake.wait_for(
            "a paused heartbeat", lambda seen: any(h.status == "paused" for h in seen.heartbeats)
        )
        polls_when_paused = fake.snapshot(lambda seen: len(seen.polls))
        # Three more heartbeats (1 s apart) is time for several polls, had the worker polled.
        heartbeats = fake.snapshot(lambda seen: len(seen.heartbeats))
        fake.wait_for("three heartbeats", lambda seen: len(seen.heartbeats) >= heartbeats + 3)
        assert fake.snapshot(lambda seen: len(seen.polls)) == polls_when_paused
        assert worker.state == "paused"

        worker.resume()
        fake.wait_for("polling again", lambda seen: len(seen.polls) > polls_when_paused)
    finally:
        worker.stop(timeout=30)
    assert events.next_state("stopped").message == "Stopped."


def test_a_changed_max_cores_applies_to_the_next_task(
    docker_ready: None, fake: FakeCoordinator, tmp_path: Path
) -> None:
    # The container reads its own CPU quota from the cgroup (v2: cpu.max, v1: cfs_quota_us).
    script = (
        "if [ -f /sys/fs/cgroup/cpu.max ]; then cut -d' ' -f1 /sys/fs/cgroup/cpu.max; "
        "else cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us; fi"
    )
    events = Events()
    worker = make_worker(fake, tmp_path, events, limits=WorkerLimits(max_cores=1, use_gpu=False))
    worker.start()
    try:
        fake.queue_lease(busybox_lease("lease-a", script, cpu_cores=2))
        first = events.next_finished()
        worker.update_limits(max_cores=0.5)
        fake.queue_lease(busybox_lease("lease-b", script, cpu_cores=2))
        second = events.next_finished()
    finally:
        worker.stop(timeout=60)

    assert first.status == second.status == "succeeded"
    stdout = fake.snapshot(lambda seen: {k[0]: u.data for k, u in seen.uploads.items()})
    assert stdout["lease-a"].strip() == b"100000"  # 1 core per 100 ms period
    assert stdout["lease-b"].strip() == b"50000"  # half a core
    polls = fake.snapshot(lambda seen: [p.free_cpu_cores for p in seen.polls])
    assert polls[0] == 1.0 and polls[-1] <= 0.5


def test_an_unregistered_worker_signs_in_registers_and_stores_its_credential(
    fake: FakeCoordinator, tmp_path: Path
) -> None:
    identity = stored_identity(tmp_path, fake.target, registered=False)
    client = CoordinatorClient(fake.target)
    events = Events()
    report = BenchmarkReport(
        hostname="test-host",
        cpu_cores=2,
        memory_gb=4.0,
        cpu_score=180.0,
        cpu_score_single=95.0,
        gpu_score=0.0,
        gpu_memory_gb=0.0,
        gpu_name="",
        docker_status=True,
        docker_message="Docker is running.",
        available_memory_gb=3.0,
    )
    worker = Worker(
        client,
        identity,
        work_dir=tmp_path / "work",
        limits=WorkerLimits(use_gpu=False),
        on_event=events,
        sign_in=SignIn(client, identity.store, username=USER, password=PASSWORD),
        benchmark=lambda: report,
        gpu_count=lambda: 0,
        poll_wait_s=0.5,
    )
    worker.start()
    try:
        registered = events.next_of(Registered)
        fake.wait_for("a poll with the new credential", lambda seen: len(seen.polls) >= 1)
    finally:
        worker.stop(timeout=30)

    assert registered.node_id == NODE_ID
    assert identity.load() == (NODE_ID, NODE_CREDENTIAL)
    [request] = fake.snapshot(lambda seen: list(seen.registrations))
    assert (request.hostname, request.cpu_cores, request.cpu_score) == ("test-host", 2, 180.0)


def test_hivemind_worker_command_registers_and_exits_0_on_sigterm(
    fake: FakeCoordinator, tmp_path: Path
) -> None:
    program = (
        "import argparse, sys\n"
        "from client_gui.engine.cli import add_worker_parser\n"
        "parser = argparse.ArgumentParser(prog='hivemind')\n"
        "add_worker_parser(parser.add_subparsers())\n"
        "args = parser.parse_args(sys.argv[1:])\n"
        "sys.exit(args.func(args))\n"
    )
    env = {
        **os.environ,
        # Never touch the developer's real keyring: the file store must be the one used.
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
        "HIVEMIND_PASSWORD": PASSWORD,
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            program,
            "worker",
            "--coordinator",
            fake.target,
            "--username",
            USER,
            "--credential-file",
            str(tmp_path / "secrets.json"),
            "--config",
            str(tmp_path / "worker.json"),
            "--work-dir",
            str(tmp_path / "work"),
            "--no-gpu",
        ],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        fake.wait_for("the worker's first poll", lambda seen: len(seen.polls) >= 1, timeout_s=120)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()

    assert proc.returncode == 0, stderr
    assert f"Registered as node {NODE_ID}" in stdout
    assert "[stopped] Stopped." in stdout
    assert (tmp_path / "secrets.json").stat().st_mode & 0o077 == 0
    assert NODE_CREDENTIAL in (tmp_path / "secrets.json").read_text()


def test_stop_while_a_task_runs_cancels_it_and_reports_it_cancelled(
    docker_ready: None, fake: FakeCoordinator, tmp_path: Path
) -> None:
    events = Events()
    worker = make_worker(fake, tmp_path, events)
    marker = f"started-{uuid.uuid4().hex}"
    fake.queue_lease(busybox_lease("lease-stop", f"echo {marker}; sleep 300", timeout_s=600))
    worker.start()
    fake.wait_for(
        "the task to start", lambda seen: any(x.text.startswith(marker) for x in seen.logs)
    )
    stopper = threading.Thread(target=worker.stop, kwargs={"timeout": 60})
    stopper.start()
    finished = events.next_finished()
    stopper.join(60)

    assert finished.status == "cancelled"
    [result] = fake.snapshot(lambda seen: list(seen.results))
    assert result.status == "cancelled" and "stopped" in result.reason
    assert containers_running(marker) == []


def test_the_worker_goes_offline_when_the_coordinator_does_and_comes_back_by_itself(
    tmp_path: Path,
) -> None:
    events = Events()
    with FakeCoordinator.serve() as first:
        port = first.port
        worker = make_worker(first, tmp_path, events, poll_wait_s=0.5)
        worker.start()
        first.wait_for("a poll", lambda seen: len(seen.polls) >= 1)
    try:
        offline = events.next_state("offline")
        assert offline.message.startswith(f"The coordinator at 127.0.0.1:{port} cannot be reached.")
        assert "retrying in" in offline.message
        with FakeCoordinator.serve(port=port) as second:
            second.wait_for(
                "a poll to the restarted coordinator", lambda seen: len(seen.polls) >= 1
            )
            assert events.next_state("idle").message == "Waiting for work."
    finally:
        worker.stop(timeout=30)
