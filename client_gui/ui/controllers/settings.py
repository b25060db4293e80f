"""Behind the Settings view: shows the saved settings, checks what the person entered (a setting that
cannot be used gets its sentence next to its control and nothing is saved), and on Save hands the new
settings to the app, which applies them at once (limits from the next task) and writes them to disk."""

from __future__ import annotations

import dataclasses
import datetime

from PySide6.QtCore import QObject, QTime

from client_gui.engine.preferences import Preferences, PreferencesError, ScheduleWindow
from client_gui.ui.context import AppContext
from client_gui.ui.views.common import ERROR_STYLE, OK_STYLE, show_error
from client_gui.ui.views.settings import ScheduleRow, SettingsView

# Which error label belongs to which setting.
FIELD_LABELS = {
    "max_cores": "cores_error",
    "max_cpu_percent": "percent_error",
    "max_memory_gb": "memory_error",
    "idle_minutes": "idle_error",
    "schedule": "schedule_error",
    "coordinator_address": "coordinator_error",
}


def field_errors(prefs: Preferences) -> dict[str, str]:
    """The sentence for each setting this computer cannot use, checked one at a time so each sentence
    lands next to its own control."""
    errors: dict[str, str] = {}
    defaults = Preferences()
    for name in FIELD_LABELS:
        alone = dataclasses.replace(defaults, **{name: getattr(prefs, name)})
        try:
            alone.validated()
        except PreferencesError as exc:
            errors[name] = str(exc)
    return errors


def _qtime(value: datetime.time) -> QTime:
    return QTime(value.hour, value.minute)


def _time(value: QTime) -> datetime.time:
    return datetime.time(value.hour(), value.minute())


class SettingsController(QObject):
    def __init__(self, view: SettingsView, context: AppContext) -> None:
        super().__init__(view)
        self.view = view
        self.context = context
        view.save_button.clicked.connect(self.save)
        view.add_window_button.clicked.connect(self.add_window)
        for check, control in (
            (view.cores_cap, view.cores_spin),
            (view.percent_cap, view.percent_spin),
            (view.memory_cap, view.memory_spin),
            (view.idle_only, view.idle_minutes),
        ):
            check.toggled.connect(control.setEnabled)
        self.show(context.preferences())

    # -- view <-> preferences ---------------------------------------------------------------------

    def show(self, prefs: Preferences) -> None:
        view = self.view
        view.cores_cap.setChecked(prefs.max_cores is not None)
        view.cores_spin.setValue(prefs.max_cores if prefs.max_cores is not None else 1.0)
        view.percent_cap.setChecked(prefs.max_cpu_percent is not None)
        view.percent_spin.setValue(
            prefs.max_cpu_percent if prefs.max_cpu_percent is not None else 50
        )
        view.memory_cap.setChecked(prefs.max_memory_gb is not None)
        view.memory_spin.setValue(prefs.max_memory_gb if prefs.max_memory_gb is not None else 2.0)
        view.use_gpu.setChecked(prefs.use_gpu)
        view.idle_only.setChecked(prefs.idle_only)
        view.idle_minutes.setValue(prefs.idle_minutes)
        view.pause_on_battery.setChecked(prefs.pause_on_battery)
        for row in view.schedule():
            view.remove_schedule_row(row)
        for window in prefs.schedule:
            row = self.add_window()
            for day, button in enumerate(row.days):
                button.setChecked(day in window.days)
            row.start.setTime(_qtime(window.start))
            row.end.setTime(_qtime(window.end))
        view.start_at_login.setChecked(prefs.start_at_login)
        view.coordinator.setText(prefs.coordinator_address)
        for check, control in (
            (view.cores_cap, view.cores_spin),
            (view.percent_cap, view.percent_spin),
            (view.memory_cap, view.memory_spin),
            (view.idle_only, view.idle_minutes),
        ):
            control.setEnabled(check.isChecked())
        (view.stop_on_pause if prefs.stop_running_on_pause else view.finish_on_pause).setChecked(
            True
        )

    def read(self) -> Preferences:
        """What the view shows, as settings (not yet checked)."""
        view = self.view
        schedule = tuple(
            ScheduleWindow(
                days=frozenset(day for day, button in enumerate(row.days) if button.isChecked()),
                start=_time(row.start.time()),
                end=_time(row.end.time()),
            )
            for row in view.schedule()
        )
        return dataclasses.replace(
            self.context.preferences(),
            max_cores=view.cores_spin.value() if view.cores_cap.isChecked() else None,
            max_cpu_percent=view.percent_spin.value() if view.percent_cap.isChecked() else None,
            max_memory_gb=view.memory_spin.value() if view.memory_cap.isChecked() else None,
            use_gpu=view.use_gpu.isChecked(),
            idle_only=view.idle_only.isChecked(),
            idle_minutes=view.idle_minutes.value(),
            pause_on_battery=view.pause_on_battery.isChecked(),
            schedule=schedule,
            start_at_login=view.start_at_login.isChecked(),
            coordinator_address=view.coordinator.text(),
            stop_running_on_pause=view.stop_on_pause.isChecked(),
        )

    # -- actions ------------------------------------------------------------------------------------

    def add_window(self) -> ScheduleRow:
        row = self.view.add_schedule_row()
        row.remove_button.clicked.connect(lambda: self.view.remove_schedule_row(row))
        return row

    def save(self) -> bool:
        """Check and save; returns whether the settings were saved."""
        view = self.view
        for label in view.error_labels():
            show_error(label, "")
        previous = self.context.preferences()
        prefs = self.read()
        errors = field_errors(prefs)
        for name, message in errors.items():
            show_error(getattr(view, FIELD_LABELS[name]), message)
        try:
            checked = prefs.validated()
        except PreferencesError as exc:
            view.save_status.setStyleSheet(ERROR_STYLE)
            view.save_status.setText(
                str(exc) if not errors else "Nothing was saved: correct the settings marked above."
            )
            return False
        self.context.save_preferences(checked)
        note = "Saved. New limits apply from the next task."
        if checked.coordinator_address != previous.coordinator_address:
            note += (
                f" HiveMind connects to {checked.coordinator_address} the next time it starts; "
                "you will be asked to sign in there."
            )
        view.save_status.setStyleSheet(OK_STYLE)
        view.save_status.setText(note)
        return True
