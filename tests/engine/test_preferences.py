"""The volunteer's settings: checked with sentences, saved atomically in the user's config folder, read
back across restarts, and turned into the worker's limits."""

from __future__ import annotations

import datetime
import json
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client_gui.engine.preferences import (
    Preferences,
    PreferencesError,
    ScheduleWindow,
    check_coordinator_address,
)

T = datetime.time
WEEKDAYS = frozenset(range(5))


def full_preferences() -> Preferences:
    return Preferences(
        coordinator_address="hive.example.org:50051",
        username="ada",
        max_cores=1.5,
        max_cpu_percent=50,
        max_memory_gb=1.0,
        use_gpu=False,
        idle_only=True,
        idle_minutes=10,
        pause_on_battery=False,
        schedule=(
            ScheduleWindow(WEEKDAYS, T(22, 0), T(6, 30)),
            ScheduleWindow(frozenset({5, 6}), T(0, 0), T(0, 0)),
        ),
        start_at_login=True,
        stop_running_on_pause=True,
    )


def test_settings_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "app.json"
    prefs = full_preferences()
    prefs.save(path)
    assert Preferences.load(path) == prefs
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_no_file_gives_the_defaults(tmp_path: Path) -> None:
    assert Preferences.load(tmp_path / "missing.json") == Preferences()


def test_settings_live_in_the_users_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert Preferences.default_path() == tmp_path / "cfg" / "hivemind" / "app.json"
    Preferences(username="grace").save()
    assert (
        json.loads((tmp_path / "cfg" / "hivemind" / "app.json").read_text())["username"] == "grace"
    )
    assert Preferences.load().username == "grace"


def test_unknown_and_missing_keys(tmp_path: Path) -> None:
    path = tmp_path / "app.json"
    path.write_text(json.dumps({"version": 7, "idle_minutes": 9, "from_the_future": [1, 2]}))
    assert Preferences.load(path) == Preferences(idle_minutes=9)


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        ("{not json", "damaged"),
        ("[1, 2]", "damaged"),
        ('{"max_cpu_percent": "fifty"}', "max_cpu_percent is not a whole number"),
        ('{"use_gpu": "yes"}', "use_gpu is not true or false"),
        ('{"schedule": [{"days": [0], "start": "25:00", "end": "06:00"}]}', "damaged"),
        ('{"schedule": [{"days": "monday", "start": "22:00", "end": "06:00"}]}', "day numbers"),
    ],
)
def test_a_damaged_file_is_refused_with_a_sentence(
    tmp_path: Path, content: str, detail: str
) -> None:
    path = tmp_path / "app.json"
    path.write_text(content)
    with pytest.raises(PreferencesError) as error:
        Preferences.load(path)
    message = str(error.value)
    assert str(path) in message and detail in message
    assert message.endswith("Delete it to start again from the default settings.")
    assert path.read_text() == content  # left for the person to look at


def test_a_file_with_a_setting_this_computer_cannot_use(tmp_path: Path) -> None:
    path = tmp_path / "app.json"
    path.write_text(json.dumps({"max_memory_gb": 1e6}))
    with pytest.raises(
        PreferencesError, match="holds a setting this computer cannot use: The memory"
    ):
        Preferences.load(path)


def test_invalid_settings_are_not_saved(tmp_path: Path) -> None:
    path = tmp_path / "app.json"
    Preferences(idle_minutes=7).save(path)
    before = path.read_bytes()
    with pytest.raises(PreferencesError, match="idle time must be between 1 and 240 minutes"):
        Preferences(idle_minutes=0).save(path)
    assert path.read_bytes() == before


def test_saving_where_it_cannot_write_says_so(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(PreferencesError, match="could not save its settings to"):
        Preferences().save(blocker / "app.json")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"max_memory_gb": 40.0},
            "The memory cap must be between 0.5 GB and the 31 GB this computer has.",
        ),
        (
            {"max_memory_gb": 0.25},
            "The memory cap must be between 0.5 GB and the 31 GB this computer has.",
        ),
        ({"max_cpu_percent": 0}, "The CPU cap must be between 1 and 100 percent."),
        ({"max_cpu_percent": 101}, "The CPU cap must be between 1 and 100 percent."),
        ({"max_cores": 9.0}, "The core cap must be between 0.5 and the 8 cores this computer has."),
        ({"max_cores": 0.2}, "The core cap must be between 0.5 and the 8 cores this computer has."),
        ({"idle_minutes": 0}, "The idle time must be between 1 and 240 minutes."),
        ({"idle_minutes": 241}, "The idle time must be between 1 and 240 minutes."),
        (
            {"schedule": (ScheduleWindow(frozenset(), T(9), T(17)),)},
            "Schedule window 1 (09:00-17:00) names no day. Pick at least one day, or remove the window.",
        ),
        (
            {"schedule": (ScheduleWindow(frozenset({7}), T(9), T(17)),)},
            "Schedule window 1 names a day that does not exist; days are Monday to Sunday.",
        ),
        (
            {"coordinator_address": "hive.example.org"},
            "The coordinator address must look like host:port (for example "
            "coordinator.example.org:50051), not 'hive.example.org'.",
        ),
    ],
)
def test_each_bad_setting_gets_a_sentence(changes: dict[str, Any], message: str) -> None:
    prefs = replace(Preferences(), **changes)
    with pytest.raises(PreferencesError) as error:
        prefs.validated(logical_cores=8, total_memory_gb=31.3)
    assert str(error.value) == message


def test_settings_at_the_limits_are_accepted() -> None:
    edge = Preferences(
        max_cores=8,
        max_cpu_percent=100,
        max_memory_gb=31.3,
        idle_minutes=240,
        coordinator_address=" h:1 ",
    )
    assert edge.validated(logical_cores=8, total_memory_gb=31.3) == replace(
        edge, coordinator_address="h:1"
    )
    low = Preferences(max_cores=0.5, max_cpu_percent=1, max_memory_gb=0.5, idle_minutes=1)
    assert low.validated(logical_cores=8, total_memory_gb=31.3) == low


@pytest.mark.parametrize(
    "address", ["h:1", "hive.example.org:50051", "[::1]:50051", "10.0.0.2:65535"]
)
def test_good_coordinator_addresses(address: str) -> None:
    assert check_coordinator_address(f" {address} ") == address


@pytest.mark.parametrize(
    "address",
    ["", "nohost", "host:", ":80", "host:0", "host:65536", "ho st:80", "http://h:80", "h:8o"],
)
def test_bad_coordinator_addresses(address: str) -> None:
    with pytest.raises(PreferencesError, match="must look like host:port"):
        check_coordinator_address(address)


@pytest.mark.parametrize(
    ("max_cores", "percent", "logical", "expected"),
    [
        (None, None, 8, None),
        (4.0, None, 8, 4.0),
        (12.0, None, 8, 8.0),  # never more than the computer has
        (None, 50, 8, 4.0),
        (6.0, 25, 8, 2.0),  # the smaller cap wins
        (1.5, 50, 8, 1.5),
        (None, 1, 8, 1.0),  # a percent cap still leaves one core
        (None, 10, 1, 1.0),
        (None, 30, 10, 3.0),
        (None, 100, 16, 16.0),
    ],
)
def test_limits_for_the_worker(
    max_cores: float | None, percent: int | None, logical: int, expected: float | None
) -> None:
    prefs = Preferences(
        max_cores=max_cores, max_cpu_percent=percent, max_memory_gb=2.5, use_gpu=False
    )
    limits = prefs.to_limits(logical_cores=logical)
    assert limits.max_cores == expected
    assert limits.max_memory_gb == 2.5
    assert limits.use_gpu is False


@given(
    logical=st.integers(1, 256),
    max_cores=st.none() | st.floats(0.5, 256),
    percent=st.none() | st.integers(1, 100),
)
def test_the_core_cap_never_exceeds_a_setting_or_the_computer(
    logical: int, max_cores: float | None, percent: int | None
) -> None:
    cores = Preferences(max_cores=max_cores, max_cpu_percent=percent).to_limits(logical).max_cores
    if max_cores is None and percent is None:
        assert cores is None
        return
    assert cores is not None
    assert 0 < cores <= logical
    if max_cores is not None:
        assert cores <= max_cores
    if percent is not None:
        assert cores <= max(logical * percent / 100, 1.0) + 0.005


def test_schedule_windows_describe_themselves() -> None:
    assert ScheduleWindow(WEEKDAYS, T(22), T(6, 30)).describe() == "Mon-Fri 22:00-06:30 (overnight)"
    assert ScheduleWindow(frozenset({5, 6}), T(9), T(17)).describe() == "Sat-Sun 09:00-17:00"
    assert ScheduleWindow(frozenset({0, 2}), T(9), T(17)).describe() == "Mon, Wed 09:00-17:00"
