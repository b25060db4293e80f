"""The engine (:class:`~client_gui.engine.worker.Worker`) as Qt signals and slots.

The worker calls back from its own threads; every event is handed to the GUI thread through a queued
signal. The owner's controls (pause, limits, start at login) and the work policy (idle, battery,
schedule) are applied here. Anything that may block (stopping the worker, a benchmark, asking the
policy's OS sources) runs on :class:`~client_gui.ui.background.Background`, so no slot takes long.

The owner's own pause and the policy's pause are kept apart: resuming by hand does not override "on
battery", and the policy lifting its pause does not resume a computer the owner paused.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal

from client_gui.engine.benchmark import BenchmarkReport, run_benchmark
from client_gui.engine.coordinator_client import CoordinatorClient
from client_gui.engine.gpu import GpuInfo
from client_gui.engine.identity import default_config_dir
from client_gui.engine.worker import (
    BenchmarkFinished,
    Error,
    NodeIdentity,
    Registered,
    StateChanged,
    TaskExecutor,
    TaskFinished,
    TaskLog,
    TaskStarted,
    Worker,
    WorkerEvent,
    WorkerLimits,
)
from client_gui.ui.background import Background
from client_gui.ui.session import AppSession

if TYPE_CHECKING:
    from client_gui.engine.policy import WorkPolicy
    from client_gui.engine.preferences import Preferences
    from client_gui.platform.autostart import Autostart

logger = logging.getLogger(__name__)

POLICY_INTERVAL_MS = 3_000
HISTORY_FILE = "tasks.json"
BENCHMARK_FILE = "benchmark.json"
HISTORY_KEEP = 200
LOG_TAIL_LINES = 500
LOG_FLUSH_MS = 100
STOP_TIMEOUT_S = 30.0
TRAY_STATES = ("working", "idle", "paused", "offline", "error")
CHECKING_POLICY = "Checking whether HiveMind may work now."
POLICY_FAILED = (
    "HiveMind could not tell whether it may work now (see its log); it asks again in a few seconds."
)


@dataclass
class WorkerOptions:
    """How the engine's worker is built. The defaults are the real ones; tests shorten the waits and
    the benchmark."""

    benchmark: Callable[[], BenchmarkReport] = run_benchmark
    poll_wait_s: float = 20.0
    heartbeat_interval_s: float = 5.0
    gpu_count: Callable[[], int] | None = None
    executor_factory: Callable[[bool], TaskExecutor] | None = None


@dataclass
class CurrentTask:
    """A task running on this computer now, with the tail of its log."""

    lease_id: str
    task_id: str
    job_id: str
    image: str
    timeout_s: int
    cpu_cores: float
    started_monotonic: float
    log: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_TAIL_LINES))

    def elapsed_s(self, now: float | None = None) -> float:
        return max(0.0, (now if now is not None else time.monotonic()) - self.started_monotonic)


@dataclass(frozen=True)
class TaskRecord:
    """A past task, as the Tasks view's history lists it."""

    finished_at: str
    """ISO 8601, UTC."""
    task_id: str
    job_id: str
    status: str
    outcome: str
    reason: str = ""


def tray_state(state: str) -> str:
    """One of the five tray icons for an engine state."""
    if state in TRAY_STATES:
        return state
    if state == "stopped":
        return "paused"
    return "idle"  # starting, registering


def tighter(new: WorkerLimits, old: WorkerLimits) -> bool:
    """Whether ``new`` lets tasks use less than ``old`` in any respect."""

    def cap(value: float | None) -> float:
        return float("inf") if value is None else value

    return (
        cap(new.max_cores) < cap(old.max_cores)
        or cap(new.max_memory_gb) < cap(old.max_memory_gb)
        or (old.use_gpu and not new.use_gpu)
        or new.slots < old.slots
    )


def autostart_command(config_dir: Path | None = None) -> list[str]:
    """How the OS should start the app at login (with ``--config-dir`` when it is not the default)."""
    if getattr(sys, "frozen", False):
        command = [sys.executable, "gui"]
    elif launcher := shutil.which("hivemind"):
        command = [launcher, "gui"]
    else:
        command = [sys.executable, "-m", "coordinator", "gui"]
    if config_dir is not None and config_dir.resolve() != default_config_dir().resolve():
        command += ["--config-dir", str(config_dir.resolve())]
    return command


def report_to_json(report: BenchmarkReport) -> dict[str, Any]:
    return dataclasses.asdict(report)


def report_from_json(data: dict[str, Any]) -> BenchmarkReport:
    known = {f.name for f in dataclasses.fields(BenchmarkReport)}
    values = {k: v for k, v in data.items() if k in known}
    values["gpus"] = [GpuInfo(**gpu) for gpu in values.get("gpus", [])]
    return BenchmarkReport(**values)


class EngineController(QObject):
    """Owns the worker; its events arrive on the GUI thread as these signals."""

    state_changed = Signal(str, str)
    registered = Signal(object)
    task_started = Signal(object)
    task_log = Signal(object)
    task_logs = Signal(object)
    """The same lines in batches (a list of TaskLog, at most every ``LOG_FLUSH_MS``): a chatty task
    must not flood the GUI thread with one signal per line."""
    task_finished = Signal(object)
    error = Signal(str)
    benchmark_finished = Signal(object)
    """A :class:`BenchmarkReport` (at registration or after :meth:`rerun_benchmark`)."""
    benchmark_running = Signal()
    """:meth:`rerun_benchmark` started."""
    benchmark_done = Signal(str)
    """:meth:`rerun_benchmark` ended: "" when measured and registered again, else a sentence."""
    stopped = Signal()
    _event = Signal(object)
    _logs_waiting = Signal()

    def __init__(
        self,
        session: AppSession,
        background: Background,
        preferences: Callable[[], Preferences],
        *,
        config_dir: Path,
        policy: WorkPolicy | None = None,
        autostart: Autostart | None = None,
        options: WorkerOptions | None = None,
        policy_interval_ms: int = POLICY_INTERVAL_MS,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.session = session
        self.background = background
        self._preferences = preferences
        self.config_dir = config_dir
        self.policy = policy
        self.autostart = autostart
        self.options = options or WorkerOptions()
        self.worker: Worker | None = None
        self._client: CoordinatorClient | None = None
        self._state = "stopped"
        self._worker_message = "Not started."
        self._message = "Not started."
        self.node_id = ""
        self.manually_paused = False
        self.policy_reason = ""
        self._deciding = False
        self._stopping = False
        self._restart_pending = False
        self._state_shown = ""
        self.current: dict[str, CurrentTask] = {}
        self.history: list[TaskRecord] = self._load_history()
        self._last_benchmark: BenchmarkReport | None = self._load_benchmark()
        # Queued even when emitted on the GUI thread (pause() and resume() announce the new state
        # from there): one queue keeps the worker's announcements in the order it made them.
        self._event.connect(self._on_event, Qt.ConnectionType.QueuedConnection)
        self._log_lock = threading.Lock()
        self._log_buffer: list[TaskLog] = []
        self._logs_waiting.connect(lambda: QTimer.singleShot(LOG_FLUSH_MS, self._flush_logs))
        self._policy_timer = QTimer(self)
        self._policy_timer.setInterval(policy_interval_ms)
        self._policy_timer.timeout.connect(self.check_policy)

    # -- what the views read ---------------------------------------------------------------------

    @property
    def state(self) -> str:
        """The state as shown: an owner or policy pause shows as "paused"."""
        return self._state_shown or self._state

    @property
    def message(self) -> str:
        """The sentence for the status line and the tray."""
        return self._message

    @property
    def paused(self) -> bool:
        return self.manually_paused or bool(self.policy_reason)

    @property
    def last_benchmark(self) -> BenchmarkReport | None:
        return self._last_benchmark

    @property
    def identity(self) -> NodeIdentity:
        return NodeIdentity(
            self.session.store, self.session.target, config_path=self.config_dir / "worker.json"
        )

    # -- slots ------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker (registering this computer first if it must). Returns at once."""
        if self.worker is not None:
            return
        prefs = self._preferences()
        options = self.options
        self._client = CoordinatorClient(self.session.target)
        self.worker = Worker(
            self._client,
            self.identity,
            work_dir=self.config_dir / "work",
            limits=prefs.to_limits(),
            on_event=self._from_worker,
            sign_in=self.session.access_token,
            benchmark=options.benchmark,
            executor_factory=options.executor_factory,
            gpu_count=options.gpu_count,
            poll_wait_s=options.poll_wait_s,
            heartbeat_interval_s=options.heartbeat_interval_s,
        )
        self._stopping = False
        if self.policy is not None and not self.policy_reason:
            # No work before the policy's first answer (idle only, battery, schedule).
            self.policy_reason = CHECKING_POLICY
        if self.paused:
            self.worker.pause()
        self.worker.start()
        if self.policy is not None:
            self._policy_timer.start()
            self.check_policy()

    def stop(self) -> None:
        """Stop the worker in the background (running tasks are stopped and reported); ``stopped``
        is emitted when it has ended."""
        self._restart_pending = False
        self._policy_timer.stop()
        worker, client = self.worker, self._client
        if worker is None or self._stopping:
            if worker is None:
                self.stopped.emit()
            return
        self._stopping = True

        def end() -> None:
            worker.stop(cancel_running=True, timeout=STOP_TIMEOUT_S)
            if client is not None:
                client.close()

        self.background.run(end, lambda _none: self._ended(), lambda _exc: self._ended())

    def restart(self) -> None:
        """Stop the worker and start a fresh one (after an error the person has fixed: Docker started,
        signed in again). Returns at once; ``state_changed`` reports the new worker's progress."""
        if self.worker is None:
            self.start()
            return
        self.stop()
        self._restart_pending = True  # after stop(): a later stop() (quitting) cancels the restart

    def stop_and_wait(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop and block until the worker has ended (shutdown and tests, never a slot)."""
        self._policy_timer.stop()
        worker, client = self.worker, self._client
        if worker is not None:
            worker.stop(cancel_running=True, timeout=timeout_s)
        if client is not None:
            client.close()
        self.worker = None
        self._client = None

    def _ended(self) -> None:
        self.worker = None
        self._client = None
        self._stopping = False
        self.stopped.emit()
        if self._restart_pending:
            self._restart_pending = False
            self.start()

    def pause(self) -> None:
        """The owner's pause: no new work; the running task finishes or stops, as the settings say."""
        self.manually_paused = True
        self._apply_pause()

    def resume(self) -> None:
        """Lift the owner's pause (the policy may still hold work back, and says why)."""
        self.manually_paused = False
        self._apply_pause()

    def apply_preferences(self, prefs: Preferences) -> None:
        """New settings: limits from the next task, the policy at once, start at login in the
        background."""
        if self.worker is not None:
            old, new = self.worker.limits, prefs.to_limits()
            if new != old:
                self.worker.set_limits(new)
                if self._client is not None and tighter(new, old):
                    # A long poll in flight still offers the old, larger resources: ask again.
                    self._client.interrupt_poll()
        autostart = self.autostart
        if autostart is not None:
            wanted = prefs.start_at_login
            config_dir = self.config_dir

            def apply_autostart() -> None:
                if wanted and not autostart.is_enabled():
                    autostart.enable(autostart_command(config_dir))
                elif not wanted and autostart.is_enabled():
                    autostart.disable()

            self.background.run(apply_autostart, None, self._autostart_failed)
        self.check_policy()

    def _autostart_failed(self, exc: Exception) -> None:
        logger.warning("Start at login could not be changed: %r", exc)
        self.error.emit(str(exc) or "Start at login could not be changed on this computer.")

    def rerun_benchmark(self) -> None:
        """Measure this computer again and re-register it with the new figures (in the background)."""
        worker = self.worker
        if worker is None:
            self.benchmark_done.emit(
                "Sign in first: the benchmark runs once this computer is connected."
            )
            return
        self.benchmark_running.emit()

        def failed(exc: Exception) -> None:
            self.benchmark_done.emit(getattr(exc, "message", "") or str(exc))

        self.background.run(
            worker.rerun_benchmark, lambda _report: self.benchmark_done.emit(""), failed
        )

    def check_policy(self) -> None:
        """Ask the work policy (off the GUI thread: its OS sources may be slow) and pause or resume."""
        policy = self.policy
        if policy is None or self._deciding:
            return
        prefs = self._preferences()
        self._deciding = True

        def done(decision: Any) -> None:
            self._deciding = False
            self.policy_reason = "" if decision.allowed else str(decision.reason)
            self._apply_pause()

        def failed(exc: Exception) -> None:
            self._deciding = False
            logger.warning("The work policy could not decide: %r", exc)
            self.policy_reason = POLICY_FAILED
            self._apply_pause()

        self.background.run(lambda: policy.decide(prefs), done, failed)

    # -- internals --------------------------------------------------------------------------------

    def _apply_pause(self) -> None:
        worker = self.worker
        if worker is not None:
            if self.paused and not worker.paused:
                stop_now = self._preferences().stop_running_on_pause
                worker.pause(stop_running=stop_now)
            elif not self.paused and worker.paused:
                worker.resume()
        self._announce()

    def _announce(self) -> None:
        """Emit ``state_changed`` when the state as shown changed: an owner or policy pause shows as
        "paused" with its reason; otherwise the worker's own state and sentence."""
        state, message = self._state, self._worker_message
        if self.paused and state in ("idle", "working", "paused"):
            finishing = state == "paused" and "finishing" in message
            message = "Paused by you." if self.manually_paused else self.policy_reason
            if finishing:
                message += " The running task finishes first."
            state = "paused"
        if (state, message) != (self._state_shown, self._message):
            self._state_shown = state
            self._message = message
            self.state_changed.emit(state, message)

    def _from_worker(self, event: WorkerEvent) -> None:
        """Called on the worker's threads: hand the event to the GUI thread (queued signals); log
        lines are gathered and delivered in batches."""
        if isinstance(event, TaskLog):
            with self._log_lock:
                self._log_buffer.append(event)
                first = len(self._log_buffer) == 1
            if first:
                self._logs_waiting.emit()
            return
        self._event.emit(event)

    def _flush_logs(self) -> None:
        with self._log_lock:
            batch, self._log_buffer = self._log_buffer, []
        if batch:
            self._deliver_logs(batch)

    def _deliver_logs(self, batch: list[TaskLog]) -> None:
        for event in batch:
            task = self.current.get(event.lease_id)
            if task is not None:
                task.log.append(event.text)
            self.task_log.emit(event)
        self.task_logs.emit(batch)

    def _on_event(self, event: WorkerEvent) -> None:
        if isinstance(event, StateChanged):
            self._state = event.state
            self._worker_message = event.message
            self._announce()
        elif isinstance(event, Registered):
            self.node_id = event.node_id
            self.registered.emit(event)
        elif isinstance(event, TaskStarted):
            self.current[event.lease_id] = CurrentTask(
                event.lease_id,
                event.task_id,
                event.job_id,
                event.image,
                event.timeout_s,
                event.cpu_cores,
                time.monotonic(),
            )
            self.task_started.emit(event)
        elif isinstance(event, TaskLog):
            self._deliver_logs([event])
        elif isinstance(event, TaskFinished):
            self._flush_logs()  # the task's last lines before its end
            self.current.pop(event.lease_id, None)
            record = TaskRecord(
                finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
                task_id=event.task_id,
                job_id=event.job_id,
                status=event.status,
                outcome=event.outcome,
                reason=event.reason,
            )
            self.history.insert(0, record)
            del self.history[HISTORY_KEEP:]
            self._save_history()
            self.task_finished.emit(event)
        elif isinstance(event, Error):
            self.error.emit(event.message)
        elif isinstance(event, BenchmarkFinished):
            self._last_benchmark = event.report
            self._save_benchmark(event.report)
            self.benchmark_finished.emit(event.report)

    # -- small files next to the settings ----------------------------------------------------------

    def _load_history(self) -> list[TaskRecord]:
        try:
            rows = json.loads((self.config_dir / HISTORY_FILE).read_text(encoding="utf-8"))
            return [TaskRecord(**row) for row in rows][:HISTORY_KEEP]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, TypeError) as exc:
            logger.warning("Ignoring an unreadable task history: %r", exc)
            return []

    def _save_history(self) -> None:
        rows = [dataclasses.asdict(record) for record in self.history]
        path = self.config_dir / HISTORY_FILE
        self.background.run(lambda: _write_json(path, rows), None, _log_write_error)

    def _load_benchmark(self) -> BenchmarkReport | None:
        try:
            data = json.loads((self.config_dir / BENCHMARK_FILE).read_text(encoding="utf-8"))
            return report_from_json(data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            logger.warning("Ignoring an unreadable benchmark file: %r", exc)
            return None

    def _save_benchmark(self, report: BenchmarkReport) -> None:
        data = report_to_json(report)
        path = self.config_dir / BENCHMARK_FILE
        self.background.run(lambda: _write_json(path, data), None, _log_write_error)


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    tmp.replace(path)


def _log_write_error(exc: Exception) -> None:
    logger.warning("Could not write the app's state file: %r", exc)
