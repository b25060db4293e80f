"""The system-tray icon: the engine's state as one of five icons, a tooltip with today's earnings, and a
menu with everything one click away. Built even where the desktop has no tray (the main window is home
there), so its menu and tooltip stay the same object everywhere."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from client_gui.engine.jobs_client import format_cpt
from client_gui.ui.engine_controller import EngineController, tray_state
from client_gui.ui.icons import tray_icon

if TYPE_CHECKING:
    from client_gui.ui.earnings_model import EarningsModel


def tooltip_text(message: str, today_micro: int) -> str:
    """``HiveMind — <state sentence> · today +X CPT``, the amount exactly as the ledger has it."""
    return f"HiveMind — {message} · today +{format_cpt(today_micro)}"


class TrayController(QObject):
    open_requested = Signal()
    submit_requested = Signal()
    settings_requested = Signal()
    quit_requested = Signal()

    def __init__(
        self,
        engine: EngineController,
        earnings: EarningsModel,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.engine = engine
        self.earnings = earnings
        self.available = QSystemTrayIcon.isSystemTrayAvailable()
        self.icon_state = ""
        self.tray = QSystemTrayIcon(self)
        self.menu = QMenu()  # no parent: a QObject cannot own a widget; closed in close()
        self.status_action = self._info_action("")
        self.earnings_action = self._info_action("")
        self.menu.addSeparator()
        self.pause_action = self.menu.addAction("Pause")
        self.pause_action.triggered.connect(self._toggle_pause)
        self.restart_action = self.menu.addAction("Try again")
        self.restart_action.setToolTip("Start the worker afresh, once the problem above is fixed")
        self.restart_action.triggered.connect(engine.restart)
        self.menu.addSeparator()
        self.open_action = self.menu.addAction("Open HiveMind")
        self.open_action.triggered.connect(self.open_requested)
        self.submit_action = self.menu.addAction("Submit job…")
        self.submit_action.triggered.connect(self.submit_requested)
        self.settings_action = self.menu.addAction("Settings…")
        self.settings_action.triggered.connect(self.settings_requested)
        self.menu.addSeparator()
        self.quit_action = self.menu.addAction("Quit HiveMind")
        self.quit_action.triggered.connect(self.quit_requested)
        self.tray.setContextMenu(self.menu)
        self.tray.activated.connect(self._activated)

        engine.state_changed.connect(self._refresh)
        earnings.changed.connect(self._refresh)
        self._refresh()

    def _info_action(self, text: str) -> QAction:
        action = self.menu.addAction(text)
        action.setEnabled(False)
        return action

    def show(self) -> None:
        if self.available:
            self.tray.show()

    def hide(self) -> None:
        self.tray.hide()

    def close(self) -> None:
        self.tray.hide()

    @property
    def tooltip(self) -> str:
        return self.tray.toolTip()

    def _refresh(self, *_args: object) -> None:
        engine = self.engine
        today = self.earnings.today_micro
        self.tray.setToolTip(tooltip_text(engine.message, today))
        self.status_action.setText(engine.message)
        self.earnings_action.setText(f"Today: +{format_cpt(today)}")
        self.pause_action.setText("Resume" if engine.manually_paused else "Pause")
        self.restart_action.setVisible(engine.state in ("error", "stopped"))
        state = tray_state(engine.state)
        if state != self.icon_state:
            self.icon_state = state
            self.tray.setIcon(tray_icon(state))

    def _toggle_pause(self) -> None:
        if self.engine.manually_paused:
            self.engine.resume()
        else:
            self.engine.pause()
        self._refresh()

    def _activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason in (
            QSystemTrayIcon.ActivationReason.Trigger,
            QSystemTrayIcon.ActivationReason.DoubleClick,
        ):
            self.open_requested.emit()
