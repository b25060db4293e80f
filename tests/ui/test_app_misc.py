"""The app's edges: it shows "offline" when the coordinator goes away and recovers by itself; without an
OS keyring it keeps the secrets in a private file and says so once; the engine imports no Qt."""

from __future__ import annotations

import ast
import socket
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from keyring.backends import fail
from pytestqt.qtbot import QtBot

from client_gui.engine.identity import REFRESH_TOKEN, FileCredentialStore
from client_gui.ui.app import HiveMindApp
from coordinator.server import BackgroundCoordinator
from coordinator.settings import Settings
from tests.support import TEST_JWT_SECRET, RunningCoordinator
from tests.ui.conftest import (
    APP_READY_TIMEOUT_MS,
    Person,
    make_person,
    sign_in_before,
    wait_state,
)

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[Callable[[], BackgroundCoordinator]]:
    """Starts coordinators on one fixed port and one database, one after the other."""
    settings = Settings(
        db=f"sqlite:///{tmp_path / 'restartable.db'}",
        data_dir=tmp_path / "restartable",
        grpc_port=_free_port(),
        http_port=0,
        jwt_secret=TEST_JWT_SECRET,
        log_format="text",
        heartbeat_interval_s=1,
        lease_ttl_s=6,
        node_ttl_s=12,
    )
    started: list[BackgroundCoordinator] = []

    def start() -> BackgroundCoordinator:
        coordinator = BackgroundCoordinator(settings)
        coordinator.start()
        started.append(coordinator)
        return coordinator

    yield start
    for coordinator in started:
        coordinator.stop()


def test_the_app_shows_offline_and_recovers_by_itself(
    qtbot: QtBot,
    restartable: Callable[[], BackgroundCoordinator],
    make_app: Callable[..., HiveMindApp],
    credential_store: FileCredentialStore,
    config_dir: Path,
) -> None:
    first = restartable()
    running = RunningCoordinator(first)
    try:
        volunteer = make_person(running, "vera", grant_cpt=0)
        sign_in_before(running, volunteer, credential_store, config_dir)
    finally:
        running.channel.close()
        running.http.close()
    app = make_app()
    with qtbot.waitSignal(app.ready, timeout=APP_READY_TIMEOUT_MS):
        app.start()
    wait_state(qtbot, app, "idle")
    assert app.engine is not None and app.tray is not None and app.window is not None

    first.stop()
    wait_state(qtbot, app, "offline", timeout_ms=60_000)
    assert "cannot be reached" in app.engine.message
    assert app.tray.icon_state == "offline"
    assert app.tray.tooltip.startswith(f"HiveMind — {app.engine.message}")
    assert app.window.state_label.text() == app.engine.message

    restartable()  # the same address, the same database
    wait_state(qtbot, app, "idle", timeout_ms=90_000)
    assert app.tray.icon_state == "idle"


def test_without_an_os_keyring_the_secrets_go_to_a_private_file_and_the_app_says_so_once(
    qtbot: QtBot,
    ui_coordinator: RunningCoordinator,
    make_app: Callable[..., HiveMindApp],
    config_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("client_gui.engine.identity.keyring.get_keyring", fail.Keyring)
    volunteer = make_person(ui_coordinator, "vera", grant_cpt=0)
    app = make_app(store=None, show_windows=False)
    assert isinstance(app.store, FileCredentialStore)
    assert app.store.path == config_dir / "credentials.json"
    assert len(app.notices) == 1 and app.notices[0].startswith("No OS keyring was found")
    assert str(config_dir / "credentials.json") in app.notices[0]

    sign_in_before(ui_coordinator, volunteer, app.store, config_dir)
    assert stat.S_IMODE((config_dir / "credentials.json").stat().st_mode) == 0o600
    assert app.store.load(REFRESH_TOKEN)
    # Told once: the next launch says nothing, and resumes from the file.
    again = make_app(store=None, show_windows=False)
    assert again.notices == []
    with qtbot.waitSignal(again.ready, timeout=APP_READY_TIMEOUT_MS):
        again.start()
    assert again.session is not None and again.session.signed_in


def test_the_engine_imports_no_qt() -> None:
    offenders = []
    for path in sorted((REPO / "client_gui" / "engine").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in ("PySide6", "PyQt5", "PyQt6", "shiboken6"):
                    offenders.append(f"{path.relative_to(REPO)}: {name}")
                if name.startswith("client_gui.ui"):
                    offenders.append(f"{path.relative_to(REPO)}: {name}")
    assert offenders == []


def test_re_running_the_benchmark_re_registers_the_same_node_with_new_figures(
    qtbot: QtBot, ui_coordinator: RunningCoordinator, signed_in_app: HiveMindApp
) -> None:
    from sqlmodel import select

    from client_gui.ui.controllers.machine import MachineController
    from coordinator.nodes.models import Node

    app = signed_in_app
    assert app.engine is not None and app.window is not None
    node_id = app.engine.identity.node_id
    machine = next(c for c in app.controllers if isinstance(c, MachineController))
    app.window.show_page("machine")
    first = app.engine.last_benchmark
    assert first is not None  # measured when this computer registered
    assert machine.view.multi_score.text() == f"{first.cpu_score:.0f}"

    with qtbot.waitSignal(app.engine.benchmark_done, timeout=120_000) as done:
        qtbot.mouseClick(machine.view.rerun_button, _left())
        assert not machine.view.rerun_button.isEnabled()
    assert done.args == [""]
    assert machine.view.rerun_button.isEnabled()
    assert machine.view.benchmark_status.text() == "Measured and registered again."
    second = app.engine.last_benchmark
    assert second is not None and second is not first
    assert machine.view.multi_score.text() == f"{second.cpu_score:.0f}"
    with ui_coordinator.coordinator.db.read() as session:
        nodes = session.exec(select(Node)).all()
    assert [node.id for node in nodes] == [node_id]
    assert nodes[0].cpu_score == second.cpu_score
    # The figures are kept for the next launch, which does not measure again.
    assert (app.config_dir / "benchmark.json").exists()
    wait_state(qtbot, app, "idle")


def _left():  # type: ignore[no-untyped-def]
    from PySide6.QtCore import Qt

    return Qt.MouseButton.LeftButton


def test_start_at_login_starts_the_app_on_the_same_settings_folder(tmp_path: Path) -> None:
    from client_gui.engine.identity import default_config_dir
    from client_gui.ui.engine_controller import autostart_command

    command = autostart_command(tmp_path)
    assert command[-3:] == ["gui", "--config-dir", str(tmp_path.resolve())]
    assert autostart_command(default_config_dir())[-1] == "gui"


def test_only_a_tighter_limit_cuts_a_waiting_poll_short() -> None:
    from client_gui.engine.worker import WorkerLimits
    from client_gui.ui.engine_controller import tighter

    free = WorkerLimits()
    assert tighter(WorkerLimits(max_cores=1.0), free)
    assert tighter(WorkerLimits(max_memory_gb=2.0), WorkerLimits(max_memory_gb=4.0))
    assert tighter(WorkerLimits(use_gpu=False), free)
    assert not tighter(free, WorkerLimits(max_cores=1.0))
    assert not tighter(WorkerLimits(max_cores=2.0), WorkerLimits(max_cores=1.0))


def test_after_an_error_the_person_fixes_try_again_starts_the_worker_afresh(
    qtbot: QtBot, ui_coordinator: RunningCoordinator, volunteer: Person, signed_in_app: HiveMindApp
) -> None:
    """The node's credential is revoked while nobody is signed in, so the worker cannot register again
    and stops with a sentence; the tray offers "Try again", which, once the person has signed in,
    registers this computer again and gets back to work."""
    from coordinator.accounts.tokens import Principal

    app = signed_in_app
    assert app.engine is not None and app.tray is not None and app.session is not None
    old_node = app.engine.identity.node_id
    assert not app.tray.restart_action.isVisible()
    app.session.sign_out()
    ui_coordinator.coordinator.nodes.revoke(
        old_node, Principal(user_id=volunteer.user_id, username=volunteer.username, role="user")
    )
    wait_state(qtbot, app, "error")
    assert "sign in" in app.engine.message.lower(), app.engine.message
    assert app.tray.restart_action.isVisible()

    app.session.sign_in(volunteer.username, volunteer.password)
    app.tray.restart_action.trigger()
    wait_state(qtbot, app, "idle")
    # Registered again: the same node, with a new credential the coordinator accepts.
    from coordinator.nodes.models import Node

    assert app.engine.identity.node_id == old_node
    with ui_coordinator.coordinator.db.read() as session:
        node = session.get(Node, old_node)
        assert node is not None and node.credential_revoked_at is None
    assert not app.tray.restart_action.isVisible()
