"""The app at work, with real parts: another person's job runs in Docker on the app's worker and the tray
shows exactly what the ledger paid; the CPU cap reaches the container and a raised cap applies from the
next task without a restart; pausing keeps new work away; "only when idle" waits for idle.

A new node is not trusted yet, so the coordinator cross-checks its result on a second node of another
owner before paying: the payment test runs a second real worker for that. The other tests watch the app's
own worker take (or not take) the task.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from pytestqt.qtbot import QtBot

from client_gui.engine.account_client import TASK_PAYMENT, AccountClient
from client_gui.engine.identity import FileCredentialStore
from client_gui.engine.jobs_client import format_cpt
from client_gui.engine.local import local_worker
from client_gui.engine.worker import TaskFinished, TaskLog, TaskStarted, WorkerLimits
from client_gui.platform.idle import ManualIdleSource
from client_gui.ui.app import HiveMindApp
from client_gui.ui.controllers.settings import SettingsController
from client_gui.ui.controllers.tasks import TasksController
from client_gui.ui.tray import tooltip_text
from tests.support import PASSWORD, RunningCoordinator
from tests.ui.conftest import (
    APP_READY_TIMEOUT_MS,
    Person,
    job_status,
    make_person,
    sign_in_before,
    submit_busybox,
    wait_job,
    wait_state,
)

TASK_LABEL = "hivemind.task"
NOT_PLACED_S = 6.0
"""How long a job must stay queued to show the worker is not taking it: several 2 s polls."""


@pytest.fixture(scope="module")
def docker_client() -> Iterator[docker.DockerClient]:
    client = docker.from_env(version="auto")
    client.ping()
    yield client
    client.close()


@pytest.fixture
def second_worker(ui_coordinator: RunningCoordinator, tmp_path: Path) -> Iterator[None]:
    """Another owner's real worker, for the cross-check of the app's first results."""
    make_person(ui_coordinator, "hal", grant_cpt=0)
    worker = local_worker(
        ui_coordinator.grpc_target,
        "hal",
        PASSWORD,
        tmp_path / "hal",
        limits=WorkerLimits(use_gpu=False, slots=1),
    )
    worker.start()
    yield
    worker.stop(cancel_running=True, timeout=30)
    worker.client.close()


def ran_here(
    qtbot: QtBot, finished: list[TaskFinished], job_id: str, timeout_ms: int = 90_000
) -> TaskFinished:
    """Wait until the app's worker finished a task of ``job_id``."""

    def done() -> None:
        assert any(event.job_id == job_id for event in finished)

    qtbot.waitUntil(done, timeout=timeout_ms)
    return next(event for event in finished if event.job_id == job_id)


def controller(app: HiveMindApp, kind: type[Any]) -> Any:
    return next(c for c in app.controllers if isinstance(c, kind))


def paid_to(running: RunningCoordinator, person: Person) -> int:
    with AccountClient(running.grpc_target, token=person.token) as account:
        rows, _ = account.transactions(page_size=200)
    return sum(row.amount_micro for row in rows if row.kind == TASK_PAYMENT)


def task_container_nano_cpus(
    qtbot: QtBot, client: docker.DockerClient, work_root: Path, timeout_s: float = 60
) -> int:
    """HostConfig.NanoCpus of the task container the app's worker is running now."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for container in client.api.containers(filters={"label": TASK_LABEL}):
            sources = [Path(m.get("Source", "")) for m in container.get("Mounts") or []]
            if any(source.is_relative_to(work_root) for source in sources):
                info = client.api.inspect_container(container["Id"])
                return int(info["HostConfig"]["NanoCpus"])
        qtbot.wait(100)
    raise AssertionError("no task container of the app's worker appeared")


def not_taken_here(
    qtbot: QtBot, app: HiveMindApp, running: RunningCoordinator, person: Person, job_id: str
) -> None:
    """For several polls, the app's worker starts no task and holds no lease, and the job does not
    finish. (The coordinator may briefly show the job running: a long poll cut short by the pause can
    still be answered with a lease nobody receives, which expires and is handed out again.)"""
    assert app.engine is not None
    started: list[TaskStarted] = []
    app.engine.task_started.connect(started.append)
    deadline = time.monotonic() + NOT_PLACED_S
    while time.monotonic() < deadline:
        worker = app.engine.worker
        assert worker is not None and worker.active_leases() == []
        assert job_status(running, person, job_id).state in ("queued", "running")
        qtbot.wait(500)
    assert started == [] and app.engine.current == {}
    app.engine.task_started.disconnect(started.append)


def test_a_real_task_runs_and_the_tray_shows_exactly_what_the_ledger_paid(
    qtbot: QtBot,
    ui_coordinator: RunningCoordinator,
    volunteer: Person,
    submitter: Person,
    signed_in_app: HiveMindApp,
    second_worker: None,
) -> None:
    app = signed_in_app
    assert app.engine is not None and app.tray is not None and app.window is not None
    logs: list[str] = []
    finished: list[TaskFinished] = []
    app.engine.task_log.connect(lambda event: logs.append(event.text))
    app.engine.task_finished.connect(finished.append)
    icons: list[str] = []  # the tray updates first: it connected before this test
    app.engine.state_changed.connect(
        lambda *_: icons.append(app.tray.icon_state if app.tray else "")
    )

    job_id = submit_busybox(ui_coordinator, submitter, "echo hello from the app; sleep 1")
    status = wait_job(qtbot, ui_coordinator, submitter, job_id)
    assert status.state == "completed"
    event = ran_here(qtbot, finished, job_id)
    assert event.status == "succeeded" and event.outcome == "accepted"
    assert any("hello from the app" in line for line in logs)
    assert "working" in icons and icons[-1] == "idle"

    paid = paid_to(ui_coordinator, volunteer)
    assert paid > 0
    expected = tooltip_text(app.engine.message, paid)
    qtbot.waitUntil(lambda: app.tray is not None and app.tray.tooltip == expected, timeout=30_000)
    assert f"· today +{format_cpt(paid)}" in app.tray.tooltip
    assert app.tray.earnings_action.text() == f"Today: +{format_cpt(paid)}"
    # The window's Earnings view shows the same amount.
    earnings = app.window.page("earnings")
    assert earnings.today.text() == format_cpt(paid)  # type: ignore[attr-defined]

    # The Tasks view lists it.
    tasks = controller(app, TasksController)
    history = tasks.view.history
    assert history.rowCount() == 1
    assert [history.item(0, c).text() for c in (1, 3, 4)] == [job_id, "Succeeded", "accepted"]


def test_the_cpu_cap_reaches_the_container_and_a_raised_cap_applies_to_the_next_task(
    qtbot: QtBot,
    ui_coordinator: RunningCoordinator,
    volunteer: Person,
    submitter: Person,
    credential_store: FileCredentialStore,
    config_dir: Path,
    make_app: Callable[..., HiveMindApp],
    docker_client: docker.DockerClient,
) -> None:
    # Saved before the app starts, so its very first poll already offers the capped cores.
    sign_in_before(ui_coordinator, volunteer, credential_store, config_dir, max_cores=0.5)
    app = make_app()
    with qtbot.waitSignal(app.ready, timeout=APP_READY_TIMEOUT_MS):
        app.start()
    wait_state(qtbot, app, "idle")
    assert app.engine is not None
    finished: list[TaskFinished] = []
    app.engine.task_finished.connect(finished.append)

    # A task asking for more than the cap is not taken here; one within it runs, capped.
    big = submit_busybox(ui_coordinator, submitter, "sleep 3", cpu_cores=1.0)
    small = submit_busybox(ui_coordinator, submitter, "sleep 3", cpu_cores=0.5)
    assert task_container_nano_cpus(qtbot, docker_client, config_dir) == 500_000_000
    assert ran_here(qtbot, finished, small).status == "succeeded"
    assert job_status(ui_coordinator, submitter, big).state == "queued"

    # Raise the cap in Settings: no restart, the waiting task is taken with its full core.
    settings = controller(app, SettingsController)
    assert settings.view.cores_cap.isChecked() and settings.view.cores_spin.value() == 0.5
    settings.view.cores_spin.setValue(1.0)
    assert settings.save()
    assert task_container_nano_cpus(qtbot, docker_client, config_dir) == 1_000_000_000
    assert ran_here(qtbot, finished, big).status == "succeeded"


def test_pause_stops_new_work_until_resumed(
    qtbot: QtBot,
    ui_coordinator: RunningCoordinator,
    submitter: Person,
    signed_in_app: HiveMindApp,
) -> None:
    app = signed_in_app
    assert app.tray is not None and app.engine is not None
    finished: list[TaskFinished] = []
    app.engine.task_finished.connect(finished.append)
    app.tray.pause_action.trigger()
    wait_state(qtbot, app, "paused")
    job_id = submit_busybox(ui_coordinator, submitter, "echo paused")
    not_taken_here(qtbot, app, ui_coordinator, submitter, job_id)
    assert app.tray.tooltip.startswith("HiveMind — Paused by you.")

    app.tray.pause_action.trigger()
    assert ran_here(qtbot, finished, job_id).status == "succeeded"


def test_pausing_can_stop_the_running_task_at_once(
    qtbot: QtBot,
    ui_coordinator: RunningCoordinator,
    submitter: Person,
    signed_in_app: HiveMindApp,
) -> None:
    app = signed_in_app
    assert app.engine is not None and app.tray is not None
    settings = controller(app, SettingsController)
    settings.view.stop_on_pause.setChecked(True)
    assert settings.save()
    finished: list[TaskFinished] = []
    started: list[object] = []
    app.engine.task_finished.connect(finished.append)
    app.engine.task_log.connect(lambda event: started.append(event))
    job_id = submit_busybox(ui_coordinator, submitter, "echo started; sleep 50", timeout_s=120)
    qtbot.waitUntil(lambda: bool(started), timeout=60_000)

    app.tray.pause_action.trigger()
    qtbot.waitUntil(lambda: bool(finished), timeout=30_000)
    assert finished[0].status == "cancelled"
    assert "paused" in finished[0].reason
    # The coordinator gets the task back to place elsewhere; nothing here takes it while paused.
    assert job_status(ui_coordinator, submitter, job_id).state in ("queued", "running")


def test_idle_only_waits_for_idle(
    qtbot: QtBot,
    ui_coordinator: RunningCoordinator,
    submitter: Person,
    signed_in_app: HiveMindApp,
    idle_source: ManualIdleSource,
) -> None:
    app = signed_in_app
    assert app.engine is not None and app.tray is not None
    idle_source.set_idle_seconds(30)
    settings = controller(app, SettingsController)
    settings.view.idle_only.setChecked(True)
    settings.view.idle_minutes.setValue(2)
    assert settings.save()
    wait_state(qtbot, app, "paused")
    assert "idle" in app.engine.message.lower()
    assert app.tray.tooltip.startswith(f"HiveMind — {app.engine.message}")

    job_id = submit_busybox(ui_coordinator, submitter, "echo idle at last")
    not_taken_here(qtbot, app, ui_coordinator, submitter, job_id)

    logs: list[TaskLog] = []
    finished: list[TaskFinished] = []
    app.engine.task_log.connect(logs.append)
    app.engine.task_finished.connect(finished.append)
    idle_source.set_idle_seconds(180)
    assert ran_here(qtbot, finished, job_id).status == "succeeded"
    assert any("idle at last" in event.text for event in logs)
