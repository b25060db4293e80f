"""The desktop app's composition root: builds the settings, the credential store, the session, the
engine, the earnings, the main window and the tray, and wires them together.

``main()`` is what ``hivemind gui`` runs. :class:`HiveMindApp` is the same app without the event loop,
for tests and the benchmark. :func:`self_test_window` is the installer's window check. Importing this
module starts nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QApplication, QMessageBox, QSystemTrayIcon, QWidget

from client_gui.engine.coordinator_client import CoordinatorError
from client_gui.engine.identity import (
    REFRESH_TOKEN,
    CredentialStore,
    FileCredentialStore,
    NoKeyringError,
    default_config_dir,
    open_credential_store,
)
from client_gui.engine.preferences import PREFERENCES_FILE_NAME, Preferences, PreferencesError
from client_gui.ui.background import Background
from client_gui.ui.controllers.first_run import FirstRunController, check_coordinator
from client_gui.ui.engine_controller import POLICY_INTERVAL_MS, EngineController, WorkerOptions
from client_gui.ui.icons import app_icon
from client_gui.ui.main_window import MainWindow
from client_gui.ui.session import AppSession, SignedOut
from client_gui.ui.tray import TrayController
from client_gui.ui.views.first_run import FirstRunView

if TYPE_CHECKING:
    from client_gui.platform.autostart import Autostart
    from client_gui.platform.idle import IdleSource
    from client_gui.platform.power import PowerSource
    from client_gui.ui.context import AppContext
    from client_gui.ui.earnings_model import EarningsModel

logger = logging.getLogger(__name__)

READY_FILE_ENV = "HIVEMIND_GUI_READY_FILE"
"""When set, the app writes the time (``time.time()``) to this file once its window or tray is up
(the startup benchmark reads it)."""
STALL_FILE_ENV = "HIVEMIND_GUI_STALL_FILE"
"""When set, the app measures, from the moment it is ready, the longest time its GUI thread did not
get to run a 10 ms timer, and keeps the figure (milliseconds) in this file (the benchmark's check that
no call on the GUI thread takes more than 50 ms)."""
CREDENTIALS_FILE = "credentials.json"
KEYRING_NOTICE_FILE = "keyring-notice-shown"
QUIT_GRACE_MS = 40_000
"""How long quitting waits for the worker to stop its tasks and deliver their reports."""


@dataclass
class AppOptions:
    """What the composition root may be given instead of the real thing (tests, demos, benchmarks)."""

    config_dir: Path
    coordinator: str | None = None
    store: CredentialStore | None = None
    idle_source: IdleSource | None = None
    power_source: PowerSource | None = None
    autostart: Autostart | None = None
    worker: WorkerOptions = field(default_factory=WorkerOptions)
    policy_interval_ms: int = POLICY_INTERVAL_MS
    earnings_refresh_ms: int | None = None
    health_check: Callable[[str], None] = check_coordinator
    show_windows: bool = True


class HiveMindApp(QObject):
    """The app without the event loop. ``start()`` shows the first-run dialog or resumes the session;
    ``ready`` is emitted once the main window (and the tray, where there is one) is up."""

    ready = Signal()
    finished = Signal()

    def __init__(self, options: AppOptions, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.options = options
        self.config_dir = options.config_dir
        self.prefs_path = self.config_dir / PREFERENCES_FILE_NAME
        self._boxes: list[QMessageBox] = []
        self.notices: list[str] = []
        """Sentences shown to the person once (e.g. no OS keyring); kept for tests."""
        self.background = Background(self)
        self.prefs = self._load_preferences()
        if options.coordinator:
            self.prefs = dataclasses.replace(self.prefs, coordinator_address=options.coordinator)
        self.store = options.store or self._open_store()
        self.tray_available = QSystemTrayIcon.isSystemTrayAvailable()
        self.session: AppSession | None = None
        self.engine: EngineController | None = None
        self.earnings: EarningsModel | None = None
        self.context: AppContext | None = None
        self.window: MainWindow | None = None
        self.tray: TrayController | None = None
        self.first_run: FirstRunController | None = None
        self.controllers: list[QObject] = []
        self._policy: object | None = None
        self._quitting = False
        self._stall_monitor: StallMonitor | None = None

    # -- settings and secrets ------------------------------------------------------------------------

    def _load_preferences(self) -> Preferences:
        try:
            return Preferences.load(self.prefs_path)
        except PreferencesError as exc:
            self._notice(str(exc) + " HiveMind uses the default settings until you save new ones.")
            return Preferences()

    def preferences(self) -> Preferences:
        return self.prefs

    def save_preferences(self, prefs: Preferences) -> None:
        """Apply at once (limits from the next task), then write the file in the background."""
        self.prefs = prefs
        if self.engine is not None:
            self.engine.apply_preferences(prefs)
        path = self.prefs_path
        self.background.run(lambda: prefs.save(path), None, self._save_failed)

    def _save_failed(self, exc: Exception) -> None:
        message = str(exc) or "HiveMind could not save its settings."
        logger.error("saving the settings failed: %r", exc)
        if self.window is not None:
            self.window.statusBar().showMessage(message, 15_000)

    def _open_store(self) -> CredentialStore:
        try:
            return open_credential_store()
        except NoKeyringError:
            path = self.config_dir / CREDENTIALS_FILE
            marker = self.config_dir / KEYRING_NOTICE_FILE
            if not marker.exists():
                self._notice(
                    "No OS keyring was found on this computer, so HiveMind keeps your sign-in and "
                    f"this computer's credential in {path}, a file only you can read. Install a "
                    "keyring (for example gnome-keyring or KWallet) to keep them there instead."
                )
                try:
                    self.config_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
                    marker.write_text("shown\n", encoding="utf-8")
                except OSError as exc:
                    logger.warning("could not remember the keyring notice: %r", exc)
            return FileCredentialStore(path)

    def _notice(self, text: str) -> None:
        logger.warning("%s", text)
        self.notices.append(text)
        if self.options.show_windows:
            box = QMessageBox(QMessageBox.Icon.Information, "HiveMind", text)
            box.setModal(False)
            box.show()
            self._boxes.append(box)  # a parentless widget lives as long as its Python object

    # -- the work policy --------------------------------------------------------------------------------

    def _work_policy(self) -> object:
        if self._policy is None:
            from client_gui.engine.policy import WorkPolicy
            from client_gui.platform.idle import default_idle_source
            from client_gui.platform.power import default_power_source

            idle = self.options.idle_source or default_idle_source()
            power = self.options.power_source or default_power_source()
            self._policy = WorkPolicy(idle, power)
        return self._policy

    def _autostart(self) -> Autostart | None:
        if self.options.autostart is not None:
            return self.options.autostart
        try:
            from client_gui.platform.autostart import default_autostart

            return default_autostart()
        except Exception as exc:  # an OS without an autostart entry: the setting does nothing
            logger.warning("start at login is not available here: %r", exc)
            return None

    def make_engine(self, session: AppSession) -> EngineController:
        return EngineController(
            session,
            self.background,
            self.preferences,
            config_dir=self.config_dir,
            policy=self._work_policy(),  # type: ignore[arg-type]
            autostart=self._autostart(),
            options=self.options.worker,
            policy_interval_ms=self.options.policy_interval_ms,
            parent=self,
        )

    # -- starting ------------------------------------------------------------------------------------

    def start(self) -> None:
        """First run when nobody signed in here before; else resume the stored session (no dialog).
        The keyring and the network are asked in the background."""
        store = self.store

        def signed_in_before() -> bool:
            return bool(store.load(REFRESH_TOKEN))

        def unreadable(exc: Exception) -> None:
            self._notice(str(exc))
            self.show_first_run("address")

        self.background.run(signed_in_before, self._resume, unreadable)

    def _resume(self, signed_in_before: bool) -> None:
        if not signed_in_before:
            self.show_first_run("address")
            return
        session = AppSession(
            self.prefs.coordinator_address, self.store, username=self.prefs.username
        )

        def resumed(_token: str) -> None:
            self.open(session, self.make_engine(session))

        def refused(exc: Exception) -> None:
            if isinstance(exc, SignedOut):
                session.close()
                self.show_first_run("account")
            elif isinstance(exc, CoordinatorError):
                # Offline: the engine retries by itself and the window says so.
                logger.info("resuming the session: %s", exc.message)
                self.open(session, self.make_engine(session))
            else:
                session.close()
                self._notice(f"HiveMind could not sign you in again ({exc}). Sign in below.")
                self.show_first_run("account")

        self.background.run(session.refresh, resumed, refused)

    def show_first_run(self, page: str) -> None:
        view = FirstRunView()
        controller = FirstRunController(
            view,
            store=self.store,
            background=self.background,
            preferences=self.prefs,
            save_preferences=self.save_preferences,
            make_engine=self.make_engine,
            start_page=page,
            check=self.options.health_check,
        )
        self.first_run = controller
        controller.completed.connect(self._first_run_done)
        controller.cancelled.connect(self._first_run_cancelled)
        if self.options.show_windows:
            view.show()
            self._mark_ready()

    def _first_run_done(self, session: AppSession, engine: EngineController) -> None:
        if self.first_run is not None:
            self.prefs = self.first_run.preferences
            self.first_run.view.deleteLater()
            self.first_run = None
        self.open(session, engine, started=True)

    def _first_run_cancelled(self) -> None:
        if self.first_run is not None:
            self.first_run.view.deleteLater()
            self.first_run = None
        if self.window is None:
            self.finished.emit()

    def open(self, session: AppSession, engine: EngineController, *, started: bool = False) -> None:
        """Build the main window and the tray around a signed-in session, and start the engine."""
        from client_gui.ui.context import AppContext
        from client_gui.ui.earnings_model import EarningsModel

        self.session = session
        self.engine = engine
        earnings = self.earnings = (
            EarningsModel(session, self.background, parent=self)
            if self.options.earnings_refresh_ms is None
            else EarningsModel(
                session, self.background, parent=self, refresh_ms=self.options.earnings_refresh_ms
            )
        )
        earnings.follow(engine)
        context = self.context = AppContext(
            session=session,
            background=self.background,
            engine=engine,
            earnings=earnings,
            preferences=self.preferences,
            save_preferences=self.save_preferences,
        )
        window = self.window = MainWindow(close_quits=not self.tray_available)
        self.controllers.extend(build_pages(window, context))
        window.set_state(engine.state, engine.message)
        engine.state_changed.connect(window.set_state)
        engine.error.connect(lambda message: window.statusBar().showMessage(message, 15_000))
        window.close_requested.connect(self.quit)

        tray = self.tray = TrayController(engine, earnings, self)
        tray.open_requested.connect(window.bring_up)
        tray.submit_requested.connect(lambda: self._open_page("submit"))
        tray.settings_requested.connect(lambda: self._open_page("settings"))
        tray.quit_requested.connect(self.quit)
        tray.show()

        if not started:
            engine.start()
        engine.apply_preferences(self.prefs)
        earnings.refresh()
        if self.options.show_windows and (not self.tray_available or started):
            window.show()
        self._mark_ready()
        self.ready.emit()

    def _open_page(self, key: str) -> None:
        if self.window is not None:
            self.window.show_page(key)
            self.window.bring_up()

    def _mark_ready(self) -> None:
        stall_file = os.environ.get(STALL_FILE_ENV)
        if stall_file and self._stall_monitor is None:
            self._stall_monitor = StallMonitor(Path(stall_file), self)
        path = os.environ.get(READY_FILE_ENV)
        if path:
            try:
                Path(path).write_text(f"{time.time():.6f}\n", encoding="utf-8")
            except OSError as exc:
                logger.warning("could not write the ready file %s: %r", path, exc)

    # -- stopping ------------------------------------------------------------------------------------

    def quit(self) -> None:
        """Hide everything, stop the worker (its tasks are stopped and reported), then finish."""
        if self._quitting:
            return
        self._quitting = True
        if self.window is not None:
            self.window.hide()
        if self.tray is not None:
            self.tray.hide()
        engine = self.engine
        if engine is None:
            self._finish()
            return
        engine.stopped.connect(self._finish)
        QTimer.singleShot(QUIT_GRACE_MS, self._finish)
        engine.stop()

    def _stop_controllers(self) -> None:
        for controller in self.controllers:
            stop = getattr(controller, "stop", None)
            if callable(stop):
                stop()  # their timers: nothing may refresh while the app goes away
        self.controllers.clear()

    def _finish(self) -> None:
        self._stop_controllers()
        if self.earnings is not None:
            self.earnings.stop()
        if self.session is not None:
            self.session.close()
        self.background.close(timeout_s=1.0)
        self.finished.emit()

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """Stop everything and wait (tests and the benchmark; a running app uses :meth:`quit`).
        Calling it again does nothing."""
        flow, self.first_run = self.first_run, None
        if flow is not None:
            flow.view.reject()  # stops an engine the dialog started
            flow.view.deleteLater()
        engine, self.engine = self.engine, None
        if engine is not None:
            engine.stop_and_wait(timeout_s)
        self.background.wait_idle(timeout_s)
        self._stop_controllers()
        earnings, self.earnings = self.earnings, None
        if earnings is not None:
            earnings.stop()
        tray, self.tray = self.tray, None
        if tray is not None:
            tray.close()
        window, self.window = self.window, None
        if window is not None:
            window.close_quits = True
            window.close()
            window.deleteLater()
        session, self.session = self.session, None
        if session is not None:
            session.close()
        self.background.close(timeout_s)


class StallMonitor(QObject):
    """How long the GUI thread went without running a 10 ms timer (beyond the 10 ms), and how much of
    that it spent computing (its own CPU time): the first includes waiting for a CPU core on a busy
    computer, the second is the work the app itself did on the GUI thread. The longest of each is
    written to ``path`` as ``<gap ms> <busy ms> <seconds after start of the gap's end>`` when either
    grows."""

    TICK_MS = 10

    def __init__(self, path: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.path = path
        self.longest_gap_ms = 0.0
        self.longest_busy_ms = 0.0
        self._last = self._started = time.monotonic()
        self._last_cpu = time.thread_time()
        self._timer = QTimer(self)
        self._timer.setInterval(self.TICK_MS)
        self._timer.timeout.connect(self._tick)
        self._timer.start()
        path.write_text("0.0 0.0 0.0\n", encoding="utf-8")

    def _tick(self) -> None:
        now, cpu = time.monotonic(), time.thread_time()
        gap_ms = (now - self._last) * 1000 - self.TICK_MS
        busy_ms = (cpu - self._last_cpu) * 1000
        self._last, self._last_cpu = now, cpu
        if gap_ms > self.longest_gap_ms or busy_ms > self.longest_busy_ms:
            self.longest_gap_ms = max(gap_ms, self.longest_gap_ms)
            self.longest_busy_ms = max(busy_ms, self.longest_busy_ms)
            self.path.write_text(
                f"{self.longest_gap_ms:.1f} {self.longest_busy_ms:.1f} {now - self._started:.2f}\n",
                encoding="utf-8",
            )


def build_pages(window: MainWindow, context: AppContext) -> list[QObject]:
    """The six views in the window's navigation, each with its controller; returns the controllers."""
    from client_gui.ui.controllers.earnings import EarningsController
    from client_gui.ui.controllers.machine import MachineController
    from client_gui.ui.controllers.settings import SettingsController
    from client_gui.ui.controllers.submit import SubmitController
    from client_gui.ui.controllers.tasks import TasksController
    from client_gui.ui.controllers.wallet import WalletController

    views = make_views()
    controllers: list[QObject] = [
        EarningsController(views["earnings"], context),  # type: ignore[arg-type]
        MachineController(views["machine"], context),  # type: ignore[arg-type]
        TasksController(views["tasks"], context),  # type: ignore[arg-type]
        SubmitController(views["submit"], context),  # type: ignore[arg-type]
        WalletController(views["wallet"], context),  # type: ignore[arg-type]
        SettingsController(views["settings"], context),  # type: ignore[arg-type]
    ]
    for key, view in views.items():
        window.add_page(key, view)
    return controllers


def make_views() -> dict[str, QWidget]:
    """One of each view, in navigation order (layout only: no controller, no coordinator)."""
    from client_gui.ui.views.earnings import EarningsView
    from client_gui.ui.views.machine import MachineView
    from client_gui.ui.views.settings import SettingsView
    from client_gui.ui.views.submit import SubmitView
    from client_gui.ui.views.tasks import TasksView
    from client_gui.ui.views.wallet import WalletView

    return {
        "earnings": EarningsView(),
        "machine": MachineView(),
        "tasks": TasksView(),
        "submit": SubmitView(),
        "wallet": WalletView(),
        "settings": SettingsView(),
    }


def _application() -> QApplication:
    existing = QApplication.instance()
    if isinstance(existing, QApplication):
        return existing
    qapp = QApplication(sys.argv[:1])
    qapp.setApplicationName("HiveMind")
    qapp.setApplicationDisplayName("HiveMind")
    qapp.setOrganizationName("HiveMind")
    qapp.setDesktopFileName("hivemind")
    qapp.setWindowIcon(app_icon())
    return qapp


def main(coordinator: str | None = None, config_dir: Path | None = None) -> int:
    """``hivemind gui``: run the app until the person quits."""
    logging.basicConfig(
        level=os.environ.get("HIVEMIND_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    qapp = _application()
    qapp.setQuitOnLastWindowClosed(False)
    app = HiveMindApp(
        AppOptions(config_dir=config_dir or default_config_dir(), coordinator=coordinator)
    )
    app.finished.connect(qapp.quit)
    QTimer.singleShot(0, app.start)
    return int(qapp.exec())


def self_test_window(timeout_s: float = 30.0) -> str:
    """Open the main window with all six views offscreen (no coordinator), draw it, close it; returns
    one line. Raises RuntimeError when the window could not be drawn within ``timeout_s``."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    started = time.monotonic()
    qapp = _application()
    window = MainWindow(close_quits=True)
    for key, view in make_views().items():
        window.add_page(key, view)
    window.set_state("idle", "Self-test.")
    window.show()
    deadline = started + timeout_s
    while not window.isVisible() and time.monotonic() < deadline:
        qapp.processEvents()
    for index in range(window.stack.count()):
        window.nav.setCurrentRow(index)
        qapp.processEvents()
    image = window.grab()
    titles = window.nav_titles()
    window.close()
    window.deleteLater()
    qapp.processEvents()
    if image.isNull() or image.width() == 0:
        raise RuntimeError("The main window could not be drawn on this computer.")
    elapsed = time.monotonic() - started
    return (
        f"main window with {len(titles)} views ({', '.join(titles)}) opened and closed in "
        f"{elapsed:.1f} s ({qapp.platformName()})"
    )
