"""The hardened Docker executor against a real engine: normal jobs work, hostile jobs are contained.

Every hostile job is followed by a normal job on the same executor, and the ``executor`` fixture
checks that no container and no work dir is left behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import docker
import pytest

from client_gui.engine import executor as executor_module
from client_gui.engine.docker_status import describe_docker_error
from client_gui.engine.executor import DockerExecutor, ExecSpec, InputFile
from tests.engine.conftest import BUSYBOX, TASK_LABEL, task_containers

MIB = 1024 * 1024


def shell(script: str, **overrides: object) -> ExecSpec:
    """A busybox job running ``script`` with small, test-sized limits."""
    spec = ExecSpec(
        image=BUSYBOX,
        command=["sh", "-c", script],
        env={},
        inputs=[],
        output_paths=[],
        cpu_cores=1.0,
        memory_bytes=64 * MIB,
        timeout_s=20.0,
        max_output_bytes=16 * MIB,
        pids_limit=64,
    )
    return replace(spec, **overrides)  # type: ignore[arg-type]


def assert_still_healthy(executor: DockerExecutor) -> None:
    """The same executor still runs an ordinary job after a hostile one."""
    result = executor.run(shell("echo healthy > ok.txt", output_paths=["ok.txt"]))
    assert result.status == "succeeded", result.reason
    assert result.outputs[0].local_path.read_bytes() == b"healthy\n"


def busy_loop(iterations: int) -> str:
    return f"i=0; while [ $i -lt {iterations} ]; do i=$((i+1)); done"


# -- ordinary jobs ---------------------------------------------------------------------------------


def test_job_writes_an_output_file_and_reports_measured_usage(executor: DockerExecutor) -> None:
    result = executor.run(
        shell(
            f"mkdir out && printf 'forty-two' > out/answer.txt && {busy_loop(100_000)}",
            output_paths=["out"],
        )
    )

    assert result.status == "succeeded", result.reason
    assert result.exit_code == 0
    [output] = result.outputs
    assert output.path == "out/answer.txt"
    assert output.local_path.read_bytes() == b"forty-two"
    assert output.sha256 == hashlib.sha256(b"forty-two").hexdigest()
    assert output.size == 9
    assert result.results_dir is not None and output.local_path.is_relative_to(result.results_dir)
    assert result.usage.cpu_seconds > 0
    assert result.usage.peak_memory_bytes > 0
    assert result.usage.wall_seconds > 0


def test_env_vars_args_and_inputs_arrive(executor: DockerExecutor, tmp_path: Path) -> None:
    source = tmp_path / "download.bin"
    source.write_bytes(b"input payload\n")
    spec = ExecSpec(
        image=BUSYBOX,
        command=[
            "sh",
            "-c",
            'echo "$GREETING $1 $2"; cat data/in/payload.txt; pwd',
            "job",
            "a b",
            "c",
        ],
        env={"GREETING": "hello world"},
        inputs=[InputFile(path="data/in/payload.txt", source=source)],
        output_paths=[],
        cpu_cores=0.5,
        memory_bytes=32 * MIB,
        timeout_s=20,
        max_output_bytes=MIB,
    )

    result = executor.run(spec)

    assert result.status == "succeeded", result.stderr
    assert result.stdout == b"hello world a b c\ninput payload\n/work\n"
    assert source.read_bytes() == b"input payload\n"


def test_a_job_cannot_alter_the_downloaded_input(executor: DockerExecutor, tmp_path: Path) -> None:
    source = tmp_path / "download.bin"
    source.write_bytes(b"verified")

    result = executor.run(
        shell("echo tampered > in.bin; echo more >> in.bin", inputs=[InputFile("in.bin", source)])
    )

    assert result.status == "succeeded", result.stderr
    assert source.read_bytes() == b"verified"


def test_logs_stream_while_the_task_runs(executor: DockerExecutor) -> None:
    seen: list[tuple[str, str]] = []
    cancel = threading.Event()

    def on_log(stream: str, line: str) -> None:
        seen.append((stream, line))
        if line == "first":
            cancel.set()

    # The job sleeps after its first line: only a line delivered while it runs can cancel it.
    result = executor.run(
        shell("echo first; echo oops >&2; sleep 30", timeout_s=20), on_log=on_log, cancel=cancel
    )

    assert result.status == "cancelled"
    assert ("stdout", "first") in seen
    assert result.stdout == b"first\n"


def test_captured_logs_are_capped(executor: DockerExecutor) -> None:
    lines: list[str] = []

    result = executor.run(
        shell("yes 0123456789 | head -c 300000; printf 'no newline' >&2", max_log_bytes=1000),
        on_log=lambda _stream, line: lines.append(line),
    )

    assert result.status == "succeeded", result.reason
    assert result.stdout == (b"0123456789\n" * 100)[:1000]
    assert result.stderr == b"no newline"
    assert lines[-1] == "no newline"  # a last line without a newline still arrives
    assert sum(len(line) + 1 for line in lines if line.startswith("0123")) <= 1001
    assert any("not shown" in line for line in lines)


def test_failing_job_reports_its_exit_code(executor: DockerExecutor) -> None:
    result = executor.run(shell("echo partial > part.txt; exit 3", output_paths=["part.txt"]))

    assert result.status == "failed"
    assert result.exit_code == 3
    assert "code 3" in result.reason
    assert [o.path for o in result.outputs] == ["part.txt"]


def test_a_missing_command_is_the_tasks_own_failure(executor: DockerExecutor) -> None:
    result = executor.run(shell("unused", command=["no-such-program", "--flag"]))

    assert result.status == "failed"
    assert result.exit_code == 127
    assert result.reason == "The task's command 'no-such-program' does not exist in its image."


def test_a_vanished_input_refuses_the_task(executor: DockerExecutor, tmp_path: Path) -> None:
    result = executor.run(shell("true", inputs=[InputFile("in.bin", tmp_path / "gone.bin")]))

    assert result.status == "error"
    assert "'in.bin' is no longer on this computer" in result.reason


def test_outputs_never_follow_symlinks_out_of_the_work_dir(executor: DockerExecutor) -> None:
    script = (
        "mkdir -p out/sub && echo real > out/sub/real.txt && "
        "ln -s /etc/passwd out/passwd && ln -s /etc out/etc && ln -s /etc escape && "
        "ln -s /etc/hostname single && mkfifo out/fifo"
    )
    result = executor.run(
        shell(script, output_paths=["out", "escape/passwd", "single", "missing.txt", "out/sub"])
    )

    assert result.status == "succeeded", result.stderr
    assert [o.path for o in result.outputs] == ["out/sub/real.txt"]
    assert result.outputs[0].local_path.read_bytes() == b"real\n"


@pytest.mark.parametrize(
    "bad_path", ["/etc/passwd", "../outside", "a/../../outside", "", ".", "C:evil", "..\\evil"]
)
def test_invalid_paths_are_refused_before_anything_starts(
    executor: DockerExecutor,
    docker_client: docker.DockerClient,
    work_root: Path,
    tmp_path: Path,
    bad_path: str,
) -> None:
    source = tmp_path / "in.txt"
    source.write_text("x")

    as_input = executor.run(shell("true", inputs=[InputFile(bad_path, source)]))
    as_output = executor.run(shell("true", output_paths=["ok.txt", bad_path]))

    for result in (as_input, as_output):
        assert result.status == "error"
        assert "refused" in result.reason
    assert task_containers(docker_client, work_root) == []
    assert not (work_root / "tasks").exists()


# -- hostile jobs ----------------------------------------------------------------------------------


def test_network_is_disabled(executor: DockerExecutor, docker_client: docker.DockerClient) -> None:
    bridge = docker_client.networks.get("bridge").attrs["IPAM"]["Config"][0]
    gateway = bridge.get("Gateway") or "172.17.0.1"
    script = (
        "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; "
        f"if wget -q -T 2 -O /dev/null http://{gateway}:2375/ 2>/dev/null; "
        "then echo CONNECTED; else echo BLOCKED; fi; "
        f"if nc -w 2 {gateway} 22 </dev/null 2>/dev/null; then echo CONNECTED; else echo BLOCKED; fi"
    )

    result = executor.run(shell(script))

    assert result.status == "succeeded", result.stderr
    assert result.stdout.decode().split() == ["lo", "BLOCKED", "BLOCKED"]
    assert_still_healthy(executor)


def test_network_only_when_the_task_asks_and_the_volunteer_allows(
    executor: DockerExecutor, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    interfaces = "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort"

    refused = executor.run(shell(interfaces, network=True))
    allowing = DockerExecutor(tmp_path / "allowing", client=docker_client, allow_network=True)
    not_asked = allowing.run(shell(interfaces))
    asked = allowing.run(shell(interfaces, network=True))

    assert refused.status == "error" and "network" in refused.reason
    assert not_asked.stdout.split() == [b"lo"]
    assert b"eth0" in asked.stdout.split()
    assert task_containers(docker_client, tmp_path / "allowing") == []


def test_fork_bomb_is_contained_by_the_process_limit(executor: DockerExecutor) -> None:
    result = executor.run(
        # The bomb runs in a child shell; the outer loop needs no fork, so it outlives the bomb.
        shell(
            "sh -c 'bomb() { bomb | bomb & }; bomb'; while :; do :; done",
            pids_limit=32,
            timeout_s=3,
        )
    )

    assert result.status == "timeout"
    assert b"fork" in result.stderr.lower() or b"resource temporarily" in result.stderr.lower()
    assert_still_healthy(executor)


def test_memory_bomb_is_stopped_as_out_of_memory(executor: DockerExecutor) -> None:
    # dd allocates and fills a buffer of bs bytes: 256 MB against a 32 MB limit.
    result = executor.run(
        shell("dd if=/dev/zero of=/dev/null bs=256M count=1", memory_bytes=32 * MIB)
    )

    assert result.status == "oom", (result.reason, result.stderr)
    assert result.reason == "The task used more than its 32 MB memory limit and was stopped."
    assert result.outputs == []
    assert_still_healthy(executor)


def test_endless_loop_is_stopped_at_the_time_limit(executor: DockerExecutor) -> None:
    result = executor.run(shell("while :; do :; done", timeout_s=2))

    assert result.status == "timeout"
    assert result.exit_code is None
    assert "2 second time limit" in result.reason
    # Bounds, not a benchmark: stopped at (not before) the limit, and well before forever.
    assert 2 <= result.usage.wall_seconds < 20
    assert result.usage.cpu_seconds > 0
    assert_still_healthy(executor)


def test_writes_outside_the_work_dir_fail(executor: DockerExecutor) -> None:
    script = (
        "for target in /evil /etc/evil /bin/evil /root/evil; do "
        "  if echo x > $target 2>/dev/null; then echo WROTE $target; fi; "
        "done; echo ok > /tmp/scratch && echo ok > /work/mine && echo done"
    )

    result = executor.run(shell(script))

    assert result.status == "succeeded", result.stderr
    assert result.stdout == b"done\n"
    assert_still_healthy(executor)


def test_a_huge_file_is_capped_and_the_work_dir_removed(
    executor: DockerExecutor, work_root: Path
) -> None:
    result = executor.run(
        shell(
            "dd if=/dev/zero of=big bs=1M count=10240",
            output_paths=["big"],
            max_output_bytes=4 * MIB,
        )
    )

    assert result.status == "output_too_large", (result.reason, result.stderr)
    assert result.reason == "The task wrote more than its 4 MB output limit and was stopped."
    assert result.outputs == [] and result.results_dir is None
    assert list((work_root / "tasks").iterdir()) == []
    assert_still_healthy(executor)


def test_many_files_past_the_cap_are_stopped_by_the_watchdog(
    executor: DockerExecutor, work_root: Path
) -> None:
    # Each file stays under the per-file limit, so only the work-dir watchdog can catch this.
    script = "i=0; while :; do dd if=/dev/zero of=f$i bs=1M count=1 2>/dev/null; i=$((i+1)); done"

    result = executor.run(shell(script, max_output_bytes=8 * MIB, timeout_s=20))

    assert result.status == "output_too_large", result.reason
    assert result.exit_code is None  # stopped by the executor, not by the kernel
    assert list((work_root / "tasks").iterdir()) == []
    assert_still_healthy(executor)


def test_runs_as_non_root_without_capabilities(executor: DockerExecutor) -> None:
    result = executor.run(
        shell("id -u; grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs):' /proc/self/status")
    )

    assert result.status == "succeeded", result.stderr
    uid, *fields = result.stdout.decode().splitlines()
    assert int(uid) != 0
    status = dict(line.split(":\t") for line in fields)
    assert status == {
        "CapPrm": "0000000000000000",
        "CapEff": "0000000000000000",
        "CapBnd": "0000000000000000",
        "NoNewPrivs": "1",
    }
    assert_still_healthy(executor)


def test_the_live_container_carries_every_limit(
    executor: DockerExecutor, docker_client: docker.DockerClient, work_root: Path
) -> None:
    seen: list[dict[str, object]] = []
    cancel = threading.Event()

    def inspect_live_container(_stream: str, line: str) -> None:
        if line == "ready":
            # all=True: the engine may mark it running only just after its first output.
            [container_id] = task_containers(docker_client, work_root)
            seen.append(docker_client.api.inspect_container(container_id)["HostConfig"])
            cancel.set()

    spec = shell(
        "echo ready; sleep 30",
        cpu_cores=0.5,
        memory_bytes=48 * MIB,
        pids_limit=40,
        max_output_bytes=5 * MIB,
        max_log_bytes=200_000,
    )
    result = executor.run(spec, on_log=inspect_live_container, cancel=cancel)

    assert result.status == "cancelled"
    [host] = seen
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["PidsLimit"] == 40
    assert host["Memory"] == host["MemorySwap"] == 48 * MIB
    assert host["NanoCpus"] == 500_000_000
    assert host["Ulimits"] == [{"Name": "fsize", "Soft": 5 * MIB + 1, "Hard": 5 * MIB + 1}]
    assert host["LogConfig"] == {
        "Type": "json-file",
        "Config": {"max-size": "200000", "max-file": "1"},
    }
    assert "size=67108864" in host["Tmpfs"]["/tmp"]  # type: ignore[index]


def test_cancel_stops_the_task_promptly(executor: DockerExecutor) -> None:
    cancel = threading.Event()

    def on_log(_stream: str, line: str) -> None:
        if line == "started":
            cancel.set()

    result = executor.run(
        shell("echo started; sleep 60", timeout_s=30), on_log=on_log, cancel=cancel
    )

    assert result.status == "cancelled"
    assert result.reason == "The task was cancelled and its container was stopped."
    assert result.usage.wall_seconds < 20
    assert_still_healthy(executor)


# The hostile jobs of the end-to-end run, side by side as two workers with two slots each run
# them: (script, limits, what the run must end with).
SIDE_BY_SIDE: dict[str, tuple[str, dict[str, object], str]] = {
    "network": (
        "wget -q -T 2 -O - http://172.17.0.1/ || nc -w 2 172.17.0.1 80 </dev/null",
        {},
        "failed",
    ),
    # The outer loop needs no fork, so the task is still running when its time is up.
    "fork bomb": ("sh -c 'bomb() { bomb | bomb & }; bomb'; while :; do :; done", {}, "timeout"),
    "memory bomb": ("dd if=/dev/zero of=/dev/null bs=256M count=1", {}, "oom"),
    "endless loop": ("while :; do :; done", {}, "timeout"),
    "write outside": ("echo pwned > /etc/pwned && echo wrote", {}, "failed"),
    "huge output": (
        "dd if=/dev/zero of=big bs=1M count=10240",
        {"output_paths": ["big"]},
        "output_too_large",
    ),
}


def test_hostile_jobs_side_by_side_all_end_and_the_executor_goes_on(
    executor: DockerExecutor,
) -> None:
    def run(name: str) -> str:
        script, limits, _expected = SIDE_BY_SIDE[name]
        spec = shell(script, cpu_cores=0.5, pids_limit=256, timeout_s=3, **limits)
        return executor.run(spec).status

    with ThreadPoolExecutor(4) as pool:
        statuses = dict(zip(SIDE_BY_SIDE, pool.map(run, SIDE_BY_SIDE), strict=True))

    assert statuses == {name: expected for name, (_, _, expected) in SIDE_BY_SIDE.items()}
    assert_still_healthy(executor)


# -- the engine's own failures ---------------------------------------------------------------------


def test_a_missing_image_is_an_error_never_a_host_run(executor: DockerExecutor) -> None:
    result = executor.run(shell("touch /tmp/never", image="hivemind/does-not-exist:never"))

    assert result.status == "error"
    assert result.reason.startswith(
        "The image 'hivemind/does-not-exist:never' is not on this computer and could not be "
        "downloaded: "
    )
    assert_still_healthy(executor)


def test_an_impossible_request_is_an_error_and_leaves_nothing_behind(
    executor: DockerExecutor,
) -> None:
    result = executor.run(shell("true", cpu_cores=4096))

    assert result.status == "error"
    assert result.reason.startswith("Docker could not run the task: ")
    assert_still_healthy(executor)


@contextlib.contextmanager
def engine_stalls_on(client: docker.DockerClient, call: str) -> Iterator[None]:
    """The engine takes ``call`` but never answers it (as when it is wedged on one container).

    The executor's patience is cut to seconds so the test stays short. A stalled call ends,
    unanswered, when the block exits; it never reaches the engine.
    """
    released = threading.Event()

    def never_answers(*_args: object, **_kwargs: object) -> None:
        released.wait()
        raise docker.errors.APIError(f"{call} was never answered")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(executor_module, "_ENGINE_ANSWER_S", 3.0)
        patch.setattr(executor_module, "_GRACE_S", 5.0)
        patch.setattr(client.api, call, never_answers)
        try:
            yield
        finally:
            released.set()


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("call", "script", "expected", "reason"),
    [
        # The reported hang: the task overran, the engine never confirmed the kill.
        ("kill", "while :; do :; done", "timeout", "2 second time limit"),
        ("inspect_container", "exit 3", "error", "asked to report how the task ended"),
        ("create_container", "true", "error", "asked to create the task's container"),
    ],
)
def test_an_engine_that_stops_answering_cannot_hold_a_run(
    executor: DockerExecutor,
    docker_client: docker.DockerClient,
    call: str,
    script: str,
    expected: str,
    reason: str,
) -> None:
    with engine_stalls_on(docker_client, call):
        result = executor.run(shell(script, timeout_s=2))

    assert result.status == expected
    assert reason in result.reason
    assert_still_healthy(executor)


@pytest.mark.timeout(120)
def test_a_container_the_engine_will_not_remove_is_left_for_start_up(
    executor: DockerExecutor,
    docker_client: docker.DockerClient,
    work_root: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with (
        caplog.at_level(logging.ERROR, logger=executor_module.__name__),
        engine_stalls_on(docker_client, "remove_container"),
    ):
        result = executor.run(shell("while :; do :; done", timeout_s=2))

    assert result.status == "timeout"
    assert "remove_leftovers" in caplog.text
    assert len(task_containers(docker_client, work_root)) == 1
    assert executor.remove_leftovers() == 1
    assert_still_healthy(executor)


def test_docker_not_running_is_a_sentence(tmp_path: Path) -> None:
    client = docker.DockerClient(base_url=f"unix://{tmp_path / 'no-docker.sock'}", version="1.41")
    executor = DockerExecutor(tmp_path / "worker", client=client)

    status = executor.status()
    result = executor.run(shell("true"))

    assert status.available is False
    assert status.message.startswith("Docker is not running on this computer.")
    assert result.status == "error"
    assert result.reason == status.message
    assert not (tmp_path / "worker").exists()


def test_leftovers_of_a_crashed_worker_are_removed_at_start_up(
    executor: DockerExecutor, docker_client: docker.DockerClient, work_root: Path, tmp_path: Path
) -> None:
    # What a worker killed mid-task leaves: a created container and its work dir ...
    stale_dir = work_root / "tasks" / "deadbeef"
    stale_dir.mkdir(parents=True)
    (stale_dir / "partial.out").write_text("half")
    other_dir = tmp_path / "other-worker" / "tasks" / "cafe"
    other_dir.mkdir(parents=True)

    def leftover(source: Path) -> str:
        created = docker_client.api.create_container(
            BUSYBOX,
            ["true"],
            labels={TASK_LABEL: source.name},
            host_config=docker_client.api.create_host_config(binds=[f"{source}:/work"]),
        )
        return str(created["Id"])

    mine, theirs = leftover(stale_dir), leftover(other_dir)
    try:
        removed = executor.remove_leftovers()

        assert removed == 1
        assert task_containers(docker_client, work_root) == []
        assert not stale_dir.exists()
        # ... while another worker's container on the same engine is not this worker's business.
        assert task_containers(docker_client, other_dir) == [theirs]
    finally:
        docker_client.api.remove_container(theirs, force=True)
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.api.remove_container(mine, force=True)
    assert_still_healthy(executor)


def test_status_reports_the_engine_version(executor: DockerExecutor) -> None:
    status = executor.status()

    assert status.available is True
    assert status.version and status.version in status.message


def test_usage_falls_back_to_the_stats_stream(
    executor: DockerExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As on Docker Desktop, where the container's cgroup lives inside a VM.
    monkeypatch.setattr(executor_module, "_find_cgroup_probe", lambda *_args: None)

    result = executor.run(shell(f"{busy_loop(300_000)}; sleep 1"))

    assert result.status == "succeeded", result.reason
    assert result.usage.cpu_seconds > 0
    assert result.usage.peak_memory_bytes > 0


# -- no engine needed ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("platform", "error", "expected"),
    [
        ("linux", FileNotFoundError(2, "No such file or directory"), "sudo systemctl start docker"),
        ("darwin", ConnectionRefusedError(111, "Connection refused"), "Start Docker Desktop"),
        ("win32", OSError(2, "The system cannot find the file specified."), "Start Docker Desktop"),
        ("linux", PermissionError(13, "Permission denied"), "'docker' group"),
    ],
)
def test_engine_errors_become_advice(platform: str, error: Exception, expected: str) -> None:
    wrapped = docker.errors.DockerException("Error while fetching server API version")
    wrapped.__cause__ = error

    assert expected in describe_docker_error(wrapped, platform=platform)
