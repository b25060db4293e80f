"""The Settings view (layout only): every setting, each with room for a sentence when it cannot be used."""

from __future__ import annotations

from PySide6.QtCore import QTime
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QSpinBox,
    QTimeEdit,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from client_gui.engine.preferences import DAY_ABBREVIATIONS
from client_gui.ui.views.common import card, page_title, sentence


def _row(*widgets: QWidget, stretch: bool = True) -> QWidget:
    holder = QWidget()
    layout = QHBoxLayout(holder)
    layout.setContentsMargins(0, 0, 0, 0)
    for widget in widgets:
        layout.addWidget(widget)
    if stretch:
        layout.addStretch(1)
    return holder


class ScheduleRow(QWidget):
    """One weekly window: the days it opens on, and its start and end times."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.setStyleSheet(
            "QToolButton:checked { background: palette(highlight); color: palette(highlighted-text);"
            " border: 1px solid palette(highlight); border-radius: 3px; }"
        )
        self.days: list[QToolButton] = []
        for name in DAY_ABBREVIATIONS:
            button = QToolButton()
            button.setText(name)
            button.setCheckable(True)
            button.setMinimumWidth(40)
            self.days.append(button)
            layout.addWidget(button)
        layout.addSpacing(12)
        self.start = QTimeEdit(QTime(9, 0))
        self.end = QTimeEdit(QTime(17, 0))
        for edit in (self.start, self.end):
            edit.setDisplayFormat("HH:mm")
        layout.addWidget(QLabel("from"))
        layout.addWidget(self.start)
        layout.addWidget(QLabel("to"))
        layout.addWidget(self.end)
        self.remove_button = QToolButton()
        self.remove_button.setText("Remove")
        layout.addWidget(self.remove_button)
        layout.addStretch(1)


class SettingsView(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        outer.addWidget(scroll)
        body = QWidget()
        scroll.setWidget(body)
        layout = QVBoxLayout(body)
        layout.setContentsMargins(24, 20, 24, 20)
        layout.setSpacing(14)
        layout.addWidget(page_title("Settings"))

        # What HiveMind may use.
        use_box, use = card("What HiveMind may use")
        form = QFormLayout()
        self.cores_cap = QCheckBox("At most")
        self.cores_spin = QDoubleSpinBox()
        self.cores_spin.setRange(0.0, 1024.0)
        self.cores_spin.setSingleStep(0.5)
        self.cores_spin.setDecimals(1)
        self.cores_spin.setSuffix(" cores")
        self.cores_error = sentence(error=True)
        form.addRow("CPU cores", _row(self.cores_cap, self.cores_spin, self.cores_error))
        self.percent_cap = QCheckBox("At most")
        self.percent_spin = QSpinBox()
        self.percent_spin.setRange(0, 1000)
        self.percent_spin.setSuffix(" % of the cores")
        self.percent_error = sentence(error=True)
        form.addRow("CPU share", _row(self.percent_cap, self.percent_spin, self.percent_error))
        self.memory_cap = QCheckBox("At most")
        self.memory_spin = QDoubleSpinBox()
        self.memory_spin.setRange(0.0, 4096.0)
        self.memory_spin.setSingleStep(0.5)
        self.memory_spin.setDecimals(1)
        self.memory_spin.setSuffix(" GB")
        self.memory_error = sentence(error=True)
        form.addRow("Memory", _row(self.memory_cap, self.memory_spin, self.memory_error))
        self.use_gpu = QCheckBox("Let tasks use the GPU")
        form.addRow("GPU", self.use_gpu)
        use.addLayout(form)
        use.addWidget(sentence("A changed limit applies from the next task; no restart needed."))
        layout.addWidget(use_box)

        # When HiveMind may work.
        when_box, when = card("When HiveMind may work")
        when_form = QFormLayout()
        self.idle_only = QCheckBox("Only when the computer is idle, after")
        self.idle_minutes = QSpinBox()
        self.idle_minutes.setRange(0, 10_000)
        self.idle_minutes.setSuffix(" minutes without input")
        self.idle_error = sentence(error=True)
        when_form.addRow("Idle", _row(self.idle_only, self.idle_minutes, self.idle_error))
        self.pause_on_battery = QCheckBox("Pause while on battery")
        when_form.addRow("Battery", self.pause_on_battery)
        when.addLayout(when_form)
        when.addWidget(QLabel("Schedule (no window: any time)"))
        self.schedule_rows = QVBoxLayout()
        when.addLayout(self.schedule_rows)
        self.add_window_button = QPushButton("Add a time window")
        when.addWidget(_row(self.add_window_button))
        self.schedule_error = sentence(error=True)
        when.addWidget(self.schedule_error)
        layout.addWidget(when_box)

        # Pausing.
        pause_box, pause = card("When you pause HiveMind")
        self.finish_on_pause = QRadioButton("Let the running task finish, then take no new work")
        self.stop_on_pause = QRadioButton("Stop the running task at once")
        self.pause_group = QButtonGroup(self)
        self.pause_group.addButton(self.finish_on_pause)
        self.pause_group.addButton(self.stop_on_pause)
        pause.addWidget(self.finish_on_pause)
        pause.addWidget(self.stop_on_pause)
        layout.addWidget(pause_box)

        # This app.
        app_box, app = card("This app")
        app_form = QFormLayout()
        self.start_at_login = QCheckBox("Start HiveMind when I log in")
        app_form.addRow("Start at login", self.start_at_login)
        self.coordinator = QLineEdit()
        self.coordinator.setPlaceholderText("coordinator.example.org:50051")
        self.coordinator_error = sentence(error=True)
        app_form.addRow(
            "Coordinator", _row(self.coordinator, self.coordinator_error, stretch=False)
        )
        app.addLayout(app_form)
        layout.addWidget(app_box)

        buttons = QHBoxLayout()
        self.save_button = QPushButton("Save")
        self.save_button.setDefault(True)
        self.save_status = sentence("")
        buttons.addWidget(self.save_button)
        buttons.addWidget(self.save_status, 1)
        layout.addLayout(buttons)
        layout.addStretch(1)

    def add_schedule_row(self) -> ScheduleRow:
        row = ScheduleRow()
        self.schedule_rows.addWidget(row)
        return row

    def schedule(self) -> list[ScheduleRow]:
        rows = []
        for index in range(self.schedule_rows.count()):
            item = self.schedule_rows.itemAt(index)
            widget = item.widget() if item is not None else None
            if isinstance(widget, ScheduleRow):
                rows.append(widget)
        return rows

    def remove_schedule_row(self, row: ScheduleRow) -> None:
        self.schedule_rows.removeWidget(row)
        row.deleteLater()

    def error_labels(self) -> list[QLabel]:
        return [
            self.cores_error,
            self.percent_error,
            self.memory_error,
            self.idle_error,
            self.schedule_error,
            self.coordinator_error,
        ]
