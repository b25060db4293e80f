"""Every view of the app renders, with its controller, against a real coordinator; the main window holds
all six; the tray's menu and tooltip are there even without a system tray; the installer's window check
works without a coordinator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pytestqt.qtbot import QtBot

from client_gui.engine.benchmark import BenchmarkReport
from client_gui.engine.docker_status import DockerStatus
from client_gui.engine.jobs_client import format_cpt
from client_gui.engine.worker import TaskFinished, TaskLog, TaskStarted
from client_gui.ui.app import HiveMindApp
from client_gui.ui.context import AppContext
from client_gui.ui.controllers.machine import MachineController, docker_advice
from client_gui.ui.controllers.tasks import TasksController
from client_gui.ui.engine_controller import TaskRecord
from client_gui.ui.tray import tooltip_text
from client_gui.ui.views.machine import MachineView
from client_gui.ui.views.tasks import TasksView

REPO = Path(__file__).resolve().parents[2]


def _report(**changes: object) -> BenchmarkReport:
    values: dict[str, object] = dict(
        hostname="box",
        cpu_cores=8,
        memory_gb=31.2,
        cpu_score=612.0,
        cpu_score_single=98.0,
        gpu_score=0.0,
        gpu_memory_gb=0.0,
        gpu_name="",
        docker_status=True,
        docker_message="Docker 27 is running and ready for tasks.",
        available_memory_gb=20.0,
        cpu_model="Test CPU",
    )
    values.update(changes)
    return BenchmarkReport(**values)  # type: ignore[arg-type]


def test_machine_view_shows_scores_live_use_and_docker(
    qtbot: QtBot, app_context: AppContext
) -> None:
    view = MachineView()
    qtbot.addWidget(view)
    controller = MachineController(view, app_context)
    view.show()
    app_context.engine.benchmark_finished.emit(_report())
    assert view.single_score.text() == "98"
    assert view.multi_score.text() == "612"
    assert view.gpu_score.text() == "none"
    assert "8 logical cores" in view.hardware.text()
    # Live use and Docker's status arrive from the background.
    qtbot.waitUntil(lambda: view.memory_bar.value() > 0, timeout=10_000)
    qtbot.waitUntil(
        lambda: (
            "Docker" in view.docker_status.text() and "Checking" not in view.docker_status.text()
        ),
        timeout=20_000,
    )
    assert "running and ready" in view.docker_status.text()
    controller.usage_timer.stop()
    controller.docker_timer.stop()


def test_docker_advice_says_how_to_install_or_start_it(monkeypatch: object) -> None:
    stopped = DockerStatus(
        False,
        "",
        "Docker is not running on this computer. Start it with: sudo systemctl start docker",
    )
    import shutil

    import pytest

    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(shutil, "which", lambda _name: None)
        assert "sudo apt install docker.io" in docker_advice(stopped, platform="linux")
        assert "Docker Desktop" in docker_advice(stopped, platform="darwin")
        mp.setattr(shutil, "which", lambda _name: "/usr/bin/docker")
        assert docker_advice(stopped, platform="linux") == stopped.message
    finally:
        mp.undo()


def test_tasks_view_follows_a_task_and_keeps_its_history(
    qtbot: QtBot, app_context: AppContext
) -> None:
    engine = app_context.engine
    view = TasksView()
    qtbot.addWidget(view)
    TasksController(view, app_context)
    view.show()
    assert view.idle_note.isVisible()

    # The events a worker sends, as the engine's own handler receives them.
    engine._on_event(
        TaskStarted("lease-1", "task-1", "job-1", "hivemind/busybox:latest", timeout_s=60)
    )
    for n in range(600):
        engine._on_event(TaskLog("lease-1", "stdout", f"line {n}\n"))
    assert view.job_label.text() == "job-1"
    assert view.image_label.text() == "hivemind/busybox:latest"
    assert not view.idle_note.isVisible()
    lines = view.log.toPlainText().splitlines()
    assert lines[-1] == "line 599" and len(lines) == 500  # a bounded tail
    assert view.progress.format().endswith("of 1:00")

    engine._on_event(TaskFinished("lease-1", "task-1", "job-1", "succeeded", 0, "", "accepted"))
    assert view.idle_note.isVisible()
    assert view.history.rowCount() == 1
    row = [view.history.item(0, c).text() for c in range(view.history.columnCount())]
    assert row[1:] == ["job-1", "task-1", "Succeeded", "accepted"]
    assert engine.history[0] == TaskRecord(
        engine.history[0].finished_at, "task-1", "job-1", "succeeded", "accepted", ""
    )


def test_the_main_window_holds_all_six_views_and_the_tray_menu(
    qtbot: QtBot, signed_in_app: HiveMindApp
) -> None:
    app = signed_in_app
    window = app.window
    assert window is not None and app.tray is not None and app.engine is not None
    assert window.nav_titles() == [
        "Earnings",
        "Machine",
        "Tasks",
        "Submit job",
        "Wallet",
        "Settings",
    ]
    for index in range(window.stack.count()):
        window.nav.setCurrentRow(index)
        assert window.stack.currentWidget().isVisible() or not window.isVisible()
    # No system tray offscreen: the window is home, and closing it quits.
    assert not app.tray_available and window.isVisible() and window.close_quits
    menu = [
        action.text()
        for action in app.tray.menu.actions()
        if not action.isSeparator() and action.isVisible()  # "Try again" shows only after an error
    ]
    assert menu == [
        app.engine.message,
        f"Today: +{format_cpt(0)}",
        "Pause",
        "Open HiveMind",
        "Submit job…",
        "Settings…",
        "Quit HiveMind",
    ]
    assert app.tray.tooltip == tooltip_text(app.engine.message, 0)
    assert app.tray.tooltip.startswith("HiveMind — Waiting for work")
    assert window.state_label.text() == app.engine.message

    # The menu's entries lead to the right place.
    app.tray.settings_action.trigger()
    assert window.stack.currentWidget() is window.page("settings")
    app.tray.submit_action.trigger()
    assert window.stack.currentWidget() is window.page("submit")
    app.tray.pause_action.trigger()
    qtbot.waitUntil(lambda: app.engine is not None and app.engine.state == "paused", timeout=10_000)
    assert app.tray.pause_action.text() == "Resume"
    assert app.tray.icon_state == "paused"
    assert app.tray.tooltip.startswith("HiveMind — Paused by you.")
    app.tray.pause_action.trigger()
    qtbot.waitUntil(lambda: app.engine is not None and app.engine.state == "idle", timeout=10_000)


def test_self_test_window_runs_without_a_coordinator() -> None:
    # In a fresh process, as the installer runs it: importing the app starts nothing.
    code = (
        "import os; os.environ['QT_QPA_PLATFORM'] = 'offscreen';"
        "from client_gui.ui.app import self_test_window; print(self_test_window(30))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith(
        "main window with 6 views (Earnings, Machine, Tasks, Submit job, Wallet, Settings)"
    )
