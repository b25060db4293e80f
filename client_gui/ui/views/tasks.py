"""The Tasks view (layout only): the task running now with its progress and log tail, and the history."""

from __future__ import annotations

from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFormLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QTableWidget,
    QVBoxLayout,
    QWidget,
)

from client_gui.ui.views.common import card, page_title, sentence

LOG_TAIL_LINES = 500
HISTORY_COLUMNS = ("Finished", "Job", "Task", "Status", "Outcome")


class TasksView(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(24, 20, 24, 20)
        layout.setSpacing(14)
        layout.addWidget(page_title("Tasks"))

        current_box, current = card("Running now")
        self.idle_note = sentence("No task is running on this computer.")
        current.addWidget(self.idle_note)
        form = QFormLayout()
        self.job_label = QLabel("—")
        self.image_label = QLabel("—")
        self.elapsed_label = QLabel("—")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setTextVisible(True)
        form.addRow("Job", self.job_label)
        form.addRow("Image", self.image_label)
        form.addRow("Elapsed", self.elapsed_label)
        form.addRow("Time limit used", self.progress)
        current.addLayout(form)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(LOG_TAIL_LINES)
        self.log.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.log.setPlaceholderText("The running task's output appears here.")
        self.log.setMinimumHeight(140)
        current.addWidget(self.log, 1)
        layout.addWidget(current_box, 3)

        history_box, history = card("History")
        self.history = QTableWidget(0, len(HISTORY_COLUMNS))
        self.history.setHorizontalHeaderLabels(list(HISTORY_COLUMNS))
        self.history.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.history.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.history.verticalHeader().setVisible(False)
        self.history.setAlternatingRowColors(True)
        header = self.history.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        history.addWidget(self.history)
        layout.addWidget(history_box, 2)
