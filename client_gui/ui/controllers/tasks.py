"""Behind the Tasks view: follows the engine's task events; a one-second timer moves the progress bar
(elapsed / the task's time limit)."""

from __future__ import annotations

from datetime import datetime

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QTableWidgetItem

from client_gui.engine.worker import TaskFinished, TaskLog, TaskStarted
from client_gui.ui.context import AppContext
from client_gui.ui.engine_controller import CurrentTask, TaskRecord
from client_gui.ui.views.tasks import LOG_TAIL_LINES, TasksView

TICK_MS = 1_000


def format_duration(seconds: float) -> str:
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def local_time(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso


STATUS_WORDS = {
    "succeeded": "Succeeded",
    "failed": "Failed",
    "timeout": "Timed out",
    "oom": "Out of memory",
    "output_too_large": "Output too large",
    "cancelled": "Stopped",
    "error": "Error",
}


class TasksController(QObject):
    def __init__(self, view: TasksView, context: AppContext) -> None:
        super().__init__(view)
        self.view = view
        self.engine = context.engine
        self._shown = ""
        self.engine.task_started.connect(self._started)
        self.engine.task_logs.connect(self._logs)
        self.engine.task_finished.connect(self._finished)
        self.timer = QTimer(self)
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self._tick)
        self._show_history()
        self._show_current()

    def _current(self) -> CurrentTask | None:
        tasks = list(self.engine.current.values())
        return tasks[0] if tasks else None

    def _started(self, event: TaskStarted) -> None:
        self._show_current()

    def _logs(self, batch: list[TaskLog]) -> None:
        lines = [event.text.rstrip("\n") for event in batch if event.lease_id == self._shown]
        if lines:
            # One append per batch: the view keeps only the last LOG_TAIL_LINES anyway.
            self.view.log.appendPlainText("\n".join(lines[-LOG_TAIL_LINES:]))

    def _finished(self, event: TaskFinished) -> None:
        self._show_current()
        self._show_history()

    def _show_current(self) -> None:
        view = self.view
        task = self._current()
        running = task is not None
        view.idle_note.setVisible(not running)
        if task is None:
            self._shown = ""
            self.timer.stop()
            view.job_label.setText("—")
            view.image_label.setText("—")
            view.elapsed_label.setText("—")
            view.progress.setValue(0)
            view.progress.setFormat("")
            return
        if task.lease_id != self._shown:
            self._shown = task.lease_id
            view.log.setPlainText("\n".join(line.rstrip("\n") for line in task.log))
        view.job_label.setText(task.job_id)
        view.image_label.setText(task.image)
        self.timer.start()
        self._tick()

    def _tick(self) -> None:
        task = self._current()
        if task is None:
            self.timer.stop()
            return
        elapsed = task.elapsed_s()
        limit = task.timeout_s
        self.view.elapsed_label.setText(format_duration(elapsed))
        if limit > 0:
            self.view.progress.setValue(min(1000, round(1000 * elapsed / limit)))
            self.view.progress.setFormat(f"{format_duration(elapsed)} of {format_duration(limit)}")

    def _show_history(self) -> None:
        table = self.view.history
        records: list[TaskRecord] = self.engine.history
        table.setRowCount(len(records))
        for row, record in enumerate(records):
            status = STATUS_WORDS.get(record.status, record.status)
            cells = (
                local_time(record.finished_at),
                record.job_id,
                record.task_id,
                status,
                record.outcome.replace("_", " "),
            )
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if column == 3 and record.reason:
                    item.setToolTip(record.reason)
                table.setItem(row, column, item)
