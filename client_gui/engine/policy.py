"""Whether HiveMind may work right now under the volunteer's settings: schedule windows, pause on battery
and "only when idle". Pure apart from the idle and power sources and the clock, which are injected, so
the same settings and readings always give the same decision and the same sentence.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from client_gui.engine.preferences import DAY_NAMES, Preferences, ScheduleWindow

if TYPE_CHECKING:
    from client_gui.platform.idle import IdleSource
    from client_gui.platform.power import PowerSource

logger = logging.getLogger(__name__)

ON_BATTERY_REASON = (
    "Paused while this computer runs on battery. Work resumes when it is plugged in, "
    'or turn off "Pause on battery" in Settings.'
)
IDLE_UNKNOWN_REASON = (
    "Idle time cannot be read on this desktop, so work that waits for an idle computer never starts. "
    'Turn off "Only when idle" in Settings to let HiveMind work.'
)


@dataclass(frozen=True)
class Decision:
    """``allowed``, or why not: ``reason`` is a sentence for the tray and the status line."""

    allowed: bool
    reason: str = ""


ALLOWED = Decision(True, "")


def in_window(window: ScheduleWindow, now: datetime.datetime) -> bool:
    """Whether local time ``now`` lies in ``window`` (start included, end excluded)."""
    moment = now.time().replace(tzinfo=None)
    day = now.weekday()
    if not window.overnight:
        return day in window.days and window.start <= moment < window.end
    # Past midnight: the part after start belongs to the opening day, the part before end to the next.
    return (day in window.days and moment >= window.start) or (
        (day - 1) % 7 in window.days and moment < window.end
    )


def in_schedule(schedule: Sequence[ScheduleWindow], now: datetime.datetime) -> bool:
    """An empty schedule means any time."""
    return not schedule or any(in_window(window, now) for window in schedule)


def next_opening(
    schedule: Sequence[ScheduleWindow], now: datetime.datetime
) -> datetime.datetime | None:
    """The first moment after ``now`` at which a window of ``schedule`` opens; None for no windows."""
    candidates: list[datetime.datetime] = []
    for offset in range(8):  # a week and a day: today's window may already have opened
        date = now.date() + datetime.timedelta(days=offset)
        for window in schedule:
            if date.weekday() in window.days:
                opening = datetime.datetime.combine(date, window.start, tzinfo=now.tzinfo)
                if opening > now:
                    candidates.append(opening)
    return min(candidates, default=None)


def describe_when(moment: datetime.datetime, now: datetime.datetime) -> str:
    """``"today at 22:00"``, ``"tomorrow at 08:00"`` or ``"on Friday at 08:00"``."""
    days = (moment.date() - now.date()).days
    clock = moment.strftime("%H:%M")
    if days == 0:
        return f"today at {clock}"
    if days == 1:
        return f"tomorrow at {clock}"
    if days < 7:
        return f"on {DAY_NAMES[moment.weekday()]} at {clock}"
    return f"next {DAY_NAMES[moment.weekday()]} at {clock}"


def _idle_minutes(n: int) -> str:
    return "1 idle minute" if n == 1 else f"{n} idle minutes"


def describe_idle(seconds: float) -> str:
    """``"less than a minute"`` or ``"3 min"``: how long the computer has been idle, rounded down."""
    whole = int(seconds // 60)
    return "less than a minute" if whole < 1 else f"{whole} min"


class WorkPolicy:
    """Decides, from the settings and what the computer reports, whether the worker may take work.

    The checks run in a fixed order (schedule, battery, idle) and the first that says no gives the reason.
    """

    def __init__(
        self,
        idle: IdleSource,
        power: PowerSource,
        clock: Callable[[], datetime.datetime] = datetime.datetime.now,
    ) -> None:
        self.idle = idle
        self.power = power
        self._clock = clock

    def decide(self, prefs: Preferences) -> Decision:
        now = self._clock()
        if not in_schedule(prefs.schedule, now):
            opening = next_opening(prefs.schedule, now)
            when = describe_when(opening, now) if opening else "never (no window names a day)"
            return Decision(False, f"Outside the work schedule. The next window opens {when}.")
        if prefs.pause_on_battery and self.power.on_battery():
            return Decision(False, ON_BATTERY_REASON)
        if prefs.idle_only:
            idle = self.idle.idle_seconds()
            if idle is None:
                return Decision(False, IDLE_UNKNOWN_REASON)
            if idle < prefs.idle_minutes * 60:
                return Decision(
                    False,
                    f"Waiting for {_idle_minutes(prefs.idle_minutes)} "
                    f"(idle for {describe_idle(idle)}).",
                )
        return ALLOWED
