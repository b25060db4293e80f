"""The Settings view: every setting survives a restart of the app; a setting this computer cannot use
gets its sentence next to its control and nothing is saved; start at login reaches the autostart entry."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QTime
from pytestqt.qtbot import QtBot

from client_gui.engine.preferences import Preferences, ScheduleWindow
from client_gui.platform.autostart import MemoryAutostart
from client_gui.ui.app import HiveMindApp
from client_gui.ui.context import AppContext
from client_gui.ui.controllers.settings import SettingsController
from client_gui.ui.views.settings import SettingsView
from tests.ui.conftest import APP_READY_TIMEOUT_MS, MemoryPreferences, wait_state


def settings_of(app: HiveMindApp) -> SettingsController:
    return next(c for c in app.controllers if isinstance(c, SettingsController))


def test_settings_persist_across_a_restart_and_apply_at_once(
    qtbot: QtBot,
    signed_in_app: HiveMindApp,
    make_app: Callable[..., HiveMindApp],
    config_dir: Path,
) -> None:
    app = signed_in_app
    autostart = app.options.autostart
    assert isinstance(autostart, MemoryAutostart) and not autostart.is_enabled()
    view = settings_of(app).view
    view.cores_cap.setChecked(True)
    view.cores_spin.setValue(1.5)
    view.percent_cap.setChecked(True)
    view.percent_spin.setValue(60)
    view.memory_cap.setChecked(True)
    view.memory_spin.setValue(1.0)
    view.use_gpu.setChecked(False)
    view.idle_only.setChecked(True)
    view.idle_minutes.setValue(7)
    view.pause_on_battery.setChecked(False)
    qtbot.mouseClick(view.add_window_button, _left())
    row = view.schedule()[0]
    for day in range(5):
        row.days[day].setChecked(True)
    row.start.setTime(QTime(22, 0))
    row.end.setTime(QTime(6, 30))
    view.start_at_login.setChecked(True)
    view.stop_on_pause.setChecked(True)
    qtbot.mouseClick(view.save_button, _left())
    assert view.save_status.text().startswith("Saved.")

    expected = Preferences(
        coordinator_address=app.prefs.coordinator_address,
        username=app.prefs.username,
        max_cores=1.5,
        max_cpu_percent=60,
        max_memory_gb=1.0,
        use_gpu=False,
        idle_only=True,
        idle_minutes=7,
        pause_on_battery=False,
        schedule=(ScheduleWindow(frozenset(range(5)), datetime.time(22, 0), datetime.time(6, 30)),),
        start_at_login=True,
        stop_running_on_pause=True,
    )
    # Applied at once: the worker's limits, start at login.
    assert app.engine is not None and app.engine.worker is not None
    assert app.engine.worker.limits == expected.to_limits()
    qtbot.waitUntil(autostart.is_enabled, timeout=10_000)
    wait_state(qtbot, app, "paused")  # only when idle, and the simulated computer is in use
    app.background.wait_idle(10)
    assert Preferences.load(config_dir / "app.json") == expected

    # A new app on the same folder shows the same settings.
    app.shutdown(30)
    again = make_app()
    with qtbot.waitSignal(again.ready, timeout=APP_READY_TIMEOUT_MS):
        again.start()
    assert again.prefs == expected
    assert settings_of(again).read() == expected
    shown = settings_of(again).view
    assert shown.cores_spin.value() == 1.5 and shown.idle_minutes.value() == 7
    assert [b.isChecked() for b in shown.schedule()[0].days] == [True] * 5 + [False] * 2


def test_a_setting_that_cannot_be_used_is_explained_next_to_it_and_nothing_is_saved(
    qtbot: QtBot, app_context: AppContext, saved_preferences: MemoryPreferences
) -> None:
    view = SettingsView()
    qtbot.addWidget(view)
    controller = SettingsController(view, app_context)
    before = saved_preferences.current

    view.coordinator.setText("my coordinator")
    view.cores_cap.setChecked(True)
    view.cores_spin.setValue(1000)
    qtbot.mouseClick(view.add_window_button, _left())  # a window with no day
    assert not controller.save()
    assert view.coordinator_error.text().startswith("The coordinator address must look like")
    assert view.cores_error.text().startswith("The core cap must be between 0.5 and the")
    assert view.schedule_error.text().startswith("Schedule window 1 (09:00-17:00) names no day.")
    assert view.memory_error.text() == ""
    assert view.save_status.text() == "Nothing was saved: correct the settings marked above."
    assert saved_preferences.saved == [] and saved_preferences.current == before

    # Corrected, it saves, and the sentences go away.
    view.coordinator.setText(before.coordinator_address)
    view.cores_spin.setValue(1.0)
    view.schedule()[0].days[6].setChecked(True)
    assert controller.save()
    assert all(label.text() == "" for label in view.error_labels())
    assert saved_preferences.current.max_cores == 1.0
    assert saved_preferences.current.schedule[0].days == frozenset({6})


def _left():  # type: ignore[no-untyped-def]
    from PySide6.QtCore import Qt

    return Qt.MouseButton.LeftButton
