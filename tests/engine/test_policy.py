"""When HiveMind may work: schedule windows (overnight ones too), pause on battery, only when idle. The
clock and the idle and power readings are injected, so each case is exact."""

from __future__ import annotations

import datetime
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client_gui.engine.policy import (
    IDLE_UNKNOWN_REASON,
    ON_BATTERY_REASON,
    WorkPolicy,
    in_schedule,
    next_opening,
)
from client_gui.engine.preferences import Preferences, ScheduleWindow
from client_gui.platform.idle import ManualIdleSource
from client_gui.platform.power import ManualPowerSource

T = datetime.time
MONDAY = datetime.date(2026, 11, 23)  # a Monday
WEEKDAYS = frozenset(range(5))
OFFICE = ScheduleWindow(WEEKDAYS, T(9), T(17))
NIGHTS = ScheduleWindow(frozenset({0}), T(22), T(6))  # Monday night into Tuesday


def at(day: int, hour: int, minute: int = 0) -> datetime.datetime:
    """``day`` days after Monday 23 Nov 2026, at ``hour:minute``."""
    return datetime.datetime.combine(MONDAY + datetime.timedelta(days=day), T(hour, minute))


def policy(
    now: datetime.datetime, idle: float | None = 0.0, battery: bool | None = False
) -> WorkPolicy:
    return WorkPolicy(ManualIdleSource(idle), ManualPowerSource(battery), clock=lambda: now)


@pytest.mark.parametrize(
    ("schedule", "now", "reason"),
    [
        ((), at(2, 3), ""),
        ((OFFICE,), at(0, 9), ""),
        ((OFFICE,), at(0, 16, 59), ""),
        ((OFFICE,), at(0, 8), "Outside the work schedule. The next window opens today at 09:00."),
        (
            (OFFICE,),
            at(0, 17),
            "Outside the work schedule. The next window opens tomorrow at 09:00.",
        ),
        (
            (OFFICE,),
            at(4, 18),
            "Outside the work schedule. The next window opens on Monday at 09:00.",
        ),
        (
            (OFFICE,),
            at(5, 12),
            "Outside the work schedule. The next window opens on Monday at 09:00.",
        ),
        ((NIGHTS,), at(0, 22), ""),
        ((NIGHTS,), at(0, 23, 59), ""),
        ((NIGHTS,), at(1, 3), ""),  # past midnight, still Monday's window
        (
            (NIGHTS,),
            at(1, 6),
            "Outside the work schedule. The next window opens on Monday at 22:00.",
        ),
        ((NIGHTS,), at(0, 21), "Outside the work schedule. The next window opens today at 22:00."),
        ((NIGHTS,), at(0, 3), "Outside the work schedule. The next window opens today at 22:00."),
        (
            (NIGHTS,),
            at(6, 23),
            "Outside the work schedule. The next window opens tomorrow at 22:00.",
        ),
        (
            (ScheduleWindow(frozenset({0}), T(6), T(7)),),
            at(0, 7),
            "Outside the work schedule. The next window opens next Monday at 06:00.",
        ),
        ((ScheduleWindow(frozenset({6}), T(12), T(12)),), at(7, 11), ""),  # a whole day from noon
        (
            (OFFICE, NIGHTS),
            at(0, 20),
            "Outside the work schedule. The next window opens today at 22:00.",
        ),
    ],
)
def test_schedule_windows(
    schedule: tuple[ScheduleWindow, ...], now: datetime.datetime, reason: str
) -> None:
    decision = policy(now).decide(Preferences(schedule=schedule))
    assert (decision.allowed, decision.reason) == (reason == "", reason)


@pytest.mark.parametrize(
    ("battery", "pause_on_battery", "allowed"),
    [(True, True, False), (True, False, True), (False, True, True), (None, True, True)],
)
def test_pause_on_battery(battery: bool | None, pause_on_battery: bool, allowed: bool) -> None:
    decision = policy(at(0, 12), battery=battery).decide(
        Preferences(pause_on_battery=pause_on_battery)
    )
    assert decision.allowed is allowed
    assert decision.reason == ("" if allowed else ON_BATTERY_REASON)


@pytest.mark.parametrize(
    ("idle", "minutes", "reason"),
    [
        (120.0, 5, "Waiting for 5 idle minutes (idle for 2 min)."),
        (299.9, 5, "Waiting for 5 idle minutes (idle for 4 min)."),
        (40.0, 1, "Waiting for 1 idle minute (idle for less than a minute)."),
        (300.0, 5, ""),
        (7200.0, 120, ""),
        (None, 5, IDLE_UNKNOWN_REASON),
    ],
)
def test_idle_only(idle: float | None, minutes: int, reason: str) -> None:
    decision = policy(at(0, 12), idle=idle).decide(
        Preferences(idle_only=True, idle_minutes=minutes)
    )
    assert (decision.allowed, decision.reason) == (reason == "", reason)


def test_idle_that_cannot_be_read_says_how_to_turn_idle_only_off() -> None:
    assert "cannot be read on this desktop" in IDLE_UNKNOWN_REASON
    assert 'Turn off "Only when idle" in Settings' in IDLE_UNKNOWN_REASON
    assert policy(at(0, 12), idle=None).decide(Preferences(idle_only=False)).allowed


def test_idle_changes_are_seen_on_the_next_decision() -> None:
    idle = ManualIdleSource(0.0)
    decide = WorkPolicy(idle, ManualPowerSource(False), clock=lambda: at(0, 12)).decide
    prefs = Preferences(idle_only=True, idle_minutes=5)
    assert not decide(prefs).allowed
    idle.set_idle_seconds(301)
    assert decide(prefs).allowed
    idle.set_idle_seconds(1)  # the person is back
    assert decide(prefs).reason == "Waiting for 5 idle minutes (idle for less than a minute)."


def test_the_first_reason_is_given_schedule_then_battery_then_idle() -> None:
    prefs = Preferences(schedule=(OFFICE,), idle_only=True)
    assert policy(at(0, 8), idle=0, battery=True).decide(prefs).reason.startswith("Outside")
    assert policy(at(0, 10), idle=0, battery=True).decide(prefs).reason == ON_BATTERY_REASON
    assert policy(at(0, 10), idle=0, battery=False).decide(prefs).reason.startswith("Waiting")


# --- property: the schedule against a minute-by-minute map of the week -----------------------------

WEEK_MINUTES = 7 * 24 * 60


def week_map(schedule: Sequence[ScheduleWindow]) -> list[bool]:
    """Which minutes of the week (Monday 00:00 = 0) the schedule covers, built the slow, obvious way."""
    covered = [False] * WEEK_MINUTES
    for window in schedule:
        start = window.start.hour * 60 + window.start.minute
        end = window.end.hour * 60 + window.end.minute
        length = (end - start) % 1440 or 1440
        for day in window.days:
            for minute in range(length):
                covered[(day * 1440 + start + minute) % WEEK_MINUTES] = True
    return covered


minute_times = st.builds(T, st.integers(0, 23), st.integers(0, 59))
windows = st.builds(
    ScheduleWindow,
    st.frozensets(st.integers(0, 6), min_size=1),
    minute_times,
    minute_times,
)


@settings(max_examples=150, deadline=None)
@given(
    schedule=st.lists(windows, min_size=1, max_size=3),
    day=st.integers(0, 13),
    moment=minute_times,
)
def test_schedule_matches_the_weekly_map(
    schedule: list[ScheduleWindow], day: int, moment: T
) -> None:
    now = datetime.datetime.combine(MONDAY + datetime.timedelta(days=day), moment)
    covered = week_map(schedule)
    index = now.weekday() * 1440 + now.hour * 60 + now.minute
    assert in_schedule(schedule, now) == covered[index]
    decision = policy(now).decide(Preferences(schedule=tuple(schedule)))
    assert decision.allowed == covered[index]
    if not covered[index]:
        # The window opens at the first covered minute after now, and the sentence names it.
        ahead = next(
            step for step in range(1, WEEK_MINUTES + 1) if covered[(index + step) % WEEK_MINUTES]
        )
        opening = next_opening(schedule, now)
        assert opening == now + datetime.timedelta(minutes=ahead)
        assert opening.strftime("%H:%M") in decision.reason
