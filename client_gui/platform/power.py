"""Whether this computer runs on battery, for "pause on battery". psutil reads it on every OS
(``/sys/class/power_supply`` on Linux, ``GetSystemPowerStatus`` on Windows, IOKit on macOS)."""

from __future__ import annotations

import logging
import threading
from typing import Protocol

import psutil

logger = logging.getLogger(__name__)


class PowerSource(Protocol):
    def on_battery(self) -> bool | None:
        """True on battery, False on mains power or with no battery; None when it cannot be told."""
        ...


class ManualPowerSource:
    """Power set by hand: the simulation used by tests and demos."""

    def __init__(self, on_battery: bool | None = False) -> None:
        self._lock = threading.Lock()
        self._on_battery = on_battery

    def set_on_battery(self, on_battery: bool | None) -> None:
        with self._lock:
            self._on_battery = on_battery

    def on_battery(self) -> bool | None:
        with self._lock:
            return self._on_battery


class PsutilPowerSource:
    """The computer's battery as psutil sees it. A desktop without a battery is never on battery."""

    def __init__(self) -> None:
        self._warned = False

    def on_battery(self) -> bool | None:
        try:
            battery = psutil.sensors_battery()
        except (OSError, RuntimeError, AttributeError) as exc:  # AttributeError: OS without sensors
            if not self._warned:
                self._warned = True
                logger.warning("Cannot read the battery state: %r", exc)
            return None
        if battery is None:
            return False
        plugged = battery.power_plugged
        return None if plugged is None else not plugged


def default_power_source() -> PowerSource:
    return PsutilPowerSource()
