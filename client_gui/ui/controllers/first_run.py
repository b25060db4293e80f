"""Behind the first-run dialog: checks the coordinator address (gRPC health check), signs in or creates
the account, then starts the engine, which benchmarks and registers this computer, and follows its
progress. Every network call runs in the background; the dialog only ever waits on signals.

Tokens and the node credential go into the credential store (the OS keyring) through the session and
the engine; the address and the username into the settings.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PySide6.QtCore import QObject, Signal

from client_gui.engine.coordinator_client import CoordinatorError, open_channel
from client_gui.engine.identity import CredentialStore
from client_gui.engine.preferences import Preferences, PreferencesError, check_coordinator_address
from client_gui.ui.background import Background
from client_gui.ui.engine_controller import EngineController
from client_gui.ui.session import AppSession
from client_gui.ui.views.common import show_error
from client_gui.ui.views.first_run import FirstRunView

logger = logging.getLogger(__name__)

HEALTH_TIMEOUT_S = 5.0
# Progress through registration, by the engine's state sentences.
PROGRESS = {"starting": 5, "registering": 20}


def unreachable_message(address: str) -> str:
    return f"The coordinator at {address} cannot be reached. Check the address and your network."


def check_coordinator(address: str, timeout_s: float = HEALTH_TIMEOUT_S) -> None:
    """Ask the coordinator's gRPC health service whether it serves; raises CoordinatorError with a
    sentence when it cannot be reached or does not serve."""
    channel = open_channel(address)
    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=timeout_s, wait_for_ready=False
        )
    except grpc.RpcError as exc:
        logger.info("Health check of %s failed: %r", address, exc)
        raise CoordinatorError(unreachable_message(address)) from None
    finally:
        channel.close()
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        raise CoordinatorError(
            f"The coordinator at {address} is not serving right now (it may be starting or "
            "stopping). Try again in a minute."
        )


def sentence_of(exc: Exception) -> str:
    message = getattr(exc, "message", "")
    return str(message or exc)


class FirstRunController(QObject):
    """``completed(session, engine)`` when this computer is registered and the person pressed Finish;
    ``cancelled`` when they closed the dialog (nothing keeps running then)."""

    completed = Signal(object, object)
    cancelled = Signal()

    def __init__(
        self,
        view: FirstRunView,
        *,
        store: CredentialStore,
        background: Background,
        preferences: Preferences,
        save_preferences: Callable[[Preferences], None],
        make_engine: Callable[[AppSession], EngineController],
        start_page: str = "address",
        check: Callable[[str], None] = check_coordinator,
    ) -> None:
        super().__init__(view)
        self.view = view
        self.store = store
        self.background = background
        self.preferences = preferences
        self._save_preferences = save_preferences
        self._make_engine = make_engine
        self._check = check
        self.session: AppSession | None = None
        self.engine: EngineController | None = None
        self._busy = False
        self._done = False

        view.address.setText(preferences.coordinator_address)
        view.username.setText(preferences.username)
        view.next_button.clicked.connect(self.next)
        view.back_button.clicked.connect(self.back)
        view.cancel_button.clicked.connect(self.cancel)
        view.rejected.connect(self._rejected)
        view.create_choice.toggled.connect(view.set_creating)
        view.set_creating(False)
        self._go(start_page)

    # -- navigation ---------------------------------------------------------------------------------

    def _go(self, page: str) -> None:
        view = self.view
        view.show_page(page)
        view.back_button.setVisible(page == "account")
        view.next_button.setText({"done": "Finish", "register": "Next"}.get(page, "Next"))
        view.next_button.setEnabled(page != "register")
        view.cancel_button.setVisible(page != "done")
        if page == "address":
            view.address.setFocus()
        elif page == "account":
            (view.password if view.username.text() else view.username).setFocus()

    def _set_busy(self, text: str) -> None:
        self._busy = bool(text)
        self.view.busy.setText(text)
        self.view.next_button.setEnabled(not self._busy)
        self.view.back_button.setEnabled(not self._busy)

    def next(self) -> None:
        if self._busy:
            return
        page = self.view.page
        if page == "address":
            self._check_address()
        elif page == "account":
            self._sign_in()
        elif page == "register":
            self._go("done")
        elif page == "done":
            self._finish()

    def back(self) -> None:
        if not self._busy and self.view.page == "account":
            self._go("address")

    def cancel(self) -> None:
        self.view.reject()

    def _rejected(self) -> None:
        if self._done:
            return
        engine, session = self.engine, self.session
        self.engine = None
        self.session = None
        if engine is not None:
            engine.stop()
        if session is not None:
            session.close()
        self.cancelled.emit()

    # -- 1. the address -----------------------------------------------------------------------------

    def _check_address(self) -> None:
        view = self.view
        show_error(view.address_error, "")
        try:
            address = check_coordinator_address(view.address.text())
        except PreferencesError as exc:
            show_error(view.address_error, str(exc))
            return
        self._set_busy(f"Contacting {address}…")

        def reached(_none: None) -> None:
            self._set_busy("")
            self.preferences = dataclasses.replace(self.preferences, coordinator_address=address)
            self._go("account")

        def failed(exc: Exception) -> None:
            self._set_busy("")
            show_error(view.address_error, sentence_of(exc))

        self.background.run(lambda: self._check(address), reached, failed)

    # -- 2. the account -----------------------------------------------------------------------------

    def _sign_in(self) -> None:
        view = self.view
        show_error(view.account_error, "")
        username = view.username.text().strip()
        password = view.password.text()
        email = view.email.text().strip()
        creating = view.create_choice.isChecked()
        if not username or not password:
            show_error(view.account_error, "Enter your username and password.")
            return
        if creating and not email:
            show_error(view.account_error, "Enter your email address to create an account.")
            return
        if self.session is None or self.session.target != self.preferences.coordinator_address:
            if self.session is not None:
                self.session.close()
            self.session = AppSession(
                self.preferences.coordinator_address, self.store, username=username
            )
        session = self.session
        self._set_busy("Creating your account…" if creating else "Signing in…")

        def call() -> None:
            if creating:
                session.register(username, email, password)
            else:
                session.sign_in(username, password)

        def signed_in(_none: None) -> None:
            self._set_busy("")
            view.password.clear()
            self.preferences = dataclasses.replace(self.preferences, username=username)
            self._save_preferences(self.preferences)
            self._register()

        def failed(exc: Exception) -> None:
            self._set_busy("")
            show_error(view.account_error, sentence_of(exc))

        self.background.run(call, signed_in, failed)

    # -- 3. benchmark and registration --------------------------------------------------------------

    def _register(self) -> None:
        assert self.session is not None
        self._go("register")
        view = self.view
        view.progress.setValue(0)
        show_error(view.register_error, "")
        view.register_status.setText("Starting…")
        engine = self.engine = self._make_engine(self.session)
        engine.state_changed.connect(self._engine_state)
        engine.registered.connect(self._registered)
        engine.start()

    def _engine_state(self, state: str, message: str) -> None:
        if self.view.page != "register":
            return
        view = self.view
        if state in PROGRESS:
            value = PROGRESS[state]
            if state == "registering" and "Registering with" in message:
                value = 75
            view.progress.setValue(max(view.progress.value(), value))
            view.register_status.setText(message)
        elif state == "error":
            show_error(view.register_error, message)
        elif state == "offline":
            view.register_status.setText(message)
        elif state in ("idle", "working", "paused") and self.engine is not None:
            self._ready()

    def _registered(self, _event: object) -> None:
        self.view.progress.setValue(95)
        self._ready()

    def _ready(self) -> None:
        engine = self.engine
        if engine is None or self.view.page != "register":
            return
        self.view.progress.setValue(100)
        node = engine.node_id or engine.identity.node_id
        self.view.done_text.setText(
            f"This computer is registered with {self.preferences.coordinator_address} as node "
            f"{node}. HiveMind takes work when your settings allow and pays you in CPT for each "
            "task. It keeps running in the system tray; open it from there to see your earnings."
        )
        self._go("done")

    def _finish(self) -> None:
        self._done = True
        assert self.session is not None and self.engine is not None
        self.completed.emit(self.session, self.engine)
        self.view.accept()
