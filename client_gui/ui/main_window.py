"""The main window (layout only): a navigation list on the left, the chosen view on the right, and the
engine's state in the status bar. The composition root (``app.py``) puts the views in."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QCloseEvent, QIcon
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QStackedWidget,
    QWidget,
)

from client_gui.ui.engine_controller import tray_state
from client_gui.ui.icons import app_icon, tray_icon

NAV_WIDTH = 180
# The order of the navigation list; a view that is missing is left out.
PAGES = ("earnings", "machine", "tasks", "submit", "wallet", "settings")
TITLES = {
    "earnings": "Earnings",
    "machine": "Machine",
    "tasks": "Tasks",
    "submit": "Submit job",
    "wallet": "Wallet",
    "settings": "Settings",
}


class MainWindow(QMainWindow):
    """``close_quits``: closing the window quits the app (no system tray); otherwise it only hides."""

    close_requested = Signal()

    def __init__(self, parent: QWidget | None = None, *, close_quits: bool = False) -> None:
        super().__init__(parent)
        self.close_quits = close_quits
        self.setWindowTitle("HiveMind")
        self.setWindowIcon(app_icon())
        self.resize(1040, 680)
        self.setMinimumSize(QSize(820, 560))

        self.nav = QListWidget()
        self.nav.setObjectName("nav")
        self.nav.setFixedWidth(NAV_WIDTH)
        self.nav.setIconSize(QSize(20, 20))
        self.nav.setSpacing(2)
        self.stack = QStackedWidget()
        central = QWidget()
        layout = QHBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.nav)
        layout.addWidget(self.stack, 1)
        self.setCentralWidget(central)
        self.nav.currentRowChanged.connect(self.stack.setCurrentIndex)
        self.setStyleSheet(
            "#nav { border: none; background: palette(alternate-base); padding-top: 8px; }"
            "#nav::item { padding: 8px 10px; border-radius: 4px; }"
            "#nav::item:selected { background: palette(highlight);"
            " color: palette(highlighted-text); }"
        )

        self.state_icon = QLabel()
        self.state_label = QLabel("Starting.")
        self.state_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.statusBar().addWidget(self.state_icon)
        self.statusBar().addWidget(self.state_label, 1)
        self.keys: list[str] = []

    def add_page(self, key: str, widget: QWidget, icon: QIcon | None = None) -> None:
        item = QListWidgetItem(TITLES.get(key, key.title()))
        if icon is not None:
            item.setIcon(icon)
        item.setData(Qt.ItemDataRole.UserRole, key)
        self.nav.addItem(item)
        self.stack.addWidget(widget)
        self.keys.append(key)
        if self.nav.currentRow() < 0:
            self.nav.setCurrentRow(0)

    def page(self, key: str) -> QWidget:
        widget = self.stack.widget(self.keys.index(key))
        assert widget is not None
        return widget

    def show_page(self, key: str) -> None:
        if key in self.keys:
            self.nav.setCurrentRow(self.keys.index(key))

    def nav_titles(self) -> list[str]:
        return [self.nav.item(i).text() for i in range(self.nav.count())]

    def set_state(self, state: str, message: str) -> None:
        self.state_label.setText(message)
        self.state_icon.setPixmap(tray_icon(tray_state(state)).pixmap(16, 16))

    def bring_up(self) -> None:
        self.show()
        self.setWindowState(self.windowState() & ~Qt.WindowState.WindowMinimized)
        self.raise_()
        self.activateWindow()

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.close_quits:
            event.accept()
            self.close_requested.emit()
        else:
            event.ignore()
            self.hide()
