"""Fixtures for the desktop app's tests: real Qt widgets offscreen, a real coordinator in-process, a real
Docker engine for the tasks the app's worker runs, and a credential file instead of the OS keyring.

Fixtures (names are stable; the Earnings, Wallet and Submit tests use them too):

* ``ui_coordinator``: a :class:`RunningCoordinator` on SQLite, with short leases/heartbeats and no spot
  checks, so one volunteer's accepted result is paid at once.
* ``volunteer`` / ``submitter``: two signed-up people (:class:`Person`: username, password, user_id,
  token), each granted ``GRANT_CPT`` CPT.
* ``config_dir``: an empty folder for the app's settings and the worker's state.
* ``credential_store``: a :class:`FileCredentialStore` in ``config_dir`` (never the real keyring).
* ``background``: a :class:`Background` (closed afterwards).
* ``app_session``: an :class:`AppSession` at ``ui_coordinator``, signed in as ``volunteer``.
* ``idle_source`` / ``power_source``: the manual (simulated) sources, not idle for 0 s / on mains.
* ``worker_options``: the app's worker with a quick benchmark, 1 s heartbeats and 2 s polls, no GPU.
* ``engine``: an :class:`EngineController` for ``app_session`` (not started; stopped afterwards).
* ``saved_preferences``: a :class:`MemoryPreferences` (``current``; ``saved``: every save, in order)
  for contexts built without the app; starts at ``ui_coordinator``'s address, ``volunteer``, no GPU.
* ``app_context``: an :class:`AppContext` around ``app_session``, ``background``, ``engine`` and an
  :class:`EarningsModel`, its settings in ``saved_preferences``.
* ``make_app``: ``make_app(**AppOptions overrides) -> HiveMindApp`` (not started), shut down afterwards.
* ``signed_in_app``: a started app whose person signed in before (the refresh token is in the store),
  resumed without a dialog, its engine registered and waiting for work.

Helpers: :func:`make_person`, :func:`sign_in_before` (as after a first run: refresh token stored,
settings saved), :func:`wait_state` (the engine's shown state), :func:`submit_busybox` (a job through
JobsClient), :func:`job_status`, :func:`wait_job`.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

from client_gui.engine.benchmark import run_benchmark
from client_gui.engine.identity import FileCredentialStore
from client_gui.engine.jobs_client import JobsClient, JobStatus
from client_gui.engine.preferences import Preferences
from client_gui.platform.autostart import MemoryAutostart
from client_gui.platform.idle import ManualIdleSource
from client_gui.platform.power import ManualPowerSource
from client_gui.ui.app import AppOptions, HiveMindApp
from client_gui.ui.background import Background
from client_gui.ui.context import AppContext
from client_gui.ui.earnings_model import EarningsModel
from client_gui.ui.engine_controller import EngineController, WorkerOptions
from client_gui.ui.session import AppSession
from coordinator.clock import utcnow
from coordinator.ledger import service as ledger
from tests.support import PASSWORD, RunningCoordinator

GRANT_CPT = 100
MICRO_PER_CPT = 1_000_000
BUSYBOX = "hivemind/busybox:latest"
APP_READY_TIMEOUT_MS = 60_000


@dataclass(frozen=True)
class Person:
    username: str
    password: str
    user_id: int
    token: str


@pytest.fixture
def ui_coordinator(tmp_path: Path) -> Iterator[RunningCoordinator]:
    with RunningCoordinator.start(
        db_url=f"sqlite:///{tmp_path / 'coordinator.db'}",
        data_dir=tmp_path / "coordinator",
        lease_ttl_s=6,
        heartbeat_interval_s=1,
        node_ttl_s=12,
        spot_check_rate=0.0,
    ) as running:
        yield running


def make_person(running: RunningCoordinator, username: str, grant_cpt: int = GRANT_CPT) -> Person:
    user_id, token = running.signup(username)
    if grant_cpt:
        with running.coordinator.db.write() as session:
            ledger.grant(session, user_id, grant_cpt * MICRO_PER_CPT, now=utcnow())
    return Person(username, PASSWORD, user_id, token)


@pytest.fixture
def volunteer(ui_coordinator: RunningCoordinator) -> Person:
    return make_person(ui_coordinator, "vera")


@pytest.fixture
def submitter(ui_coordinator: RunningCoordinator) -> Person:
    return make_person(ui_coordinator, "sam")


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    path = tmp_path / "config"
    path.mkdir()
    return path


@pytest.fixture
def credential_store(config_dir: Path) -> FileCredentialStore:
    return FileCredentialStore(config_dir / "credentials.json")


@pytest.fixture
def background(qtbot: QtBot) -> Iterator[Background]:
    runner = Background()
    yield runner
    runner.wait_idle(10)
    runner.close()


@pytest.fixture
def app_session(
    ui_coordinator: RunningCoordinator, volunteer: Person, credential_store: FileCredentialStore
) -> Iterator[AppSession]:
    session = AppSession(ui_coordinator.grpc_target, credential_store)
    session.sign_in(volunteer.username, volunteer.password)
    yield session
    session.close()


@pytest.fixture
def idle_source() -> ManualIdleSource:
    return ManualIdleSource(0.0)


@pytest.fixture
def power_source() -> ManualPowerSource:
    return ManualPowerSource(False)


@pytest.fixture
def worker_options() -> WorkerOptions:
    return WorkerOptions(
        benchmark=lambda: run_benchmark(quick=True, processes=1),
        poll_wait_s=2.0,
        heartbeat_interval_s=1.0,
        gpu_count=lambda: 0,
    )


@dataclass
class MemoryPreferences:
    """Settings held in memory for contexts built without the app."""

    current: Preferences
    saved: list[Preferences] = field(default_factory=list)

    def get(self) -> Preferences:
        return self.current

    def save(self, prefs: Preferences) -> None:
        self.current = prefs
        self.saved.append(prefs)


@pytest.fixture
def saved_preferences(ui_coordinator: RunningCoordinator, volunteer: Person) -> MemoryPreferences:
    return MemoryPreferences(
        Preferences(
            coordinator_address=ui_coordinator.grpc_target,
            username=volunteer.username,
            use_gpu=False,
        )
    )


@pytest.fixture
def engine(
    app_session: AppSession,
    background: Background,
    saved_preferences: MemoryPreferences,
    config_dir: Path,
    worker_options: WorkerOptions,
) -> Iterator[EngineController]:
    controller = EngineController(
        app_session,
        background,
        saved_preferences.get,
        config_dir=config_dir,
        options=worker_options,
    )
    yield controller
    controller.stop_and_wait(30)


@pytest.fixture
def app_context(
    app_session: AppSession,
    background: Background,
    engine: EngineController,
    saved_preferences: MemoryPreferences,
) -> Iterator[AppContext]:
    earnings = EarningsModel(app_session, background)
    yield AppContext(
        session=app_session,
        background=background,
        engine=engine,
        earnings=earnings,
        preferences=saved_preferences.get,
        save_preferences=saved_preferences.save,
    )
    earnings.stop()


@pytest.fixture
def make_app(
    qtbot: QtBot,
    config_dir: Path,
    credential_store: FileCredentialStore,
    idle_source: ManualIdleSource,
    power_source: ManualPowerSource,
    worker_options: WorkerOptions,
) -> Iterator[Callable[..., HiveMindApp]]:
    apps: list[HiveMindApp] = []

    def make(**overrides: Any) -> HiveMindApp:
        options = AppOptions(
            config_dir=config_dir,
            store=credential_store,
            idle_source=idle_source,
            power_source=power_source,
            autostart=MemoryAutostart(),
            worker=worker_options,
            policy_interval_ms=200,
        )
        for name, value in overrides.items():
            setattr(options, name, value)
        app = HiveMindApp(options)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.shutdown(30)


def sign_in_before(
    running: RunningCoordinator,
    person: Person,
    store: FileCredentialStore,
    config_dir: Path,
    **prefs: Any,
) -> None:
    """As if ``person`` had gone through the first run here: refresh token stored, settings saved."""
    session = AppSession(running.grpc_target, store)
    try:
        session.sign_in(person.username, person.password)
    finally:
        session.close()
    prefs.setdefault("use_gpu", False)
    Preferences(coordinator_address=running.grpc_target, username=person.username, **prefs).save(
        config_dir / "app.json"
    )


@pytest.fixture
def signed_in_app(
    qtbot: QtBot,
    ui_coordinator: RunningCoordinator,
    volunteer: Person,
    credential_store: FileCredentialStore,
    config_dir: Path,
    make_app: Callable[..., HiveMindApp],
) -> HiveMindApp:
    sign_in_before(ui_coordinator, volunteer, credential_store, config_dir)
    app = make_app()
    with qtbot.waitSignal(app.ready, timeout=APP_READY_TIMEOUT_MS):
        app.start()
    wait_state(qtbot, app, "idle")
    return app


def wait_state(qtbot: QtBot, app: HiveMindApp, state: str, timeout_ms: int = 90_000) -> None:
    def reached() -> None:
        assert app.engine is not None
        assert app.engine.state == state, (
            app.engine.state,
            app.engine.message,
            app.engine.policy_reason,
            app.engine.manually_paused,
            app.engine.worker.paused if app.engine.worker else None,
        )

    qtbot.waitUntil(reached, timeout=timeout_ms)


def submit_busybox(
    running: RunningCoordinator,
    person: Person,
    script: str,
    *,
    cpu_cores: float = 0.5,
    timeout_s: int = 60,
    budget_cpt: str = "1",
) -> str:
    """Submit ``sh -c script`` in the busybox image as ``person``; returns the job id."""
    with JobsClient(running.grpc_target, token=person.token) as jobs:
        return jobs.submit(
            {
                "name": "ui test",
                "image": BUSYBOX,
                "command": ["sh", "-c", script],
                "resources": {"cpu_cores": cpu_cores, "memory_gb": 0.125},
                "timeout_s": timeout_s,
                "budget_cpt": budget_cpt,
            }
        )


def job_status(running: RunningCoordinator, person: Person, job_id: str) -> JobStatus:
    with JobsClient(running.grpc_target, token=person.token) as jobs:
        return jobs.get(job_id)


def wait_job(
    qtbot: QtBot,
    running: RunningCoordinator,
    person: Person,
    job_id: str,
    states: tuple[str, ...] = ("completed",),
    timeout_s: float = 120.0,
) -> JobStatus:
    """Wait (processing Qt events) until the job reaches one of ``states``."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = job_status(running, person, job_id)
        if status.state in states:
            return status
        assert time.monotonic() < deadline, (
            f"job {job_id} is {status.state}, not {states}: {status.failure_reason}"
        )
        qtbot.wait(300)
