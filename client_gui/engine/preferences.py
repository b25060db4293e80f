"""The volunteer's settings for the desktop app: caps on CPU and memory, GPU use, when to work (idle only,
on battery, schedule windows), start at login and the coordinator address.

They live in ``app.json`` in the user's config folder (next to the worker's ``worker.json``), written
atomically and readable only by the user. No Qt here: the app, the CLI and the tests share this module.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import psutil

from client_gui.engine.identity import _write_private_json, default_config_dir
from client_gui.engine.worker import WorkerLimits

logger = logging.getLogger(__name__)

PREFERENCES_FILE_NAME = "app.json"
FILE_VERSION = 1
GIB = 1024**3

MIN_CORES = 0.5
"""The smallest core cap a person may set."""
MIN_PERCENT_CORES = 1.0
"""A percent cap never leaves less than one core (or all of them, on a one-core computer): a typical task
asks for one core, and a smaller cap would never take any work."""
MIN_MEMORY_GB = 0.5
MIN_IDLE_MINUTES = 1
MAX_IDLE_MINUTES = 240
DEFAULT_COORDINATOR = "127.0.0.1:50051"

DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
DAY_ABBREVIATIONS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class PreferencesError(Exception):
    """Settings that cannot be used, read or saved; ``str()`` is a sentence for the user."""


@dataclass(frozen=True)
class ScheduleWindow:
    """A weekly time window in which HiveMind may work, in the computer's local time.

    ``days`` are the days the window *opens* on (0 = Monday .. 6 = Sunday). When ``end <= start`` the
    window runs past midnight into the next day (``22:00-06:00``); ``start == end`` is a whole day.
    """

    days: frozenset[int]
    start: datetime.time
    end: datetime.time

    @property
    def overnight(self) -> bool:
        return self.end <= self.start

    def describe(self) -> str:
        """E.g. ``"Mon-Fri 22:00-06:00 (overnight)"``, for lists in the settings page."""
        days = _describe_days(self.days)
        span = f"{_hhmm(self.start)}-{_hhmm(self.end)}"
        return f"{days} {span} (overnight)" if self.overnight else f"{days} {span}"

    def to_json(self) -> dict[str, Any]:
        return {
            "days": sorted(self.days),
            "start": self.start.isoformat(
                timespec="minutes" if not self.start.second else "seconds"
            ),
            "end": self.end.isoformat(timespec="minutes" if not self.end.second else "seconds"),
        }

    @classmethod
    def from_json(cls, data: object) -> ScheduleWindow:
        """Raises ``ValueError`` with a short description of what is wrong."""
        if not isinstance(data, dict):
            raise ValueError("a schedule window is not an object")
        days = data.get("days")
        if not isinstance(days, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) for d in days
        ):
            raise ValueError("a schedule window's days are not a list of day numbers")
        start, end = data.get("start"), data.get("end")
        if not isinstance(start, str) or not isinstance(end, str):
            raise ValueError("a schedule window has no start or end time")
        return cls(
            days=frozenset(days),
            start=datetime.time.fromisoformat(start),
            end=datetime.time.fromisoformat(end),
        )


def _hhmm(value: datetime.time) -> str:
    return value.strftime("%H:%M")


def _describe_days(days: frozenset[int]) -> str:
    ordered = sorted(d for d in days if 0 <= d <= 6)
    if ordered == list(range(7)):
        return "Every day"
    if ordered == [0, 1, 2, 3, 4]:
        return "Mon-Fri"
    if ordered == [5, 6]:
        return "Sat-Sun"
    return ", ".join(DAY_ABBREVIATIONS[d] for d in ordered)


def format_gb(value: float) -> str:
    """``31`` for 31.3, ``7.5`` for 7.52: how the settings page and its messages show sizes."""
    if value >= 10:
        return f"{math.floor(value):d}"
    return f"{math.floor(value * 10) / 10:g}"


def _format_cores(value: float) -> str:
    return f"{value:g} core" if value == 1 else f"{value:g} cores"


def _host_cores() -> int:
    return psutil.cpu_count(logical=True) or 1


def _host_memory_gb() -> float:
    return psutil.virtual_memory().total / GIB


def check_coordinator_address(address: str) -> str:
    """``address`` without surrounding spaces when it is ``host:port``; else :class:`PreferencesError`."""
    value = address.strip()
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]  # [IPv6]:port
    valid_port = port.isdigit() and 1 <= int(port) <= 65535
    if not sep or not host or not valid_port or any(c.isspace() or c in "/[]" for c in host):
        raise PreferencesError(
            f"The coordinator address must look like host:port (for example "
            f"coordinator.example.org:50051), not {address.strip()!r}."
        )
    return value


@dataclass(frozen=True)
class Preferences:
    """The volunteer's settings. Replace whole (``dataclasses.replace``) and save; never mutate."""

    coordinator_address: str = DEFAULT_COORDINATOR
    username: str = ""
    max_cores: float | None = None
    """Cap in cores; with ``max_cpu_percent`` too, the smaller cap wins."""
    max_cpu_percent: int | None = None
    """Cap as a percentage (1..100) of the logical cores."""
    max_memory_gb: float | None = None
    use_gpu: bool = True
    idle_only: bool = False
    idle_minutes: int = 5
    pause_on_battery: bool = True
    schedule: tuple[ScheduleWindow, ...] = ()
    """Empty: any time."""
    start_at_login: bool = False
    stop_running_on_pause: bool = False
    """When pausing: finish the running task (False) or stop it now (True)."""

    # -- checks --------------------------------------------------------------------------------------

    def validated(
        self, *, logical_cores: int | None = None, total_memory_gb: float | None = None
    ) -> Preferences:
        """These settings, tidied (address without spaces), or :class:`PreferencesError` naming the first
        setting this computer cannot use. ``logical_cores``/``total_memory_gb`` default to this computer's.
        """
        cores = logical_cores if logical_cores is not None else _host_cores()
        memory = total_memory_gb if total_memory_gb is not None else _host_memory_gb()
        address = check_coordinator_address(self.coordinator_address)
        if self.max_cores is not None and not MIN_CORES <= self.max_cores <= cores:
            raise PreferencesError(
                f"The core cap must be between {MIN_CORES:g} and the {_format_cores(cores)} "
                "this computer has."
            )
        if self.max_cpu_percent is not None and not 1 <= self.max_cpu_percent <= 100:
            raise PreferencesError("The CPU cap must be between 1 and 100 percent.")
        if self.max_memory_gb is not None and not MIN_MEMORY_GB <= self.max_memory_gb <= memory:
            raise PreferencesError(
                f"The memory cap must be between {MIN_MEMORY_GB:g} GB and the "
                f"{format_gb(memory)} GB this computer has."
            )
        if not MIN_IDLE_MINUTES <= self.idle_minutes <= MAX_IDLE_MINUTES:
            raise PreferencesError(
                f"The idle time must be between {MIN_IDLE_MINUTES} and {MAX_IDLE_MINUTES} minutes."
            )
        for number, window in enumerate(self.schedule, start=1):
            if not window.days:
                raise PreferencesError(
                    f"Schedule window {number} ({_hhmm(window.start)}-{_hhmm(window.end)}) names no "
                    "day. Pick at least one day, or remove the window."
                )
            if not all(0 <= day <= 6 for day in window.days):
                raise PreferencesError(
                    f"Schedule window {number} names a day that does not exist; "
                    "days are Monday to Sunday."
                )
        return replace(self, coordinator_address=address)

    # -- what the worker gets ---------------------------------------------------------------------------

    def to_limits(self, logical_cores: int | None = None) -> WorkerLimits:
        """The worker's limits: cores are the smaller of the core cap and the percent cap (a percent cap
        never leaves less than one core), memory and GPU as set."""
        host = logical_cores if logical_cores is not None else _host_cores()
        caps: list[float] = []
        if self.max_cores is not None:
            caps.append(min(float(self.max_cores), float(host)))
        if self.max_cpu_percent is not None:
            share = host * self.max_cpu_percent / 100
            caps.append(round(max(share, min(MIN_PERCENT_CORES, float(host))), 2))
        return WorkerLimits(
            max_cores=min(caps) if caps else None,
            max_memory_gb=self.max_memory_gb,
            use_gpu=self.use_gpu,
        )

    # -- the file ------------------------------------------------------------------------------------

    @staticmethod
    def default_path() -> Path:
        return default_config_dir() / PREFERENCES_FILE_NAME

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["schedule"] = [window.to_json() for window in self.schedule]
        return {"version": FILE_VERSION, **data}

    @classmethod
    def from_json(cls, data: object) -> Preferences:
        """Settings from a parsed file: unknown keys are ignored, missing ones take their defaults.
        Raises ``ValueError`` describing a value of the wrong kind."""
        if not isinstance(data, dict):
            raise ValueError("the file does not hold a settings object")
        values: dict[str, Any] = {}
        for field in fields(cls):
            if field.name not in data:
                continue
            value = data[field.name]
            values[field.name] = _convert(field.name, value)
        unknown = sorted(set(data) - {f.name for f in fields(cls)} - {"version"})
        if unknown:
            logger.info("Ignoring unknown settings %s (from a newer or older HiveMind)", unknown)
        return cls(**values)

    @classmethod
    def load(cls, path: Path | None = None) -> Preferences:
        """The saved settings, or the defaults when none were saved yet. A damaged file, or one with a
        setting this computer cannot use, is refused with a sentence (the file is left as it is)."""
        path = path or cls.default_path()
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls()
        except OSError as exc:
            logger.error("Cannot read settings %s: %r", path, exc)
            raise PreferencesError(
                f"HiveMind could not read its settings file {path}: {exc.strerror or exc}."
            ) from exc
        try:
            prefs = cls.from_json(json.loads(text))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            logger.error("Damaged settings file %s: %r", path, exc)
            raise PreferencesError(
                f"HiveMind's settings file {path} is damaged ({exc}). Delete it to start again from "
                "the default settings."
            ) from exc
        try:
            return prefs.validated()
        except PreferencesError as exc:
            raise PreferencesError(
                f"HiveMind's settings file {path} holds a setting this computer cannot use: {exc} "
                "Change it in the file, or delete the file to start again from the default settings."
            ) from exc

    def save(self, path: Path | None = None) -> None:
        """Check, then atomically replace the settings file (readable only by the user). Invalid settings
        raise :class:`PreferencesError` and leave the file as it was."""
        checked = self.validated()
        path = path or self.default_path()
        try:
            _write_private_json(path, checked.to_json())
        except OSError as exc:
            logger.error("Cannot write settings %s: %r", path, exc)
            raise PreferencesError(
                f"HiveMind could not save its settings to {path}: {exc.strerror or exc}."
            ) from exc


def _convert(name: str, value: object) -> Any:
    """A JSON value for field ``name`` as the dataclass holds it; ``ValueError`` when of the wrong kind."""
    if name in ("coordinator_address", "username"):
        if not isinstance(value, str):
            raise ValueError(f"{name} is not text")
        return value
    if name in (
        "use_gpu",
        "idle_only",
        "pause_on_battery",
        "start_at_login",
        "stop_running_on_pause",
    ):
        if not isinstance(value, bool):
            raise ValueError(f"{name} is not true or false")
        return value
    if name in ("max_cores", "max_memory_gb"):
        if value is None:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ValueError(f"{name} is not a number")
        return float(value)
    if name in ("max_cpu_percent", "idle_minutes"):
        if value is None and name == "max_cpu_percent":
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} is not a whole number")
        return value
    if name == "schedule":
        if not isinstance(value, list):
            raise ValueError("schedule is not a list of windows")
        return tuple(ScheduleWindow.from_json(item) for item in value)
    raise AssertionError(f"no conversion for {name}")  # a new field needs a line above
