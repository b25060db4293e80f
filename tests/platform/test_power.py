"""Pause on battery: what psutil reports becomes on/off battery. This machine has no battery, so the
readings a laptop gives are fed in at psutil's own function (the one seam that cannot run here)."""

from __future__ import annotations

from typing import NamedTuple

import psutil
import pytest

from client_gui.engine.policy import ON_BATTERY_REASON, WorkPolicy
from client_gui.engine.preferences import Preferences
from client_gui.platform.idle import ManualIdleSource
from client_gui.platform.power import ManualPowerSource, PsutilPowerSource, default_power_source


class Battery(NamedTuple):
    """What ``psutil.sensors_battery()`` returns on a laptop."""

    percent: float
    secsleft: int
    power_plugged: bool | None


@pytest.mark.parametrize(
    ("reading", "expected"),
    [
        (None, False),  # a desktop without a battery is never on battery
        (Battery(percent=80, secsleft=7200, power_plugged=False), True),
        (Battery(percent=80, secsleft=psutil.POWER_TIME_UNLIMITED, power_plugged=True), False),
        (Battery(percent=80, secsleft=psutil.POWER_TIME_UNKNOWN, power_plugged=None), None),
    ],
)
def test_battery_readings(
    monkeypatch: pytest.MonkeyPatch, reading: Battery | None, expected: bool | None
) -> None:
    monkeypatch.setattr(psutil, "sensors_battery", lambda: reading)
    assert PsutilPowerSource().on_battery() is expected


def test_a_failing_battery_reading_is_unknown_and_does_not_pause(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken() -> None:
        raise OSError("no /sys/class/power_supply")

    monkeypatch.setattr(psutil, "sensors_battery", broken)
    source = PsutilPowerSource()
    assert source.on_battery() is None
    assert WorkPolicy(ManualIdleSource(), source).decide(Preferences()).allowed


def test_this_computer_reads_without_error() -> None:
    assert default_power_source().on_battery() in (True, False, None)


def test_unplugging_a_laptop_pauses_work(monkeypatch: pytest.MonkeyPatch) -> None:
    battery = {"reading": Battery(percent=60, secsleft=-2, power_plugged=True)}
    monkeypatch.setattr(psutil, "sensors_battery", lambda: battery["reading"])
    policy = WorkPolicy(ManualIdleSource(), PsutilPowerSource())
    assert policy.decide(Preferences(pause_on_battery=True)).allowed
    battery["reading"] = Battery(percent=60, secsleft=3600, power_plugged=False)
    assert policy.decide(Preferences(pause_on_battery=True)).reason == ON_BATTERY_REASON


def test_the_manual_source_simulates_power() -> None:
    power = ManualPowerSource()
    assert power.on_battery() is False
    power.set_on_battery(True)
    assert power.on_battery() is True
