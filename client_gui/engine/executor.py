"""The worker's hardened Docker executor: runs one task in a locked-down container, never on the host.

:class:`DockerExecutor` copies the task's inputs into a fresh per-task work dir, runs the task's
image with no network, a read-only root, no capabilities, a non-root user and the spec's
memory/CPU/process limits, streams its logs, enforces the wall-clock and output-size limits,
measures its usage from the container's cgroup, moves the declared outputs into a results dir and
always removes the container and the work dir. No Qt here: the worker loop calls :meth:`run`
from a worker thread.

Every call to the engine is bounded (see :func:`_ask_engine`), so :meth:`run` returns within the
task's time limit plus a fixed grace even when the engine stops answering about its container
(pulling a missing image aside, which takes as long as the download).
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import hashlib
import logging
import math
import os
import shutil
import signal
import socket
import stat
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import wait as wait_for_futures
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, ClassVar, Literal, Protocol, TypeVar, cast

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import DeviceRequest, LogConfig, Mount, Ulimit
from docker.utils import parse_repository_tag
from docker.utils.socket import frames_iter_no_tty

from client_gui.engine.docker_status import DockerStatus, check_docker, describe_docker_error

logger = logging.getLogger(__name__)

T = TypeVar("T")

ExecStatus = Literal[
    "succeeded", "failed", "timeout", "oom", "output_too_large", "cancelled", "error"
]
LogCallback = Callable[[str, str], None]

MIB = 1024 * 1024
# Docker refuses memory limits below 6 MiB; saying so up front beats its API error.
_MIN_MEMORY_BYTES = 6 * MIB
# /tmp (and any VOLUME the image declares) is RAM-backed; its pages are charged to the
# container's memory cgroup, so this only has to be small, not exact.
_TMPFS_BYTES = 64 * MIB
_WORK_DIR_IN_CONTAINER = "/work"
# Every container the executor creates carries it (value: the run's id), for `docker ps` and
# for remove_leftovers.
_TASK_LABEL = "hivemind.task"
# Used when the worker runs as root (the work dir is then deleted by root whatever the job did).
_NOBODY = "65534:65534"
# How often the watchdog wakes: bounds how late a cancel is noticed and how much CPU time
# after the last cgroup sample can go uncounted. Reading two cgroup files costs microseconds.
_TICK_S = 0.025
# Walking the work dir costs time proportional to its file count; a job that makes many files
# must not make the watchdog eat a core, so walks are spaced to stay under ~10% of one.
_DU_MIN_INTERVAL_S = 0.05
_DU_COST_FACTOR = 10.0
# Every directory entry costs an inode and a block even when empty; charging a floor per entry
# stops a job from exhausting the host's inodes with millions of empty files.
_MIN_ENTRY_BYTES = 512
# A healthy engine answers in milliseconds, a busy one in a few seconds. A call still unanswered
# after this is taken as a stalled engine: a container full of processes can wedge the engine's
# handling of that one container, and docker-py's own timeout (60 s per socket read, per call)
# let a run chain kill, inspect and remove into minutes past its task's time limit.
_ENGINE_ANSWER_S = 15.0
# Everything after the watchdog stops (kill, exit, logs, inspect, remove) shares this budget, so
# run() returns within timeout_s + _GRACE_S (plus the calls that start the container) whatever
# the engine does. Each call still gets _MIN_ANSWER_S once the budget is spent, so a healthy
# engine always gets the chance to remove the container.
_GRACE_S = 30.0
_MIN_ANSWER_S = 2.0
# After SIGKILL the engine needs a moment to reap; beyond this the container is force-removed.
_KILL_GRACE_S = 10.0
_LOG_JOIN_S = 5.0
# Once its socket is shut down the log reader ends at once; only a stuck on_log holds it longer.
_LOG_UNBLOCK_S = 1.0
# A line this long without a newline (a progress bar using \r) is forwarded anyway.
_MAX_LINE_CHARS = 8192
_SIGXFSZ_EXIT = 128 + int(getattr(signal, "SIGXFSZ", 25))
_SIGKILL_EXIT = 128 + 9


@dataclass(frozen=True)
class InputFile:
    """A local file (already downloaded and sha256-checked) placed at ``path`` in the work dir."""

    path: str
    source: Path


@dataclass(frozen=True, kw_only=True)
class ExecSpec:
    """What to run and within which limits. Paths are relative to the work dir (/work).

    ``max_output_bytes`` caps everything the task writes to the work dir (outputs included);
    ``gpu_count > 0`` asks the engine for that many GPUs through the NVIDIA container toolkit.
    """

    image: str
    command: list[str]
    env: dict[str, str]
    inputs: list[InputFile]
    output_paths: list[str]
    cpu_cores: float
    memory_bytes: int
    gpu_count: int = 0
    network: bool = False
    timeout_s: float
    max_output_bytes: int
    max_log_bytes: int = MIB
    pids_limit: int = 256


@dataclass(frozen=True)
class OutputFile:
    """One collected output: ``path`` relative to the work dir, ``local_path`` in the results dir."""

    path: str
    local_path: Path
    sha256: str
    size: int


@dataclass(frozen=True)
class Usage:
    """Resources used, measured by the executor from the container's cgroup, not reported by the job."""

    cpu_seconds: float
    peak_memory_bytes: int
    wall_seconds: float


_NO_USAGE = Usage(cpu_seconds=0.0, peak_memory_bytes=0, wall_seconds=0.0)


@dataclass(frozen=True)
class ExecResult:
    """The outcome of one run. ``reason`` is a sentence a person can act on.

    ``results_dir`` holds the collected outputs (None when nothing was collected); the caller
    deletes it once they are uploaded.
    """

    status: ExecStatus
    exit_code: int | None
    reason: str
    stdout: bytes
    stderr: bytes
    outputs: list[OutputFile]
    usage: Usage
    results_dir: Path | None = None


class DockerExecutor:
    """Runs tasks in hardened containers on the local Docker engine.

    ``work_root`` holds ``tasks/<id>`` (per-task work dirs, deleted after each run) and
    ``results/<id>`` (collected outputs, deleted by the caller). Network access is only given to a
    task that asks for it *and* when the volunteer allowed it (``allow_network``).

    GPUs: a spec with ``gpu_count > 0`` gets ``device_requests=[DeviceRequest(count=n,
    capabilities=[["gpu"]])]``, which needs the NVIDIA container toolkit on the host. This path is
    not exercised by the test suite (its machines have no GPU); the engine refuses the container
    with an explanation when the toolkit is missing, which :meth:`run` reports as an error.
    """

    def __init__(
        self,
        work_root: Path,
        *,
        client: docker.DockerClient | None = None,
        allow_network: bool = False,
    ) -> None:
        self._work_root = Path(work_root)
        self._client = client
        self._allow_network = allow_network
        self._client_lock = threading.Lock()

    def status(self) -> DockerStatus:
        """Whether Docker can run tasks now, with a sentence saying what to do if not."""
        try:
            client = self._connect()
        except (DockerException, OSError) as exc:
            logger.info("Docker engine not reachable: %r", exc)
            return DockerStatus(available=False, version="", message=describe_docker_error(exc))
        return check_docker(client)

    def run(
        self,
        spec: ExecSpec,
        *,
        on_log: LogCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> ExecResult:
        """Run ``spec`` to completion (or until a limit or ``cancel`` stops it).

        ``on_log(stream, line)`` is called with "stdout"/"stderr" lines as they arrive, from the
        log-reading thread: it should return quickly (a Qt caller emits a signal). Never raises
        for task or engine failures: they come back as a status with a human ``reason``.
        """
        problem = _spec_problem(spec, allow_network=self._allow_network)
        if problem is not None:
            return _error_result(problem)
        try:
            api = self._connect().api
        except (DockerException, OSError) as exc:
            logger.warning("Docker engine not reachable: %r", exc)
            return _error_result(describe_docker_error(exc))
        return _TaskRun(api, self._work_root, spec, on_log, cancel).execute()

    def remove_leftovers(self) -> int:
        """Remove what runs of this worker left behind when the worker or the engine died mid-task.

        Call at start-up, before the first :meth:`run`. Only containers whose work dir lies under
        this executor's ``work_root`` are touched, so other workers on the computer keep theirs.
        Returns how many containers were removed.
        """
        tasks_dir = self._work_root / "tasks"
        removed = 0
        api = self._connect().api
        for container in api.containers(all=True, filters={"label": _TASK_LABEL}):
            sources = [Path(mount.get("Source", "")) for mount in container.get("Mounts") or []]
            if any(source.is_relative_to(tasks_dir) for source in sources):
                with contextlib.suppress(NotFound):
                    api.remove_container(container["Id"], force=True, v=True)
                removed += 1
        if tasks_dir.exists():
            for leftover in tasks_dir.iterdir():
                _remove_tree(leftover)
        return removed

    def _connect(self) -> docker.DockerClient:
        with self._client_lock:
            if self._client is None:
                # "auto" asks the engine for its API version once, here, not on every run.
                self._client = docker.from_env(version="auto")
            return self._client


class _TaskRun:
    """One execution: owns the container and the work dir, and removes both whatever happens."""

    def __init__(
        self,
        api: docker.APIClient,
        work_root: Path,
        spec: ExecSpec,
        on_log: LogCallback | None,
        cancel: threading.Event | None,
    ) -> None:
        self.api = api
        self.spec = spec
        self.on_log = on_log
        self.cancel = cancel
        self.task_id = uuid.uuid4().hex
        self.work_dir = work_root / "tasks" / self.task_id
        self.results_dir = work_root / "results" / self.task_id
        self.container_name = f"hivemind-task-{self.task_id}"
        self.container_id: str | None = None
        # Set before asking for the container: an engine that did not answer may still make it.
        self.container_requested = False
        # When the watchdog stopped + _GRACE_S; None while the task runs.
        self.grace_ends: float | None = None

    @property
    def cid(self) -> str:
        assert self.container_id is not None, "no container yet"
        return self.container_id

    def execute(self) -> ExecResult:
        try:
            return self._execute()
        except _Finished as finished:
            return finished.result
        except (_EngineStalled, DockerException, OSError) as exc:
            logger.warning("task %s failed in the executor: %r", self.task_id, exc)
            return _error_result(_engine_error_reason(exc))
        finally:
            self._remove_container()
            _remove_tree(self.work_dir)

    def _execute(self) -> ExecResult:
        # The image first: without it (or without an engine) there is no point copying inputs.
        image_info = self._ensure_image()
        baseline = self._prepare_work_dir()
        self._create_container(image_info)
        # Attached before start, so not a byte of early output is missed.
        sock = self._ask(
            "connect to the task's output",
            lambda: self.api.attach_socket(
                self.cid, params={"stdout": 1, "stderr": 1, "stream": 1, "logs": 0}
            ),
        )
        pump = _LogPump(sock, max_bytes=self.spec.max_log_bytes, on_log=self.on_log)
        try:
            stop, exit_outcome, usage = self._run_container(baseline)
        except BaseException:
            pump.abort()  # the stream may never end if the container never started
            raise
        pump.close(self._grace_left(_LOG_JOIN_S))
        stdout, stderr = bytes(pump.captured["stdout"]), bytes(pump.captured["stderr"])
        if stop is not None:
            return ExecResult(stop, None, self._stop_reason(stop), stdout, stderr, [], usage)
        if isinstance(exit_outcome, BaseException):
            logger.warning("task %s: waiting for it failed: %r", self.task_id, exit_outcome)
            reason = _engine_error_reason(exit_outcome)
            return ExecResult("error", None, reason, stdout, stderr, [], usage)
        exit_code = exit_outcome
        status, reason = self._classify_exit(exit_code, baseline)
        if status not in ("succeeded", "failed"):
            return ExecResult(status, exit_code, reason, stdout, stderr, [], usage)
        outputs = self._collect_outputs()
        results_dir = self.results_dir if outputs else None
        return ExecResult(status, exit_code, reason, stdout, stderr, outputs, usage, results_dir)

    def _run_container(self, baseline: int) -> tuple[ExecStatus | None, int | BaseException, Usage]:
        """Start the container and watch it to the end: (why we stopped it, exit, usage)."""
        try:
            self._ask("start the task's container", lambda: self.api.start(self.cid))
        except APIError as exc:
            failure = _command_failure(exc, self.spec.command)
            if failure is None:
                raise
            logger.info("task %s: %s", self.task_id, _explanation(exc))
            raise _Finished(
                ExecResult("failed", failure[0], failure[1], b"", b"", [], _NO_USAGE)
            ) from exc
        started = time.monotonic()
        exit_box: list[int | BaseException] = []
        exited = threading.Event()
        threading.Thread(
            target=self._wait_for_exit,
            args=(exit_box, exited),
            name=f"hivemind-wait-{self.task_id[:8]}",
            daemon=True,
        ).start()
        probe = _open_usage_probe(self.api, self.cid)
        try:
            stop = self._watch(started, baseline, exited, probe)
            self.grace_ends = time.monotonic() + _GRACE_S
            if stop is not None:
                self._kill()
                exited.wait(self._grace_left(_KILL_GRACE_S))
            wall = time.monotonic() - started
            probe.sample()
        finally:
            probe.close()
        usage = Usage(
            cpu_seconds=probe.cpu_ns / 1e9, peak_memory_bytes=probe.peak_bytes, wall_seconds=wall
        )
        outcome = exit_box[0] if exit_box else TimeoutError("the engine reported no exit")
        return stop, outcome, usage

    # -- before start --------------------------------------------------------------------------

    def _prepare_work_dir(self) -> int:
        """Create the work dir, copy the inputs in, and return its size before the task runs."""
        try:
            tasks_dir = self.work_dir.parent
            tasks_dir.mkdir(parents=True, exist_ok=True)
            # The work dir itself must be writable by the container user (see _container_user);
            # this private parent keeps other accounts on the computer out of it.
            os.chmod(tasks_dir, 0o700)
            _make_shared_dir(self.work_dir)
            for item in self.spec.inputs:
                if not item.source.is_file():
                    raise _Finished(
                        _error_result(
                            f"The task's input file '{item.path}' is no longer on this "
                            "computer, so the task was not started."
                        )
                    )
                target = self.work_dir.joinpath(*PurePosixPath(item.path).parts)
                for directory in reversed(target.parents):
                    if directory.is_relative_to(self.work_dir) and not directory.exists():
                        _make_shared_dir(directory)
                # A copy, not a hard link: a job writing to its input must not corrupt the
                # worker's verified download.
                shutil.copyfile(item.source, target)
                # Writable whatever uid the task runs as, so it behaves the same on every worker.
                os.chmod(target, 0o666)
            return _disk_usage(self.work_dir)
        except OSError as exc:
            logger.warning("task %s: preparing the work dir failed: %r", self.task_id, exc)
            raise _Finished(_error_result(_local_file_reason(exc))) from exc

    def _ensure_image(self) -> dict[str, Any]:
        """Inspect the image, pulling it once if it is missing. Never falls back to the host."""
        image = self.spec.image
        try:
            return self._ask("look up the task's image", lambda: _inspect_image(self.api, image))
        except ImageNotFound:
            logger.info("image %s not present locally, pulling it", image)
        try:
            # Not bounded: a download takes as long as it takes; a stalled one fails the task.
            pull_error = _pull(self.api, image)
            if pull_error is None:
                return self._ask(
                    "look up the task's image", lambda: _inspect_image(self.api, image)
                )
        except (DockerException, OSError) as exc:
            pull_error = _explanation(exc)
        logger.warning("pulling image %s failed: %s", image, pull_error)
        raise _Finished(
            _error_result(
                f"The image '{image}' is not on this computer and could not be downloaded: "
                f"{pull_error}"
            )
        )

    def _create_container(self, image_info: dict[str, Any]) -> None:
        spec = self.spec
        tmpfs_options = f"rw,nosuid,nodev,size={_TMPFS_BYTES}"
        tmpfs = {"/tmp": tmpfs_options}
        # A VOLUME in the image would otherwise become a writable anonymous volume on the host's
        # disk that neither the read-only root nor the work-dir watchdog covers.
        for volume in (image_info.get("Config") or {}).get("Volumes") or {}:
            if volume.rstrip("/") != _WORK_DIR_IN_CONTAINER:
                tmpfs[volume] = tmpfs_options
        device_requests = None
        if spec.gpu_count > 0:
            device_requests = [DeviceRequest(count=spec.gpu_count, capabilities=[["gpu"]])]
        host_config = self.api.create_host_config(
            network_mode="bridge" if spec.network else "none",
            read_only=True,
            mounts=[Mount(target=_WORK_DIR_IN_CONTAINER, source=str(self.work_dir), type="bind")],
            tmpfs=tmpfs,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            pids_limit=spec.pids_limit,
            mem_limit=spec.memory_bytes,
            # Equal to mem_limit: no swap, so a memory bomb meets the OOM killer instead of
            # thrashing the volunteer's disk.
            memswap_limit=spec.memory_bytes,
            nano_cpus=round(spec.cpu_cores * 1e9),
            # RLIMIT_FSIZE: no single file may outgrow the output cap, even between two
            # watchdog walks (the kernel sends SIGXFSZ at the limit).
            ulimits=[
                Ulimit(name="fsize", soft=spec.max_output_bytes + 1, hard=spec.max_output_bytes + 1)
            ],
            log_config=LogConfig(
                type="json-file",
                config={"max-size": str(max(spec.max_log_bytes, 64 * 1024)), "max-file": "1"},
            ),
            device_requests=device_requests,
            # If the computer itself runs short of memory, the task goes before the
            # volunteer's own programs.
            oom_score_adj=1000,
        )
        env = {"HOME": _WORK_DIR_IN_CONTAINER, **spec.env}
        self.container_requested = True
        created = self._ask(
            "create the task's container",
            lambda: self.api.create_container(
                image=spec.image,
                command=list(spec.command) or None,
                environment=[f"{key}={value}" for key, value in env.items()],
                user=_container_user(),
                working_dir=_WORK_DIR_IN_CONTAINER,
                labels={_TASK_LABEL: self.task_id},
                name=self.container_name,
                host_config=host_config,
            ),
        )
        self.container_id = str(created["Id"])
        for warning in created.get("Warnings") or []:
            logger.warning("task %s: docker: %s", self.task_id, warning)

    # -- while running -------------------------------------------------------------------------

    def _wait_for_exit(self, box: list[int | BaseException], exited: threading.Event) -> None:
        try:
            # The watchdog bounds the task; this bound only ends the thread (and frees its
            # connection) when the engine never reports the exit.
            timeout = math.ceil(self.spec.timeout_s + _GRACE_S)
            box.append(int(self.api.wait(self.cid, timeout=timeout)["StatusCode"]))
        except Exception as exc:  # handed to the watchdog to report
            box.append(exc)
        finally:
            exited.set()

    def _watch(
        self, started: float, baseline: int, exited: threading.Event, probe: _UsageProbe
    ) -> ExecStatus | None:
        """Sample usage and enforce the limits until the container exits; return why it was stopped."""
        spec = self.spec
        deadline = started + spec.timeout_s
        next_du = started
        while True:
            probe.sample()
            now = time.monotonic()
            if self.cancel is not None and self.cancel.is_set():
                return "cancelled"
            if now >= deadline:
                return "timeout"
            if now >= next_du:
                written = _disk_usage(self.work_dir) - baseline
                finished = time.monotonic()
                if written > spec.max_output_bytes:
                    return "output_too_large"
                next_du = finished + max(_DU_MIN_INTERVAL_S, (finished - now) * _DU_COST_FACTOR)
            if exited.wait(min(_TICK_S, max(0.0, deadline - now))):
                return None

    def _kill(self) -> None:
        try:
            self._ask("stop the task's container", lambda: self.api.kill(self.cid))
        except APIError as exc:
            # 409/404: it exited (or vanished) on its own between the check and the kill.
            logger.debug("task %s: kill: %s", self.task_id, _explanation(exc))
        except (_EngineStalled, DockerException, OSError) as exc:
            # The verdict stands (the watchdog saw the limit pass); removal tries once more.
            logger.warning("task %s: could not kill its container: %r", self.task_id, exc)

    # -- after exit ----------------------------------------------------------------------------

    def _classify_exit(self, exit_code: int, baseline: int) -> tuple[ExecStatus, str]:
        spec = self.spec
        if exit_code != 0:
            # Only non-zero exits need the extra round trip: an OOM kill always makes one.
            info = self._ask(
                "report how the task ended", lambda: self.api.inspect_container(self.cid)
            )
            state = info.get("State") or {}
            if state.get("OOMKilled"):
                return "oom", _memory_reason(spec.memory_bytes)
        if exit_code == _SIGXFSZ_EXIT:
            return "output_too_large", _output_reason(spec.max_output_bytes)
        if _disk_usage(self.work_dir) - baseline > spec.max_output_bytes:
            return "output_too_large", _output_reason(spec.max_output_bytes)
        if exit_code == 0:
            return "succeeded", "The task finished successfully."
        if exit_code == _SIGKILL_EXIT:
            return "failed", "The task was killed (exit code 137) before it finished."
        signal_name = _signal_name(exit_code - 128) if exit_code > 128 else None
        if signal_name is not None:
            return "failed", f"The task crashed with {signal_name} (exit code {exit_code})."
        return "failed", f"The task exited with code {exit_code}; see its error output."

    def _collect_outputs(self) -> list[OutputFile]:
        try:
            return _collect_outputs(self.work_dir, self.spec.output_paths, self.results_dir)
        except OSError as exc:
            logger.warning("task %s: collecting outputs failed: %r", self.task_id, exc)
            _remove_tree(self.results_dir)
            raise _Finished(_error_result(_local_file_reason(exc))) from exc

    def _stop_reason(self, stop: ExecStatus) -> str:
        spec = self.spec
        if stop == "timeout":
            return (
                f"The task ran longer than its {spec.timeout_s:g} second time limit "
                "and was stopped."
            )
        if stop == "output_too_large":
            return _output_reason(spec.max_output_bytes)
        return "The task was cancelled and its container was stopped."

    def _remove_container(self) -> None:
        if not self.container_requested:
            return
        # By name: it is known even when the engine never answered the create.
        name = self.container_name
        try:
            # force: kills it if still running; v: drops any anonymous volume with it.
            self._ask(
                "remove the task's container",
                lambda: self.api.remove_container(name, force=True, v=True),
            )
        except NotFound:
            pass
        except (_EngineStalled, DockerException, OSError) as exc:
            logger.error(
                "task %s: could not remove container %s (%r); the engine may still remove it, "
                "else remove_leftovers does at the worker's next start",
                self.task_id,
                name,
                exc,
            )

    # -- the engine ----------------------------------------------------------------------------

    def _ask(self, action: str, call: Callable[[], T]) -> T:
        """``call()`` on the engine, within _ENGINE_ANSWER_S and, once stopping, the grace left."""
        within = _ENGINE_ANSWER_S
        if self.grace_ends is not None:
            within = min(within, max(_MIN_ANSWER_S, self.grace_ends - time.monotonic()))
        return _ask_engine(action, call, within)

    def _grace_left(self, cap: float) -> float:
        if self.grace_ends is None:
            return cap
        return max(0.0, min(cap, self.grace_ends - time.monotonic()))


class _Finished(Exception):
    """Ends a run early with ``result`` (a refusal or a task that could not even start)."""

    def __init__(self, result: ExecResult) -> None:
        super().__init__(result.reason)
        self.result = result


class _EngineStalled(Exception):
    """The engine did not answer in time; ``action`` says what it had been asked to do."""

    def __init__(self, action: str, seconds: float) -> None:
        super().__init__(f"no answer within {seconds:g} s when asked to {action}")
        self.action = action


def _ask_engine(action: str, call: Callable[[], T], within: float) -> T:
    """``call()``, or :class:`_EngineStalled` when it has not returned after ``within`` seconds.

    The call runs in a helper thread that is abandoned when the engine does not answer: it ends
    on its own at docker-py's socket timeout, and the engine may still carry the request out.
    """
    answer: Future[T] = Future()

    def ask() -> None:
        try:
            answer.set_result(call())
        except BaseException as exc:  # handed to the caller
            answer.set_exception(exc)

    threading.Thread(target=ask, name="hivemind-engine-call", daemon=True).start()
    # wait() rather than result(timeout): a socket timeout raised by the call is a TimeoutError
    # too, and must not be mistaken for this one.
    if not wait_for_futures([answer], timeout=within).done:
        raise _EngineStalled(action, within)
    return answer.result()


# -- logs ------------------------------------------------------------------------------------------


class _LogPump:
    """Reads the container's attach stream in a thread: captures and forwards stdout/stderr.

    Attached before start so no early output is lost; the stream is always drained to its end
    (even past the capture cap) so a chatty task never blocks on a full pipe.
    """

    _NAMES: ClassVar[dict[int, str]] = {1: "stdout", 2: "stderr"}

    def __init__(self, sock: Any, *, max_bytes: int, on_log: LogCallback | None) -> None:
        self._sock = sock
        self._max_bytes = max_bytes
        self._on_log = on_log
        self.captured: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self._forwarded = {"stdout": 0, "stderr": 0}
        self._decoders = {
            name: codecs.getincrementaldecoder("utf-8")(errors="replace")
            for name in ("stdout", "stderr")
        }
        self._partial = {"stdout": "", "stderr": ""}
        self._thread = threading.Thread(target=self._run, name="hivemind-logs", daemon=True)
        self._thread.start()

    def close(self, within: float) -> None:
        """Wait up to ``within`` s for the stream to end (it does when the container stops).

        Then release it, whether or not it ended.
        """
        self._thread.join(within)
        self.abort()

    def abort(self) -> None:
        """Stop reading now: unblocks the reader thread and releases the connection."""
        if self._thread.is_alive():
            _shutdown_socket(self._sock)
            self._thread.join(_LOG_UNBLOCK_S)
        with contextlib.suppress(OSError):
            self._sock.close()

    def _run(self) -> None:
        try:
            # The stubs type frames loosely; the wire format is (stream number, raw bytes).
            frames = cast(Iterator[tuple[int, bytes]], frames_iter_no_tty(self._sock))
            for stream_id, data in frames:
                name = self._NAMES.get(stream_id)
                if name is not None:
                    self._take(name, data)
        except (OSError, ValueError) as exc:
            # The socket is shut down under us when the container could not be stopped cleanly.
            logger.debug("log stream ended: %r", exc)
        for name in self._NAMES.values():
            self._forward(name, self._decoders[name].decode(b"", final=True), final=True)

    def _take(self, name: str, data: bytes) -> None:
        kept = self.captured[name]
        room = self._max_bytes - len(kept)
        if room > 0:
            kept += data[:room]
        forwarded = self._forwarded[name]
        if self._on_log is not None and forwarded < self._max_bytes:
            chunk = data[: self._max_bytes - forwarded]
            self._forwarded[name] = forwarded + len(chunk)
            self._forward(name, self._decoders[name].decode(chunk))
            if len(chunk) < len(data):
                self._emit(name, "[hivemind: the task wrote more output than is kept; not shown]")

    def _forward(self, name: str, text: str, *, final: bool = False) -> None:
        if self._on_log is None:
            return
        pending = self._partial[name] + text
        lines = pending.split("\n")
        pending = lines.pop()
        if (final and pending) or len(pending) >= _MAX_LINE_CHARS:
            lines.append(pending)
            pending = ""
        self._partial[name] = pending
        for line in lines:
            self._emit(name, line.removesuffix("\r"))

    def _emit(self, name: str, line: str) -> None:
        assert self._on_log is not None
        try:
            self._on_log(name, line)
        except Exception:  # a broken log view must not lose the output
            logger.exception("on_log callback failed")


def _shutdown_socket(sock: Any) -> None:
    raw = getattr(sock, "_sock", sock)
    with contextlib.suppress(OSError, AttributeError):
        raw.shutdown(socket.SHUT_RDWR)


# -- usage -----------------------------------------------------------------------------------------


class _UsageProbe(Protocol):
    cpu_ns: int
    peak_bytes: int

    def sample(self) -> None: ...

    def close(self) -> None: ...


@dataclass
class _CgroupProbe:
    """Reads the container's cgroup files on this host: exact counters, microseconds per sample.

    The engine deletes the cgroup as soon as the task exits, so the last reading is at most one
    watchdog tick old; CPU time spent after it goes uncounted (the volunteer's loss, not the job's
    gain). Peak memory is the kernel's own high-water mark where the kernel keeps one.
    """

    cpu_file: Path
    cpu_scale_ns: int  # cpuacct.usage is in ns; cgroup v2 cpu.stat usage_usec in us
    memory_file: Path
    cpu_ns: int = 0
    peak_bytes: int = 0

    def sample(self) -> None:
        try:
            if self.cpu_file.name == "cpu.stat":
                cpu = _stat_field(self.cpu_file.read_text(), "usage_usec")
            else:
                cpu = int(self.cpu_file.read_text())
            memory = int(self.memory_file.read_text())
        except (OSError, ValueError):
            return  # the cgroup is gone: the container has exited
        self.cpu_ns = max(self.cpu_ns, cpu * self.cpu_scale_ns)
        self.peak_bytes = max(self.peak_bytes, memory)

    def close(self) -> None:
        pass


class _StatsProbe:
    """Fallback when the cgroup is not visible here (Docker Desktop's VM, rootless engines).

    The engine's stats stream sends about one reading a second, so short tasks read low.
    """

    def __init__(self, api: docker.APIClient, container_id: str) -> None:
        self.cpu_ns = 0
        self.peak_bytes = 0
        self._api = api
        self._container_id = container_id
        # Opened in the thread: asking for the stream waits for the engine's first answer.
        self._thread = threading.Thread(target=self._run, name="hivemind-stats", daemon=True)
        self._thread.start()

    def sample(self) -> None:
        pass  # the thread records readings as the engine sends them

    def close(self) -> None:
        # The stream ends once the container stops; do not hold the result up for it.
        self._thread.join(timeout=0.5)

    def _run(self) -> None:
        try:
            stream: Iterator[dict[str, Any]] = self._api.stats(
                self._container_id, stream=True, decode=True
            )
            for reading in stream:
                cpu = ((reading.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage")
                memory = reading.get("memory_stats") or {}
                peak = memory.get("max_usage") or memory.get("usage")
                if cpu:
                    self.cpu_ns = max(self.cpu_ns, int(cpu))
                if peak:
                    self.peak_bytes = max(self.peak_bytes, int(peak))
        except (DockerException, OSError, ValueError) as exc:
            logger.debug("stats stream ended: %r", exc)


def _open_usage_probe(
    api: docker.APIClient, container_id: str, cgroup_root: Path = Path("/sys/fs/cgroup")
) -> _UsageProbe:
    probe = _find_cgroup_probe(container_id, cgroup_root)
    return probe if probe is not None else _StatsProbe(api, container_id)


def _find_cgroup_probe(container_id: str, root: Path) -> _CgroupProbe | None:
    """Locate the container's cgroup for the cgroupfs and systemd drivers, v2 and v1 layouts.

    A directory named after the full 64-hex container id can only be this container's, so a
    remote engine simply finds nothing here and the stats stream is used instead.
    """
    leaves = (f"docker/{container_id}", f"system.slice/docker-{container_id}.scope")
    for leaf in leaves:
        directory = root / leaf
        if (directory / "cpu.stat").is_file():
            peak = directory / "memory.peak"  # Linux 5.19+
            return _CgroupProbe(
                cpu_file=directory / "cpu.stat",
                cpu_scale_ns=1000,
                memory_file=peak if peak.is_file() else directory / "memory.current",
            )
    for leaf in leaves:
        cpu_files = [root / ctl / leaf / "cpuacct.usage" for ctl in ("cpuacct", "cpu,cpuacct")]
        memory_file = root / "memory" / leaf / "memory.max_usage_in_bytes"
        cpu_file = next((path for path in cpu_files if path.is_file()), None)
        if cpu_file is not None and memory_file.is_file():
            return _CgroupProbe(cpu_file=cpu_file, cpu_scale_ns=1, memory_file=memory_file)
    return None


def _stat_field(text: str, key: str) -> int:
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    raise ValueError(f"{key} not found")


# -- files -----------------------------------------------------------------------------------------


def _container_user() -> str:
    """The uid:gid the task runs as: never root.

    A worker running as an ordinary account uses its own uid, so it can always delete what the
    task wrote (a task's read-only subdirectories would otherwise be undeletable without root);
    a worker running as root (or on Windows) uses nobody.
    """
    getuid = getattr(os, "getuid", None)
    getgid = getattr(os, "getgid", None)
    if getuid is None or getgid is None:
        return _NOBODY
    uid = getuid()
    return _NOBODY if uid == 0 else f"{uid}:{getgid()}"


def _make_shared_dir(path: Path) -> None:
    path.mkdir(exist_ok=True)
    # Explicit chmod: mkdir's mode is cut by the umask, and the container user must write here.
    os.chmod(path, 0o777)


def _disk_usage(root: Path) -> int:
    """Bytes the tree under ``root`` takes, without following symlinks.

    A file counts as the larger of its length and its allocated blocks: a sparse 10 GB file is
    cheap on disk but would be 10 GB once collected and uploaded.
    """
    total = 0
    pending = [root]
    while pending:
        directory = pending.pop()
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            continue
        except PermissionError:
            # A task running as our own uid can chmod 000 a directory to hide what is in it;
            # we own it, so take the permission back.
            try:
                os.chmod(directory, 0o700)
                entries = list(os.scandir(directory))
            except OSError:
                logger.warning("cannot measure %s", directory)
                continue
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            length = info.st_size if stat.S_ISREG(info.st_mode) else 0
            total += max(length, getattr(info, "st_blocks", 0) * 512, _MIN_ENTRY_BYTES)
            if stat.S_ISDIR(info.st_mode):
                pending.append(Path(entry.path))
    return total


def _collect_outputs(
    work_dir: Path, output_paths: list[str], results_dir: Path
) -> list[OutputFile]:
    """Move the regular files named by ``output_paths`` into ``results_dir`` and hash them.

    Runs after the container has exited, so nothing changes under us. Every path component is
    lstat-ed: a symlink (say /work/out -> /etc/passwd on the host) is never followed, and only
    regular files are taken. Missing paths are simply absent from the result.
    """
    relative_files: set[str] = set()
    for output_path in output_paths:
        relative_files.update(_regular_files_under(work_dir, PurePosixPath(output_path)))
    if relative_files:
        results_dir.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(results_dir.parent, 0o700)  # the results are the volunteer's business only
    outputs: list[OutputFile] = []
    for relative in sorted(relative_files):
        source = work_dir.joinpath(*PurePosixPath(relative).parts)
        target = results_dir.joinpath(*PurePosixPath(relative).parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        os.chmod(target, 0o600)
        fd = os.open(
            target, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
        )
        with os.fdopen(fd, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
            size = os.fstat(handle.fileno()).st_size
        outputs.append(OutputFile(path=relative, local_path=target, sha256=digest, size=size))
    return outputs


def _regular_files_under(work_dir: Path, relative: PurePosixPath) -> list[str]:
    current = work_dir
    for index, part in enumerate(relative.parts):
        current = current / part
        try:
            info = os.lstat(current)
        except (FileNotFoundError, NotADirectoryError):
            return []
        is_last = index == len(relative.parts) - 1
        if not is_last and not stat.S_ISDIR(info.st_mode):
            return []  # a symlink or a file where a directory should be
    if stat.S_ISREG(info.st_mode):
        return [relative.as_posix()]
    if not stat.S_ISDIR(info.st_mode):
        return []
    found: list[str] = []
    for directory, _dirs, files in os.walk(current, followlinks=False):
        for name in files:
            path = Path(directory) / name
            if stat.S_ISREG(os.lstat(path).st_mode):
                found.append(path.relative_to(work_dir).as_posix())
    return found


def _remove_tree(path: Path) -> None:
    """Delete a task's work dir even if the task removed its own permissions inside it."""

    def make_writable_and_retry(func: Callable[..., Any], failed: str, _exc: Any) -> None:
        parent = os.path.dirname(failed)
        try:
            os.chmod(parent, 0o700)
            if os.path.isdir(failed) and not os.path.islink(failed):
                os.chmod(failed, 0o700)
            func(failed)
        except OSError as exc:
            logger.warning("could not delete %s: %r", failed, exc)

    if path.exists():
        if sys.version_info >= (3, 12):
            shutil.rmtree(path, onexc=make_writable_and_retry)
        else:
            shutil.rmtree(path, onerror=make_writable_and_retry)


# -- validation and messages -----------------------------------------------------------------------


def _spec_problem(spec: ExecSpec, *, allow_network: bool) -> str | None:
    """Why ``spec`` must not run, as a sentence, or None. Checked before anything is created."""
    if not spec.image.strip():
        return "The task names no image to run."
    for path in [item.path for item in spec.inputs] + list(spec.output_paths):
        problem = _path_problem(path)
        if problem is not None:
            return problem
    for key, value in spec.env.items():
        if not key or "=" in key or "\0" in key or "\0" in value:
            return f"The task's environment variable {key!r} is not a valid name."
    if spec.network and not allow_network:
        return (
            "The task needs network access, which is turned off for tasks on this computer. "
            "Allow network access in the settings to accept such tasks."
        )
    if spec.memory_bytes < _MIN_MEMORY_BYTES:
        return "The task asks for less than 6 MB of memory, which Docker cannot enforce."
    if spec.cpu_cores <= 0 or spec.timeout_s <= 0:
        return "The task's CPU or time limit is not a positive number."
    if spec.pids_limit < 1:
        # Docker reads 0 or -1 as "unlimited", which would let a fork bomb through.
        return "The task's process limit must be at least 1."
    if spec.max_output_bytes < 0 or spec.max_log_bytes < 0 or spec.gpu_count < 0:
        return "The task's output, log or GPU limit is negative."
    return None


def _path_problem(path: str) -> str | None:
    posix, windows = PurePosixPath(path), PureWindowsPath(path)
    # Both flavours: the worker may run on Windows, where "C:x" or "..\\x" would escape too.
    if (
        not path
        or "\0" in path
        or posix.is_absolute()
        or windows.anchor
        or ".." in posix.parts
        or ".." in windows.parts
        or not posix.parts
    ):
        return (
            f"The task names the file path {path!r}, which is not a plain path inside its "
            "work folder; the task was refused."
        )
    return None


def _inspect_image(api: docker.APIClient, image: str) -> dict[str, Any]:
    # The SDK's stubs leave inspect_image untyped; this is the one place that says what it returns.
    inspect: Callable[[str], dict[str, Any]] = api.inspect_image
    return inspect(image)


def _pull(api: docker.APIClient, image: str) -> str | None:
    """Pull ``image``; return the engine's error text, or None once it is here."""
    repository, tag = parse_repository_tag(image)
    # The engine reports most pull failures inside the progress stream, not as an HTTP error.
    for message in api.pull(repository, tag=tag or "latest", stream=True, decode=True):
        if isinstance(message, dict) and message.get("error"):
            return str(message["error"])
    return None


def _command_failure(exc: APIError, command: list[str]) -> tuple[int, str] | None:
    """(exit code, reason) when the engine could not exec the task's command; else None.

    That is the task's fault and the same on every worker, so it is a failure (with the exit
    codes a shell would give), not an engine error.
    """
    text = _explanation(exc)
    if "exec:" not in text:
        return None
    program = command[0] if command else "the image's default command"
    if "permission denied" in text:
        return 126, f"The task's command '{program}' is not executable in its image."
    if "not found" in text or "no such file or directory" in text:
        return 127, f"The task's command '{program}' does not exist in its image."
    return None


def _local_file_reason(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return (
            "This computer's disk is full, so the task's files could not be written. "
            "Free some disk space and the worker will carry on."
        )
    return f"The task's files could not be handled on this computer: {exc.strerror or exc}."


def _explanation(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc)


def _engine_error_reason(exc: BaseException) -> str:
    if isinstance(exc, _EngineStalled):
        return (
            f"Docker did not answer in time when asked to {exc.action}, so the task could not "
            "be finished on this computer. If this keeps happening, restart Docker (or Docker "
            "Desktop)."
        )
    if isinstance(exc, APIError):
        return f"Docker could not run the task: {_explanation(exc)}"
    if isinstance(exc, (DockerException, OSError)):
        return describe_docker_error(exc)
    return "Docker stopped answering while the task ran; the task was stopped."


def _error_result(reason: str) -> ExecResult:
    return ExecResult("error", None, reason, b"", b"", [], _NO_USAGE)


def _human_bytes(count: int) -> str:
    if count >= MIB:
        return f"{count / MIB:g} MB" if count % MIB == 0 else f"{count / MIB:.1f} MB"
    if count >= 1024:
        return f"{count / 1024:.0f} KB"
    return f"{count} bytes"


def _memory_reason(limit: int) -> str:
    return f"The task used more than its {_human_bytes(limit)} memory limit and was stopped."


def _output_reason(limit: int) -> str:
    return f"The task wrote more than its {_human_bytes(limit)} output limit and was stopped."


def _signal_name(number: int) -> str | None:
    try:
        return signal.Signals(number).name
    except ValueError:
        return None


__all__ = [
    "DockerExecutor",
    "DockerStatus",
    "ExecResult",
    "ExecSpec",
    "ExecStatus",
    "InputFile",
    "OutputFile",
    "Usage",
]
