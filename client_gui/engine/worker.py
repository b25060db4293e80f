"""The worker's engine loop, shared by ``hivemind worker`` and the desktop app: register this computer,
lease tasks from the coordinator, run them in Docker, ship their logs, outputs and results.

Nothing here prints or imports Qt. The loop reports through ``on_event(WorkerEvent)``, called from the
worker's own threads: a GUI must hand each event over to its own thread (a queued signal) and must not
block in the callback.

Threads (all named ``hivemind-*``, all ended and joined by :meth:`Worker.stop`):

* ``hivemind-worker``: registers, then long-polls for leases while slots are free and not paused;
* ``hivemind-heartbeat``: renews leases and liveness; stops leases the coordinator cancelled;
* ``hivemind-logs``: batches task log lines into AppendLogs (every 0.5 s or 64 lines);
* ``hivemind-results``: batches results that finish close together into ReportResults, retrying offline,
  unless the poll loop takes them first: a freed slot asks for work at once, with the result in that poll;
* ``hivemind-lease-<id>``: one per lease: download inputs, run the container, upload outputs.

Tasks only ever run inside a container: when Docker or the image is missing the executor answers
``error`` and the worker reports that, so the coordinator places the task elsewhere.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import psutil

from client_gui.engine.benchmark import BenchmarkError, BenchmarkReport, run_benchmark
from client_gui.engine.coordinator_client import (
    Backoff,
    CoordinatorClient,
    CoordinatorError,
    CoordinatorUnreachable,
    Lease,
    LogLine,
    NotAuthenticated,
    PollResult,
    ReportOutcome,
    RequestRefused,
    TaskReport,
    TaskUsage,
    UploadedFile,
)
from client_gui.engine.docker_status import DockerStatus
from client_gui.engine.executor import (
    DockerExecutor,
    ExecResult,
    ExecSpec,
    InputFile,
    LogCallback,
)
from client_gui.engine.identity import (
    NODE_CREDENTIAL,
    REFRESH_TOKEN,
    CredentialStore,
    CredentialStoreError,
    WorkerConfig,
    WorkerConfigError,
)
from client_gui.engine.usage import UsageSampler

logger = logging.getLogger(__name__)
T = TypeVar("T")

GIB = 1024**3
DEFAULT_HEARTBEAT_S = 5.0
POLL_WAIT_S = 20.0
LOG_FLUSH_S = 0.5
LOG_BATCH_LINES = 64
LOG_FLUSH_WAIT_S = 2.0
"""How long a finished task waits for its last log lines to be sent before its result goes out."""
LOG_BUFFER_LINES = 10_000
"""Lines kept while the coordinator is unreachable; older ones are dropped past this."""
RESULT_BATCH_WINDOW_S = 0.2
"""How long the reporter waits for more results after one arrives, to send them in one call."""
RESULT_BATCH_MAX = 32
FLUSH_ON_STOP_S = 10.0
"""How long stopping waits to deliver the last logs and results to a coordinator that does not answer."""
DOCKER_RECHECK_S = 30.0
MIN_POLL_INTERVAL_S = 1.0
"""A poll that came back empty sooner than this (no long-poll) is not repeated before it has passed."""
TRANSIENT_ATTEMPTS = 4
"""Tries of a transfer or report that keeps failing for a reason other than the network (a corrupted
transfer, a fault inside the coordinator) before the worker gives up on it. Network loss is retried
for as long as the lease lasts."""

# Used when a lease leaves a limit unset (the coordinator normally fills every one).
DEFAULT_CPU_CORES = 1.0
DEFAULT_MEMORY_GB = 0.5
DEFAULT_TIMEOUT_S = 3600
DEFAULT_MAX_OUTPUT_BYTES = GIB

NO_EXIT_CODE = -1
"""Reported as ``exit_code`` when the task never exited by itself (cancelled, timed out, not started)."""

WorkerState = Literal[
    "starting", "registering", "idle", "working", "paused", "offline", "error", "stopped"
]


# --- events ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StateChanged:
    """The worker's state and a sentence for the status line, whenever either changes."""

    state: WorkerState
    message: str


@dataclass(frozen=True)
class Registered:
    """This computer is registered (or re-registered) as ``node_id``; its credential is stored."""

    node_id: str
    message: str


@dataclass(frozen=True)
class TaskStarted:
    lease_id: str
    task_id: str
    job_id: str
    image: str
    timeout_s: int = 0
    """The longest the task may run here (0: unknown)."""
    cpu_cores: float = 0.0
    """The cores the container gets under the owner's cap."""


@dataclass(frozen=True)
class TaskLog:
    lease_id: str
    stream: str
    text: str


@dataclass(frozen=True)
class TaskFinished:
    """A lease is over. ``status`` is how the task ended here (succeeded, failed, timeout, oom,
    output_too_large, cancelled, error); ``outcome`` is what the coordinator made of the report
    (accepted, duplicate, late, rejected, as it answers), or ``not_reported`` (cancelled by the
    coordinator, or undeliverable before the worker stopped).
    ``earned_micro`` stays None until the coordinator tells workers what a result earned.
    """

    lease_id: str
    task_id: str
    job_id: str
    status: str
    exit_code: int | None
    reason: str
    outcome: str
    outcome_reason: str = ""
    usage: TaskUsage = field(default_factory=TaskUsage)
    earned_micro: int | None = None


@dataclass(frozen=True)
class Error:
    """Something the owner should know about; ``message`` says what to do. The worker carries on
    unless a :class:`StateChanged` to ``error`` follows."""

    message: str


@dataclass(frozen=True)
class BenchmarkFinished:
    """This computer was measured: before registering, or again when the owner asked
    (:meth:`Worker.rerun_benchmark`)."""

    report: BenchmarkReport


WorkerEvent = (
    StateChanged | Registered | TaskStarted | TaskLog | TaskFinished | Error | BenchmarkFinished
)
EventCallback = Callable[[WorkerEvent], None]


# --- the owner's controls --------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerLimits:
    """What the computer's owner lets HiveMind use. Read afresh before each poll and each task start,
    so a change applies from the next task without a restart."""

    max_cores: float | None = None
    """None: all logical cores."""
    max_memory_gb: float | None = None
    """None: all memory (tasks still only get what is available at the time)."""
    use_gpu: bool = True
    allow_network: bool = False
    slots: int = 1
    """Tasks at once."""


# --- collaborators ---------------------------------------------------------------------------------


class TaskExecutor(Protocol):
    """What the worker needs of :class:`~client_gui.engine.executor.DockerExecutor`."""

    def status(self) -> DockerStatus: ...

    def run(
        self,
        spec: ExecSpec,
        *,
        on_log: LogCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> ExecResult: ...


class NodeIdentity:
    """Who this computer is at one coordinator: the node credential (a secret) in the credential store,
    the node id and coordinator address in the worker's config file (not secret)."""

    def __init__(
        self,
        store: CredentialStore,
        coordinator: str,
        *,
        config_path: Path | None = None,
        credential_file: Path | None = None,
    ) -> None:
        self.store = store
        self.coordinator = coordinator
        self.config_path = config_path
        self.credential_file = credential_file

    def _config(self) -> WorkerConfig:
        return WorkerConfig.load(self.config_path)

    @property
    def node_id(self) -> str:
        """The node id registered at this coordinator before ("" if none), even without a credential."""
        config = self._config()
        return config.node_id if config.coordinator_address == self.coordinator else ""

    def load(self) -> tuple[str, str] | None:
        """(node id, credential) for this coordinator, or None when this computer must register."""
        node_id = self.node_id
        if not node_id:
            return None
        credential = self.store.load(NODE_CREDENTIAL)
        return (node_id, credential) if credential else None

    def save(self, node_id: str, credential: str) -> None:
        self.store.save(NODE_CREDENTIAL, credential)
        config = dataclasses.replace(
            self._config(),
            coordinator_address=self.coordinator,
            node_id=node_id,
            credential_file=str(self.credential_file) if self.credential_file else "",
        )
        config.save(self.config_path)

    def forget_credential(self) -> None:
        self.store.delete(NODE_CREDENTIAL)


class SignIn:
    """Gets a user access token to (re-)register this computer: the password when one was given,
    else the stored refresh token (rotated: the new one is stored). Callable, as ``Worker(sign_in=...)``."""

    def __init__(
        self,
        client: CoordinatorClient,
        store: CredentialStore,
        *,
        username: str = "",
        password: str = "",
    ) -> None:
        self.client = client
        self.store = store
        self.username = username
        self._password = password

    @property
    def possible(self) -> bool:
        """Whether a sign-in can be attempted without asking the person for anything."""
        return bool(self.username and self._password) or bool(self.store.load(REFRESH_TOKEN))

    def __call__(self) -> str:
        if self.username and self._password:
            session = self.client.login(self.username, self._password)
        else:
            refresh = self.store.load(REFRESH_TOKEN)
            if not refresh:
                raise NotAuthenticated(
                    "This computer is not registered yet and no one is signed in. Sign in to "
                    "register it: hivemind worker --username NAME (the password is read from "
                    "standard input or HIVEMIND_PASSWORD)."
                )
            try:
                session = self.client.refresh(refresh)
            except NotAuthenticated:
                self.store.delete(REFRESH_TOKEN)
                raise
        if session.refresh_token:
            self.store.save(REFRESH_TOKEN, session.refresh_token)
        return session.token


# --- one lease -------------------------------------------------------------------------------------


@dataclass
class _LeaseRun:
    lease: Lease
    cpu_cores: float
    memory_gb: float
    gpus: int
    cancel: threading.Event = field(default_factory=threading.Event)
    cancelled_by: Literal["coordinator", "owner"] | None = None
    cancel_reason: str = ""
    reporting: bool = False
    """True once the task is over and only its report is pending: it no longer takes a slot,
    but its lease is still renewed until the coordinator has the report."""
    result: ExecResult | None = None

    @property
    def lease_id(self) -> str:
        return self.lease.lease_id


class _GaveUp(Exception):
    """A transfer for a lease was abandoned; ``str()`` says why ("" when the lease was cancelled)."""


class _Fatal(Exception):
    """Ends the loop: the worker cannot go on without the owner doing something (``str()`` says what)."""


# --- the worker ------------------------------------------------------------------------------------


class Worker:
    """The engine loop. ``start()`` runs it in background threads; ``stop()`` ends it.

    ``sign_in`` returns a user access token; it is only called when this computer must (re-)register.
    ``executor_factory(allow_network)`` makes the executor (default: :class:`DockerExecutor` under
    ``work_dir/exec``); it is asked again when the owner changes ``allow_network``.
    """

    def __init__(
        self,
        client: CoordinatorClient,
        identity: NodeIdentity,
        *,
        work_dir: Path,
        limits: WorkerLimits | None = None,
        on_event: EventCallback | None = None,
        sign_in: Callable[[], str] | None = None,
        benchmark: Callable[[], BenchmarkReport] = run_benchmark,
        executor_factory: Callable[[bool], TaskExecutor] | None = None,
        usage: UsageSampler | None = None,
        gpu_count: Callable[[], int] | None = None,
        poll_wait_s: float = POLL_WAIT_S,
        heartbeat_interval_s: float = DEFAULT_HEARTBEAT_S,
    ) -> None:
        self.client = client
        self.identity = identity
        self.work_dir = Path(work_dir)
        self._limits = limits or WorkerLimits()
        self._on_event = on_event or (lambda _event: None)
        self._sign_in = sign_in
        self._benchmark = benchmark
        self._executor_factory = executor_factory or self._docker_executor
        self._executors: dict[bool, TaskExecutor] = {}
        self._usage = usage or UsageSampler(read_gpu=self._limits.use_gpu)
        self._gpu_count_probe = gpu_count or _detect_gpu_count
        self._gpu_count: int | None = None
        self.poll_wait_s = poll_wait_s
        self._heartbeat_s = heartbeat_interval_s

        self._lock = threading.RLock()
        self._state_lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._runs: dict[str, _LeaseRun] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._paused = False
        self._stopping = False
        self._stopped = threading.Event()
        self._offline_message = ""
        self._fatal_message = ""
        self._node_id = ""
        self._last_benchmark: BenchmarkReport | None = None
        self._docker: DockerStatus | None = None
        self._docker_checked = 0.0
        self._state: tuple[WorkerState, str] | None = None
        self._main: threading.Thread | None = None
        self._heartbeat_stop = threading.Event()
        self._logs = _LogShipper(client)
        self._results = _ResultReporter(client, self._on_reported)
        self._carry_results = True
        """Send finished results with polls (False once a coordinator ignored them)."""

    # -- controls ------------------------------------------------------------------------------

    @property
    def limits(self) -> WorkerLimits:
        with self._lock:
            return self._limits

    def set_limits(self, limits: WorkerLimits) -> None:
        """Replace the owner's limits; they apply from the next poll and the next task."""
        with self._lock:
            self._limits = limits
            self._usage.read_gpu = limits.use_gpu
            self._changed.notify_all()

    def update_limits(self, **changes: Any) -> WorkerLimits:
        """Change some limits by name (``update_limits(max_cores=2)``); returns the new limits."""
        with self._lock:
            changed = dataclasses.replace(self._limits, **changes)
            self.set_limits(changed)
        return changed

    @property
    def state(self) -> WorkerState:
        with self._lock:
            return self._state[0] if self._state else "starting"

    @property
    def node_id(self) -> str:
        with self._lock:
            return self._node_id

    @property
    def last_benchmark(self) -> BenchmarkReport | None:
        """The latest benchmark this worker ran (None until it ran one: a computer registered
        before does not measure itself again at start)."""
        with self._lock:
            return self._last_benchmark

    def rerun_benchmark(self) -> BenchmarkReport:
        """Measure this computer again and re-register it (same node id) with the new figures.

        Blocks for the whole benchmark and a coordinator call: call it from a worker thread, never a
        GUI thread. Raises :class:`BenchmarkError` or :class:`CoordinatorError` (their ``str()`` is a
        sentence for the owner); the loop carries on with the old figures then.
        """
        if self._sign_in is None:
            raise NotAuthenticated("Sign in to measure and register this computer again.")
        report = self._measure()
        token = self._sign_in()
        known_id = self._safe_node_id()
        registration = self.client.register_node(token, report, node_id=known_id)
        try:
            self.identity.save(registration.node_id, registration.credential)
        except (CredentialStoreError, WorkerConfigError) as exc:
            raise CoordinatorError(str(exc)) from exc
        self.client.set_node_credential(registration.credential)
        with self._lock:
            self._node_id = registration.node_id
        self._emit(Registered(registration.node_id, registration.message))
        self._refresh_state()
        return report

    def _measure(self) -> BenchmarkReport:
        report = self._benchmark()
        with self._lock:
            self._last_benchmark = report
        self._emit(BenchmarkFinished(report))
        return report

    @property
    def paused(self) -> bool:
        with self._lock:
            return self._paused

    def active_leases(self) -> list[str]:
        """Lease ids the worker holds now (running, or finished and waiting for their report)."""
        with self._lock:
            return list(self._runs)

    def pause(self, *, stop_running: bool = False) -> None:
        """Take no new work. With ``stop_running`` also cancel the running tasks (their containers are
        killed and they are reported as cancelled, so the coordinator places them elsewhere)."""
        with self._lock:
            self._paused = True
            self._changed.notify_all()
            runs = list(self._runs.values())
        self.client.interrupt_poll()
        if stop_running:
            for run in runs:
                self._cancel(run, "owner", "The volunteer paused HiveMind on this computer.")
        self._refresh_state()

    def resume(self) -> None:
        with self._lock:
            self._paused = False
            self._changed.notify_all()
        self._refresh_state()

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the loop in the background; returns at once (events report progress)."""
        with self._lock:
            if self._main is not None:
                raise RuntimeError("Worker.start() was called twice")
            self._main = threading.Thread(
                target=self._run_main, name="hivemind-worker", daemon=True
            )
        self._set_state("starting", "Starting.")
        self._main.start()

    def stop(self, *, cancel_running: bool = True, timeout: float | None = None) -> bool:
        """End the loop and join its threads; returns whether everything ended within ``timeout``.

        With ``cancel_running`` the running tasks' containers are killed and the tasks reported as
        cancelled; otherwise they finish first (call ``stop()`` again with ``cancel_running=True`` to
        cut that short). May be called from any thread, more than once.
        """
        with self._lock:
            self._stopping = True
            self._changed.notify_all()
            runs = list(self._runs.values())
            main = self._main
        self.client.interrupt_poll()
        if cancel_running:
            for run in runs:
                self._cancel(run, "owner", "The volunteer stopped HiveMind on this computer.")
        if main is None:
            self._stopped.set()
            self._set_state("stopped", "Stopped.")
            return True
        main.join(timeout)
        return not main.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the loop has ended (after ``stop()`` or an unrecoverable error)."""
        return self._stopped.wait(timeout)

    @property
    def error_message(self) -> str:
        """Why the loop ended on its own ("" while running or after a normal stop)."""
        with self._lock:
            return self._fatal_message

    # -- main thread ---------------------------------------------------------------------------

    def _run_main(self) -> None:
        try:
            self._ensure_registered()
            self._start_helpers()
            self._poll_loop()
        except _Fatal as exc:
            with self._lock:
                self._fatal_message = str(exc)
            self._emit(Error(str(exc)))
            self._set_state("error", str(exc))
        except Exception as exc:
            logger.exception("The worker loop failed")
            message = f"The worker stopped after an unexpected error ({exc!r}); see the log."
            with self._lock:
                self._fatal_message = message
            self._emit(Error(message))
            self._set_state("error", message)
        finally:
            self._shutdown()

    def _ensure_registered(self) -> None:
        try:
            stored = self.identity.load()
        except (CredentialStoreError, WorkerConfigError) as exc:
            raise _Fatal(str(exc)) from exc
        if stored is None:
            self._register()
            return
        node_id, credential = stored
        self.client.set_node_credential(credential)
        with self._lock:
            self._node_id = node_id
        logger.info("Using the stored credential of node %s", node_id)

    def _register(self) -> None:
        """Benchmark, sign in, RegisterWorkerNode, store the credential; retries while offline."""
        if self._sign_in is None:
            raise _Fatal(
                f"This computer is not registered with the coordinator at {self.client.target}. "
                "Sign in to register it: hivemind worker --username NAME."
            )
        self._set_state("registering", "Measuring this computer's speed.")
        try:
            report = self._measure()
        except BenchmarkError as exc:
            raise _Fatal(str(exc)) from exc
        known_id = self._safe_node_id()
        backoff = Backoff()
        while not self._is_stopping():
            self._set_state("registering", f"Registering with {self.client.target}.")
            try:
                token = self._sign_in()
                try:
                    registration = self.client.register_node(token, report, node_id=known_id)
                except RequestRefused:
                    if not known_id:
                        raise
                    # The old node is gone or belongs to someone else: register a new one.
                    logger.info("Re-registering node %s was refused; registering anew", known_id)
                    known_id = ""
                    registration = self.client.register_node(token, report)
            except CoordinatorUnreachable as exc:
                self._wait_offline(exc, backoff)
                continue
            except CoordinatorError as exc:
                raise _Fatal(exc.message) from exc
            try:
                self.identity.save(registration.node_id, registration.credential)
            except (CredentialStoreError, WorkerConfigError) as exc:
                raise _Fatal(str(exc)) from exc
            self.client.set_node_credential(registration.credential)
            with self._lock:
                self._node_id = registration.node_id
                self._offline_message = ""
            self._emit(Registered(registration.node_id, registration.message))
            self._refresh_state()
            return

    def _safe_node_id(self) -> str:
        try:
            return self.identity.node_id
        except WorkerConfigError:
            return ""

    def _start_helpers(self) -> None:
        self._logs.start()
        self._results.start()
        heartbeat = threading.Thread(
            target=self._heartbeat_loop, name="hivemind-heartbeat", daemon=True
        )
        with self._lock:
            self._threads["heartbeat"] = heartbeat
        heartbeat.start()

    def _poll_loop(self) -> None:
        backoff = Backoff()
        while True:
            self._refresh_state()
            with self._lock:
                if self._stopping:
                    return
                if self._paused or self._free_slots() <= 0:
                    self._changed.wait()
                    continue
            limits = self.limits
            free_cpu, free_memory, free_gpus = self._free_resources(limits)
            if free_cpu <= 0 or free_memory <= 0:
                self._sleep(DEFAULT_HEARTBEAT_S)
                continue
            docker = self._docker_status()
            started = time.monotonic()
            # Results that just finished go with this poll (one call, not two). Then it does not wait
            # for work, so that their answers come back now; the next poll waits.
            carried = self._results.take(RESULT_BATCH_MAX) if self._carry_results else []
            try:
                result = self.client.poll(
                    max_tasks=self._free_slots(),
                    free_cpu_cores=free_cpu,
                    free_memory_gb=free_memory,
                    free_gpus=free_gpus,
                    wait_s=0.0 if carried else self.poll_wait_s,
                    docker_available=docker.available,
                    allow_network=limits.allow_network,
                    should_abort=self._poll_should_abort,
                    results=[report for _, report in carried],
                )
            except CoordinatorUnreachable as exc:
                self._results.give_back(carried)
                self._wait_offline(exc, backoff)
                continue
            except NotAuthenticated as exc:
                self._results.give_back(carried)
                self._credential_refused(exc)
                continue
            except CoordinatorError as exc:
                self._results.give_back(carried)
                if carried and not exc.transient:
                    continue  # refused for a result: the reporter sends them one by one; poll again
                delay = backoff.next_delay()
                self._emit(Error(f"{exc.message.rstrip('.')}; trying again in {delay:.0f} s."))
                self._sleep(delay)
                continue
            if carried:
                self._settle_carried(carried, result)
            backoff.reset()
            self._set_online()
            if result.heartbeat_interval_s > 0:
                with self._lock:
                    self._heartbeat_s = float(result.heartbeat_interval_s)
            for lease in result.leases:
                self._accept(lease, limits)
            if (
                not result.leases
                and not carried
                and time.monotonic() - started < MIN_POLL_INTERVAL_S
            ):
                self._sleep(MIN_POLL_INTERVAL_S)

    def _settle_carried(
        self, carried: list[tuple[_LeaseRun, TaskReport]], result: PollResult
    ) -> None:
        """Settle the results a poll carried with its answers; give the unanswered ones back to the
        reporter (recorded or not: a repeat is answered ``duplicate``). A coordinator that answered none
        of them predates results in polls (it ignored them): stop sending them with polls."""
        answered = {o.lease_id: o for o in result.outcomes} if result.answered else {}
        delivered = [(run, report) for run, report in carried if run.lease_id in answered]
        self._results.settle(delivered, [answered[run.lease_id] for run, _ in delivered])
        self._results.give_back([item for item in carried if item[0].lease_id not in answered])
        if result.answered and not result.outcomes:
            logger.info("The coordinator does not take results with polls; reporting them apart")
            self._carry_results = False

    def _poll_should_abort(self) -> bool:
        with self._lock:
            return self._stopping or self._paused

    def _credential_refused(self, exc: NotAuthenticated) -> None:
        logger.warning("The coordinator refused the node credential: %s", exc.message)
        self._emit(
            Error(
                "The coordinator no longer accepts this computer's credential (it may have been "
                "revoked); registering again."
            )
        )
        try:
            self.identity.forget_credential()
        except CredentialStoreError as store_exc:
            raise _Fatal(str(store_exc)) from store_exc
        self.client.set_node_credential("")
        self._register()

    def _wait_offline(self, exc: CoordinatorUnreachable, backoff: Backoff) -> None:
        delay = backoff.next_delay()
        with self._lock:
            self._offline_message = exc.retry_message(delay)
        self._refresh_state()
        self._sleep(delay)

    def _set_online(self) -> None:
        with self._lock:
            was_offline = bool(self._offline_message)
            self._offline_message = ""
        if was_offline:
            logger.info("The coordinator at %s answers again", self.client.target)
        self._refresh_state()

    def _sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less when the worker is stopped meanwhile."""
        deadline = time.monotonic() + seconds
        with self._lock:
            while not self._stopping and (remaining := deadline - time.monotonic()) > 0:
                self._changed.wait(remaining)

    def _is_stopping(self) -> bool:
        with self._lock:
            return self._stopping

    # -- capacity ------------------------------------------------------------------------------

    def _free_slots(self) -> int:
        with self._lock:
            busy = sum(1 for run in self._runs.values() if not run.reporting)
            return max(0, self._limits.slots - busy)

    def _caps(self, limits: WorkerLimits) -> tuple[float, float]:
        host_cores = float(psutil.cpu_count(logical=True) or 1)
        host_memory = psutil.virtual_memory().total / GIB
        cores = min(limits.max_cores, host_cores) if limits.max_cores else host_cores
        memory = min(limits.max_memory_gb, host_memory) if limits.max_memory_gb else host_memory
        return cores, memory

    def _free_resources(self, limits: WorkerLimits) -> tuple[float, float, int]:
        cap_cores, cap_memory = self._caps(limits)
        with self._lock:
            running = [run for run in self._runs.values() if not run.reporting]
        used_cores = sum(run.cpu_cores for run in running)
        used_memory = sum(run.memory_gb for run in running)
        used_gpus = sum(run.gpus for run in running)
        available = psutil.virtual_memory().available / GIB
        free_memory = min(cap_memory - used_memory, available)
        gpus = self._gpus() if limits.use_gpu else 0
        return (
            round(max(0.0, cap_cores - used_cores), 3),
            round(max(0.0, free_memory), 3),
            max(0, gpus - used_gpus),
        )

    def _gpus(self) -> int:
        if self._gpu_count is None:
            self._gpu_count = self._gpu_count_probe()
        return self._gpu_count

    def _docker_status(self) -> DockerStatus:
        now = time.monotonic()
        if self._docker is None or now - self._docker_checked >= DOCKER_RECHECK_S:
            previous = self._docker
            self._docker = self._executor(self.limits.allow_network).status()
            self._docker_checked = now
            if not self._docker.available and (previous is None or previous.available):
                self._emit(Error(self._docker.message))
            self._refresh_state()
        return self._docker

    def _executor(self, allow_network: bool) -> TaskExecutor:
        with self._lock:
            executor = self._executors.get(allow_network)
            if executor is None:
                executor = self._executors[allow_network] = self._executor_factory(allow_network)
            return executor

    def _docker_executor(self, allow_network: bool) -> TaskExecutor:
        return DockerExecutor(self.work_dir / "exec", allow_network=allow_network)

    # -- leases --------------------------------------------------------------------------------

    def _accept(self, lease: Lease, limits: WorkerLimits) -> None:
        cap_cores, _ = self._caps(limits)
        run = _LeaseRun(
            lease,
            cpu_cores=min(lease.resources.cpu_cores or DEFAULT_CPU_CORES, cap_cores),
            memory_gb=lease.resources.memory_gb or DEFAULT_MEMORY_GB,
            gpus=lease.resources.gpu_count,
        )
        with self._lock:
            self._runs[lease.lease_id] = run
            stopping, paused = self._stopping, self._paused
        if stopping or paused:
            # Leased as the owner paused or stopped: hand it straight back rather than let it expire.
            verb = "stopped" if stopping else "paused"
            self._finish(
                run, self._not_run(run, f"The volunteer {verb} HiveMind before it started.")
            )
            return
        thread = threading.Thread(
            target=self._run_lease,
            args=(run,),
            name=f"hivemind-lease-{lease.lease_id[:8]}",
            daemon=True,
        )
        with self._lock:
            self._threads[lease.lease_id] = thread
        self._emit(
            TaskStarted(
                lease.lease_id,
                lease.task_id,
                lease.job_id,
                lease.image,
                timeout_s=lease.timeout_s or DEFAULT_TIMEOUT_S,
                cpu_cores=run.cpu_cores,
            )
        )
        self._refresh_state()
        thread.start()

    def _run_lease(self, run: _LeaseRun) -> None:
        lease_dir = self.work_dir / "leases" / run.lease_id
        report: TaskReport | None
        try:
            report = self._execute(run, lease_dir)
        except Exception as exc:
            logger.exception("Lease %s failed in the worker", run.lease_id)
            report = TaskReport(
                run.lease_id,
                "error",
                exit_code=NO_EXIT_CODE,
                reason=f"The worker failed while handling the task ({exc!r}).",
            )
        finally:
            shutil.rmtree(lease_dir, ignore_errors=True)
            if run.result is not None and run.result.results_dir is not None:
                shutil.rmtree(run.result.results_dir, ignore_errors=True)
        self._finish(run, report)

    def _execute(self, run: _LeaseRun, lease_dir: Path) -> TaskReport | None:
        """Inputs, container, outputs; returns the report, or None when there is nothing to report."""
        lease = run.lease
        limits = self.limits
        refusal = self._refusal(lease, limits)
        if refusal:
            return TaskReport(lease.lease_id, "error", exit_code=NO_EXIT_CODE, reason=refusal)
        inputs: list[InputFile] = []
        for index, item in enumerate(lease.inputs):
            dest = lease_dir / "inputs" / f"{index}-{item.sha256[:16]}"
            problem = self._download(run, item.sha256, dest)
            if run.cancel.is_set():
                return self._not_run(run, "")
            if problem is not None:
                return TaskReport(lease.lease_id, "error", exit_code=NO_EXIT_CODE, reason=problem)
            inputs.append(InputFile(path=item.path, source=dest))
        cap_cores, _ = self._caps(limits)
        cpu = min(lease.resources.cpu_cores or DEFAULT_CPU_CORES, cap_cores)
        memory_gb = lease.resources.memory_gb or DEFAULT_MEMORY_GB
        with self._lock:
            run.cpu_cores = cpu
        spec = ExecSpec(
            image=lease.image,
            command=list(lease.command),
            env=dict(lease.env),
            inputs=inputs,
            output_paths=list(lease.output_paths),
            cpu_cores=cpu,
            memory_bytes=int(memory_gb * GIB),
            gpu_count=lease.resources.gpu_count,
            network=lease.network_access,
            timeout_s=float(lease.timeout_s or DEFAULT_TIMEOUT_S),
            max_output_bytes=lease.max_output_bytes or DEFAULT_MAX_OUTPUT_BYTES,
        )
        if run.cancel.is_set():
            return self._not_run(run, "")
        result = self._executor(limits.allow_network).run(
            spec,
            on_log=lambda stream, text: self._on_log(run, stream, text),
            cancel=run.cancel,
        )
        run.result = result
        if result.status == "error":
            self._docker_checked = 0.0  # Docker may have gone: check again before the next poll
        if run.cancelled_by == "coordinator":
            return None
        if run.cancelled_by == "owner" or result.status == "cancelled":
            return self._report(run, result, "cancelled", run.cancel_reason or result.reason)
        if result.status == "error":
            return self._report(run, result, "error", result.reason)
        return self._upload(run, result)

    def _refusal(self, lease: Lease, limits: WorkerLimits) -> str:
        """Why this computer will not run ``lease`` under the owner's current limits ("" if it will)."""
        _, cap_memory = self._caps(limits)
        if lease.network_access and not limits.allow_network:
            return (
                "The task needs network access, which the volunteer turned off on this computer; "
                "it will run elsewhere."
            )
        if lease.resources.gpu_count > 0 and not limits.use_gpu:
            return "The task needs a GPU, which the volunteer turned off; it will run elsewhere."
        if lease.resources.memory_gb > cap_memory:
            return (
                f"The task needs {lease.resources.memory_gb:g} GB of memory, more than the "
                f"{cap_memory:g} GB the volunteer allows; it will run elsewhere."
            )
        return ""

    def _download(self, run: _LeaseRun, sha256: str, dest: Path) -> str | None:
        """Fetch one input (sha256-checked); returns why it failed, or None once it is in place."""
        try:
            self._retrying(
                run,
                f"input {sha256}",
                lambda: self.client.download_input(run.lease_id, sha256, dest),
            )
        except _GaveUp as exc:
            return str(exc) or "The task was stopped before its inputs arrived."
        return None

    def _retrying(self, run: _LeaseRun, what: str, call: Callable[[], T]) -> T:
        """``call()`` until it succeeds: network loss is retried while the lease lasts, other transient
        failures TRANSIENT_ATTEMPTS times. Raises :class:`_GaveUp` (empty when the lease was cancelled)."""
        backoff = Backoff(maximum_s=30.0)
        failures = 0
        while not run.cancel.is_set():
            try:
                return call()
            except CoordinatorUnreachable as exc:
                logger.info("Lease %s, %s: %s", run.lease_id, what, exc.message)
            except CoordinatorError as exc:
                failures += 1
                logger.warning("Lease %s, %s: %s", run.lease_id, what, exc.message)
                if not exc.transient or failures >= TRANSIENT_ATTEMPTS:
                    raise _GaveUp(exc.message) from exc
            run.cancel.wait(backoff.next_delay())
        raise _GaveUp("")

    def _upload(self, run: _LeaseRun, result: ExecResult) -> TaskReport | None:
        """Upload the stdout and the outputs, then build the report (None: nothing to report)."""
        outputs: list[UploadedFile] = []
        try:
            stdout = self._upload_one(run, "@stdout", result.stdout, "")
            for output in result.outputs:
                outputs.append(self._upload_one(run, output.path, output.local_path, output.sha256))
        except _GaveUp as exc:
            if run.cancel.is_set():
                return self._not_run(run, "")
            # Reported as a run error, so the coordinator places the task elsewhere at once.
            return self._report(
                run, result, "error", f"The task's results could not be uploaded: {exc}"
            )
        return self._report(
            run, result, result.status, result.reason, stdout.sha256, tuple(outputs)
        )

    def _upload_one(
        self, run: _LeaseRun, path: str, source: Path | bytes, sha256: str
    ) -> UploadedFile:
        return self._retrying(
            run,
            f"output {path}",
            lambda: self.client.upload_output(run.lease_id, path, source, expected_sha256=sha256),
        )

    @staticmethod
    def _report(
        run: _LeaseRun,
        result: ExecResult,
        status: str,
        reason: str,
        stdout_sha256: str = "",
        outputs: tuple[UploadedFile, ...] = (),
    ) -> TaskReport:
        usage = TaskUsage(
            cpu_seconds=result.usage.cpu_seconds,
            peak_memory_bytes=result.usage.peak_memory_bytes,
            wall_seconds=result.usage.wall_seconds,
        )
        return TaskReport(
            lease_id=run.lease_id,
            status=status,
            exit_code=result.exit_code if result.exit_code is not None else NO_EXIT_CODE,
            stdout_sha256=stdout_sha256,
            outputs=outputs,
            usage=usage,
            reason=reason,
        )

    def _not_run(self, run: _LeaseRun, reason: str) -> TaskReport | None:
        """The report for a lease stopped before its container ran (None if the coordinator cancelled)."""
        if run.cancelled_by == "coordinator":
            return None
        return TaskReport(
            run.lease_id,
            "cancelled",
            exit_code=NO_EXIT_CODE,
            reason=run.cancel_reason or reason or "The task was stopped on this computer.",
        )

    def _on_log(self, run: _LeaseRun, stream: str, text: str) -> None:
        self._logs.add(LogLine(run.lease_id, stream, text))
        self._emit(TaskLog(run.lease_id, stream, text))

    def _cancel(self, run: _LeaseRun, by: Literal["coordinator", "owner"], reason: str) -> None:
        with self._lock:
            if run.cancelled_by is None:
                run.cancelled_by = by
                run.cancel_reason = reason
        run.cancel.set()

    def _finish(self, run: _LeaseRun, report: TaskReport | None) -> None:
        """The task is over here: report it (its lease stays renewed until then) and free its slot. The
        result is queued before the slot frees, so the poll that slot makes can take it along, and after
        the task's last log lines are sent (a result can travel fast)."""
        with self._lock:
            run.reporting = True
        if report is not None:
            self._logs.flush(LOG_FLUSH_WAIT_S)
            self._results.submit(run, report)
        with self._lock:
            self._threads.pop(run.lease_id, None)
            self._changed.notify_all()
        if report is None:
            self._forget(run, None, "not_reported", run.cancel_reason)
        self._refresh_state()

    def _on_reported(
        self, run: _LeaseRun, report: TaskReport | None, outcome: str, reason: str
    ) -> None:
        self._forget(run, report, outcome, reason)

    def _forget(
        self, run: _LeaseRun, report: TaskReport | None, outcome: str, outcome_reason: str
    ) -> None:
        with self._lock:
            self._runs.pop(run.lease_id, None)
            self._changed.notify_all()
        result = run.result
        status = report.status if report else (result.status if result else "cancelled")
        self._emit(
            TaskFinished(
                lease_id=run.lease_id,
                task_id=run.lease.task_id,
                job_id=run.lease.job_id,
                status=status,
                exit_code=result.exit_code if result else None,
                reason=report.reason if report else run.cancel_reason,
                outcome=outcome,
                outcome_reason=outcome_reason,
                usage=report.usage if report else TaskUsage(),
            )
        )
        self._refresh_state()

    # -- heartbeat thread ----------------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        while not self._heartbeat_stop.is_set():
            with self._lock:
                lease_ids = list(self._runs)
                status = "paused" if self._paused else ("busy" if lease_ids else "idle")
                interval = self._heartbeat_s
            try:
                reply = self.client.heartbeat(lease_ids, self._usage.sample(), status)
            except CoordinatorUnreachable as exc:
                # Noticed here too, for when all slots are busy and the poll loop is not polling.
                logger.info("Heartbeat: %s", exc.message)
                with self._lock:
                    # The poll loop's own message (with its backoff) wins when it has one.
                    self._offline_message = self._offline_message or exc.retry_message(interval)
                self._refresh_state()
            except CoordinatorError as exc:
                # A refused credential is handled by the poll loop, which re-registers.
                logger.warning("Heartbeat refused: %s", exc.message)
            else:
                self._set_online()
                stop = reply.cancelled_lease_ids | reply.unknown_lease_ids
                with self._lock:
                    runs = [self._runs[i] for i in stop if i in self._runs]
                for run in runs:
                    if run.reporting and run.lease_id in reply.unknown_lease_ids:
                        continue  # finished; the report is on its way and says what the lease was
                    reason = (
                        "The coordinator cancelled this task."
                        if run.lease_id in reply.cancelled_lease_ids
                        else "The coordinator no longer holds this task's lease for this computer."
                    )
                    logger.info("Lease %s: %s", run.lease_id, reason)
                    self._cancel(run, "coordinator", reason)
            self._heartbeat_stop.wait(interval)

    # -- shutdown ------------------------------------------------------------------------------

    def _shutdown(self) -> None:
        """Wait for the lease threads, deliver the last logs and results, then end the helpers."""
        with self._lock:
            self._stopping = True
            self._changed.notify_all()
            leases = [t for name, t in self._threads.items() if name != "heartbeat"]
        self._refresh_state()
        for thread in leases:
            thread.join()
        self._logs.stop(FLUSH_ON_STOP_S)
        self._results.stop(FLUSH_ON_STOP_S)
        self._heartbeat_stop.set()
        with self._lock:
            heartbeat = self._threads.pop("heartbeat", None)
        if heartbeat is not None:
            heartbeat.join()
        with self._lock:
            fatal = self._fatal_message
        if not fatal:
            self._set_state("stopped", "Stopped.")
        self._stopped.set()

    # -- state and events ----------------------------------------------------------------------

    def _refresh_state(self) -> None:
        """Derive the state from the facts and announce it if it changed.

        Lock order: ``_state_lock`` (held while announcing, so announcements keep their order) before
        ``_lock``; nothing holds ``_lock`` while announcing.
        """
        with self._state_lock:
            with self._lock:
                derived = self._derived_state()
            if derived is not None:
                self._set_state(*derived)

    def _derived_state(self) -> tuple[WorkerState, str] | None:
        """None keeps the current state: "error" and "stopped" are final, and until the node is
        registered only "offline" replaces the explicit "starting"/"registering"."""
        if self._state is not None and self._state[0] in ("error", "stopped"):
            return None
        running = sum(1 for run in self._runs.values() if not run.reporting)
        if self._offline_message:
            return "offline", self._offline_message
        if not self._node_id:
            return None
        if self._stopping:
            return (
                ("working", f"Stopping: waiting for {running} task(s) to end.") if running else None
            )
        if self._paused:
            finishing = f"; {running} task(s) finishing" if running else ""
            return "paused", f"Paused: taking no new work{finishing}."
        if running:
            return "working", f"Running {running} task(s)."
        if self._docker is not None and not self._docker.available:
            return "idle", self._docker.message
        return "idle", "Waiting for work."

    def _set_state(self, state: WorkerState, message: str) -> None:
        with self._state_lock:
            with self._lock:
                if self._state == (state, message):
                    return
                self._state = (state, message)
            logger.info("Worker %s: %s", state, message)
            self._emit(StateChanged(state, message))

    def _emit(self, event: WorkerEvent) -> None:
        try:
            self._on_event(event)
        except Exception:
            logger.exception("A worker event handler failed on %r", event)


# --- helper threads --------------------------------------------------------------------------------


class _LogShipper:
    """Sends log lines in batches: after LOG_FLUSH_S, or at once when LOG_BATCH_LINES are waiting.

    Logs are best effort: while the coordinator is unreachable the newest LOG_BUFFER_LINES are kept.
    """

    def __init__(self, client: CoordinatorClient) -> None:
        self.client = client
        self._queue: queue.Queue[LogLine | threading.Event | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="hivemind-logs", daemon=True)
        self._stop_by = 0.0

    def start(self) -> None:
        self._thread.start()

    def add(self, line: LogLine) -> None:
        self._queue.put(line)

    def flush(self, timeout_s: float) -> None:
        """Send the lines added so far now, and wait up to ``timeout_s`` until they are sent (a task's
        last lines then reach the coordinator before its result does)."""
        if not self._thread.is_alive():
            return
        sent = threading.Event()
        self._queue.put(sent)
        sent.wait(timeout_s)

    def stop(self, flush_timeout_s: float) -> None:
        if not self._thread.is_alive():
            return
        self._stop_by = time.monotonic() + flush_timeout_s
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        pending: list[LogLine] = []
        flush_at: float | None = None  # when the oldest pending line is due
        failing = False  # the last send failed: wait for flush_at even when a batch is full
        backoff = Backoff(initial_s=LOG_FLUSH_S, maximum_s=30.0)
        stopping = False
        waiting: list[threading.Event] = []  # flush() callers, told once what they added is sent
        while True:
            if not stopping:
                timeout = None if flush_at is None else max(0.0, flush_at - time.monotonic())
                try:
                    item = self._queue.get(timeout=timeout)
                except queue.Empty:
                    pass
                else:
                    if item is None:
                        stopping = True
                    elif isinstance(item, threading.Event):
                        waiting.append(item)
                        if failing or not pending:
                            item.set()  # nothing to send, or offline: do not hold the result up
                            waiting.remove(item)
                        else:
                            flush_at = time.monotonic()
                    else:
                        pending.append(item)
                        if flush_at is None:
                            flush_at = time.monotonic() + LOG_FLUSH_S
            now = time.monotonic()
            full = len(pending) >= LOG_BATCH_LINES and not failing
            due = flush_at is not None and now >= flush_at
            if pending and (stopping or full or due):
                sent = self._send(pending)
                for event in waiting:
                    event.set()
                waiting.clear()
                if sent:
                    failing, flush_at = False, None
                    backoff.reset()
                else:
                    failing, flush_at = True, now + backoff.next_delay()
                    if len(pending) > LOG_BUFFER_LINES:
                        logger.warning("Dropping %d log lines", len(pending) - LOG_BUFFER_LINES)
                        del pending[: len(pending) - LOG_BUFFER_LINES]
            if stopping:
                if not pending or now >= self._stop_by:
                    if pending:
                        logger.warning(
                            "%d log lines were not delivered before stopping", len(pending)
                        )
                    return
                time.sleep(min(1.0, max(0.0, self._stop_by - now)))

    def _send(self, pending: list[LogLine]) -> bool:
        """Send what is pending (in batches); True when the list is empty afterwards."""
        while pending:
            batch = pending[:LOG_BATCH_LINES]
            try:
                self.client.append_logs(batch)
            except CoordinatorUnreachable:
                return False
            except CoordinatorError as exc:
                logger.warning("%d log lines were refused: %s", len(batch), exc.message)
            del pending[: len(batch)]
        return True


class _ResultReporter:
    """Delivers task reports. A result waits RESULT_BATCH_WINDOW_S after it arrives: if the poll loop asks
    for work meanwhile, it takes the result along in its poll (:meth:`take`), one call instead of two;
    otherwise the results still waiting go out together in one ReportResults, retried with backoff while
    the coordinator is unreachable. Results a poll could not deliver come back here (:meth:`give_back`)."""

    def __init__(
        self,
        client: CoordinatorClient,
        on_outcome: Callable[[_LeaseRun, TaskReport | None, str, str], None],
    ) -> None:
        self.client = client
        self._on_outcome = on_outcome
        self._cond = threading.Condition()
        self._open: collections.deque[tuple[_LeaseRun, TaskReport]] = collections.deque()
        """Waiting, not claimed: the poll loop may take them."""
        self._returned: list[tuple[_LeaseRun, TaskReport]] = []
        """Given back by the poll loop: only this reporter sends them."""
        self._stop_requested = False
        self._thread = threading.Thread(target=self._run, name="hivemind-results", daemon=True)
        self._stop_by: float | None = None
        self._wake = threading.Event()
        self._faults = 0

    def start(self) -> None:
        self._thread.start()

    def submit(self, run: _LeaseRun, report: TaskReport) -> None:
        if not self._thread.is_alive():
            # The loop never got going (or is gone): nobody will deliver it.
            self._on_outcome(run, report, "not_reported", "The worker stopped before reporting.")
            return
        with self._cond:
            self._open.append((run, report))
            self._cond.notify_all()

    def take(self, limit: int) -> list[tuple[_LeaseRun, TaskReport]]:
        """Results nobody is sending yet, for the poll loop to send with its poll (none once stopping)."""
        with self._cond:
            if self._stop_requested:
                return []
            return [self._open.popleft() for _ in range(min(limit, len(self._open)))]

    def give_back(self, taken: list[tuple[_LeaseRun, TaskReport]]) -> None:
        """Results a poll did not deliver (or whose delivery is unknown: a repeat is answered
        ``duplicate``): this reporter sends them."""
        if not taken:
            return
        if not self._thread.is_alive():
            for run, report in taken:
                self._on_outcome(
                    run, report, "not_reported", "The worker stopped before reporting."
                )
            return
        with self._cond:
            self._returned.extend(taken)
            self._cond.notify_all()
        self._wake.set()

    def settle(
        self, taken: list[tuple[_LeaseRun, TaskReport]], outcomes: list[ReportOutcome]
    ) -> None:
        """Results a poll delivered, with the coordinator's answers."""
        self._settle(taken, outcomes)

    def stop(self, flush_timeout_s: float) -> None:
        if not self._thread.is_alive():
            return
        self._stop_by = time.monotonic() + flush_timeout_s
        with self._cond:
            self._stop_requested = True
            self._cond.notify_all()
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        pending: list[tuple[_LeaseRun, TaskReport]] = []
        backoff = Backoff(maximum_s=30.0)
        stopping = False
        while True:
            stopping = self._claim(pending, wait=not pending and not stopping)
            if pending:
                if self._send(pending):
                    backoff.reset()
                elif self._stop_by is None or time.monotonic() < self._stop_by:
                    delay = backoff.next_delay()
                    if self._stop_by is not None:
                        delay = min(delay, max(0.0, self._stop_by - time.monotonic()))
                    self._wake.wait(delay)
                    self._wake.clear()
                    continue
            if stopping and (not pending or time.monotonic() >= (self._stop_by or 0.0)):
                with self._cond:
                    pending.extend(self._returned)
                    pending.extend(self._open)
                    self._returned.clear()
                    self._open.clear()
                for run, report in pending:
                    self._on_outcome(
                        run, report, "not_reported", "The coordinator could not be reached."
                    )
                return

    def _claim(self, pending: list[tuple[_LeaseRun, TaskReport]], wait: bool) -> bool:
        """Claim results to send: with ``wait``, block until one arrives, then leave the poll loop the batch
        window to take it along. Returns whether a stop was requested."""
        with self._cond:
            if wait:
                while not self._open and not self._returned and not self._stop_requested:
                    self._cond.wait()
            if self._open and not self._returned and not self._stop_requested:
                window_end = time.monotonic() + RESULT_BATCH_WINDOW_S
                while not self._stop_requested and not self._returned:
                    remaining = window_end - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
            pending.extend(self._returned)
            self._returned.clear()
            while self._open and len(pending) < RESULT_BATCH_MAX:
                pending.append(self._open.popleft())
            return self._stop_requested

    def _send(self, pending: list[tuple[_LeaseRun, TaskReport]]) -> bool:
        """Report everything pending; True when done (delivered or refused for good)."""
        batch = pending[:RESULT_BATCH_MAX]
        try:
            outcomes = self.client.report_results([report for _, report in batch])
        except CoordinatorUnreachable as exc:
            logger.info("Reporting %d result(s): %s", len(batch), exc.message)
            return False
        except NotAuthenticated as exc:
            # The poll loop re-registers; the same node id keeps these leases meaningful.
            logger.warning("Reporting results: %s", exc.message)
            return False
        except CoordinatorError as exc:
            if exc.transient and self._faults < TRANSIENT_ATTEMPTS - 1:
                self._faults += 1
                logger.warning("Reporting %d result(s): %s", len(batch), exc.message)
                return False
            self._faults = 0
            if len(batch) > 1:
                # The coordinator checks a batch all or nothing: one bad lease must not sink the rest.
                logger.info("A batch of %d results was refused; reporting one by one", len(batch))
                for _ in batch:
                    if not self._send_one(pending):
                        return False
                return not pending
            logger.error("The coordinator refused a result: %s", exc.message)
            run, report = batch[0]
            self._on_outcome(run, report, "rejected", exc.message)
            del pending[:1]
            return not pending
        self._faults = 0
        self._settle(batch, outcomes)
        del pending[: len(batch)]
        return not pending

    def _send_one(self, pending: list[tuple[_LeaseRun, TaskReport]]) -> bool:
        """Report ``pending[0]`` alone; False while the coordinator cannot be reached."""
        run, report = pending[0]
        try:
            outcomes = self.client.report_results([report])
        except (CoordinatorUnreachable, NotAuthenticated):
            return False
        except CoordinatorError as exc:
            self._on_outcome(run, report, "rejected", exc.message)
        else:
            self._settle([(run, report)], outcomes)
        del pending[:1]
        return True

    def _settle(
        self, batch: list[tuple[_LeaseRun, TaskReport]], outcomes: list[ReportOutcome]
    ) -> None:
        answered = {outcome.lease_id: outcome for outcome in outcomes}
        for run, report in batch:
            outcome = answered.get(run.lease_id)
            if outcome is None:
                self._on_outcome(run, report, "unanswered", "")
            else:
                self._on_outcome(run, report, outcome.outcome, outcome.reason)


def _detect_gpu_count() -> int:
    from client_gui.engine.gpu import detect_gpus

    return len(detect_gpus().gpus)
