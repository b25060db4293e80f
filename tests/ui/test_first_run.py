"""The first run, as a person goes through it: the coordinator's address (an unreachable one is refused
with a sentence), then creating an account or signing in (a wrong password gets the coordinator's
sentence), then the benchmark and registration, after which the node exists at the coordinator. The
next launch resumes the session with no dialog."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

from pytestqt.qtbot import QtBot
from sqlmodel import select

from client_gui.engine.identity import NODE_CREDENTIAL, REFRESH_TOKEN, FileCredentialStore
from client_gui.engine.preferences import Preferences
from client_gui.ui.app import HiveMindApp
from client_gui.ui.controllers.first_run import FirstRunController
from coordinator.nodes.models import Node
from tests.support import PASSWORD, RunningCoordinator
from tests.ui.conftest import APP_READY_TIMEOUT_MS, Person, wait_state


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _press_next(qtbot: QtBot, flow: FirstRunController) -> None:
    qtbot.mouseClick(flow.view.next_button, qtbot_button())
    qtbot.waitUntil(lambda: not flow._busy, timeout=30_000)


def qtbot_button():  # type: ignore[no-untyped-def]
    from PySide6.QtCore import Qt

    return Qt.MouseButton.LeftButton


def _nodes_of(running: RunningCoordinator, username: str) -> list[Node]:
    from coordinator.accounts.models import User

    with running.coordinator.db.read() as session:
        user = session.exec(select(User).where(User.username == username)).one()
        return list(session.exec(select(Node).where(Node.owner_id == user.id)).all())


def test_first_run_creates_the_account_and_registers_this_computer(
    qtbot: QtBot,
    ui_coordinator: RunningCoordinator,
    make_app: Callable[..., HiveMindApp],
    credential_store: FileCredentialStore,
    config_dir: Path,
) -> None:
    app = make_app()
    app.start()
    qtbot.waitUntil(lambda: app.first_run is not None, timeout=10_000)
    flow = app.first_run
    assert flow is not None and flow.view.isVisible() and flow.view.page == "address"

    # An address where nothing answers.
    unreachable = f"127.0.0.1:{_free_port()}"
    flow.view.address.setText(unreachable)
    _press_next(qtbot, flow)
    assert flow.view.page == "address"
    assert flow.view.address_error.text() == (
        f"The coordinator at {unreachable} cannot be reached. Check the address and your network."
    )
    # Not an address at all.
    flow.view.address.setText("my coordinator")
    _press_next(qtbot, flow)
    assert flow.view.address_error.text().startswith("The coordinator address must look like")

    flow.view.address.setText(ui_coordinator.grpc_target)
    _press_next(qtbot, flow)
    assert flow.view.page == "account" and flow.view.address_error.text() == ""

    flow.view.create_choice.setChecked(True)
    assert flow.view.email.isVisibleTo(flow.view)
    flow.view.username.setText("newbie")
    flow.view.email.setText("newbie@example.org")
    flow.view.password.setText(PASSWORD)
    _press_next(qtbot, flow)
    assert flow.view.account_error.text() == ""
    assert flow.view.page == "register"
    qtbot.waitUntil(lambda: flow.view.page == "done", timeout=120_000)
    assert flow.view.progress.value() == 100

    nodes = _nodes_of(ui_coordinator, "newbie")
    assert len(nodes) == 1
    assert nodes[0].id in flow.view.done_text.text()
    # The secrets are in the credential store, the rest in the settings file.
    assert credential_store.load(REFRESH_TOKEN)
    assert credential_store.load(NODE_CREDENTIAL)
    saved = Preferences.load(config_dir / "app.json")
    assert (saved.coordinator_address, saved.username) == (ui_coordinator.grpc_target, "newbie")

    with qtbot.waitSignal(app.ready, timeout=APP_READY_TIMEOUT_MS):
        qtbot.mouseClick(flow.view.next_button, qtbot_button())
    assert app.first_run is None
    assert app.window is not None and app.window.isVisible()
    wait_state(qtbot, app, "idle")

    # The next launch: no dialog, the same node.
    app.shutdown(30)
    again = make_app()
    with qtbot.waitSignal(again.ready, timeout=APP_READY_TIMEOUT_MS):
        again.start()
    assert again.first_run is None
    assert again.session is not None and again.session.username == "newbie"
    wait_state(qtbot, again, "idle")
    assert len(_nodes_of(ui_coordinator, "newbie")) == 1


def test_a_wrong_password_gets_a_sentence_and_a_right_one_signs_in(
    qtbot: QtBot,
    ui_coordinator: RunningCoordinator,
    volunteer: Person,
    make_app: Callable[..., HiveMindApp],
) -> None:
    app = make_app()
    app.start()
    qtbot.waitUntil(lambda: app.first_run is not None, timeout=10_000)
    flow = app.first_run
    assert flow is not None
    flow.view.address.setText(ui_coordinator.grpc_target)
    _press_next(qtbot, flow)
    assert flow.view.page == "account"
    assert flow.view.sign_in_choice.isChecked() and not flow.view.email.isVisibleTo(flow.view)

    flow.view.username.setText(volunteer.username)
    flow.view.password.setText("not my password")
    _press_next(qtbot, flow)
    assert flow.view.page == "account"
    assert flow.view.account_error.text() == "Wrong username or password. Check both and try again."

    flow.view.password.setText(volunteer.password)
    _press_next(qtbot, flow)
    qtbot.waitUntil(lambda: flow.view.page == "done", timeout=120_000)
    assert len(_nodes_of(ui_coordinator, volunteer.username)) == 1
