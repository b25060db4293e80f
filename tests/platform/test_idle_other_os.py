"""The Windows and macOS idle sources: their pure parts run here (tick arithmetic across the 49.7-day wrap,
reading ``ioreg`` output), and both modules import and degrade cleanly on Linux."""

from __future__ import annotations

import ctypes
import sys

import pytest

from client_gui.platform.idle import ManualIdleSource, UnavailableIdleSource, default_idle_source
from client_gui.platform.idle.macos import MacIdleSource, parse_ioreg_idle_ns
from client_gui.platform.idle.windows import (
    LASTINPUTINFO,
    TICK_MODULUS,
    WindowsIdleSource,
    idle_milliseconds,
    last_input_info,
)

IOREG_OUTPUT = """\
+-o Root  <class IORegistryEntry, id 0x100000100, retain 27>
  +-o J314sAP  <class IOPlatformExpertDevice, id 0x100000227, registered, matched, active, busy 0 (1364 ms), retain 40>
    +-o IOResources  <class IOResources, id 0x100000114, registered, matched, active, busy 0 (0 ms), retain 138>
      +-o IOHIDSystem  <class IOHIDSystem, id 0x1000005a1, registered, matched, active, busy 0 (0 ms), retain 24>
          {
            "IOClass" = "IOHIDSystem"
            "HIDParameters" = {"HIDClickTime"=500000000,"HIDIdleTime"=1}
            "HIDIdleTime" = 83456789012
            "IOUserClientClass" = "IOHIDUserClient"
          }
"""


@pytest.mark.parametrize(
    ("now", "last", "expected"),
    [
        (5_000, 2_000, 3_000),
        (2_000, 2_000, 0),
        (1_000, TICK_MODULUS - 500, 1_500),  # GetTickCount wrapped after 49.7 days
        (0, TICK_MODULUS - 1, 1),
        (TICK_MODULUS - 1, 0, TICK_MODULUS - 1),
    ],
)
def test_windows_idle_time_across_the_tick_wrap(now: int, last: int, expected: int) -> None:
    assert idle_milliseconds(now, last) == expected


def test_lastinputinfo_is_laid_out_as_windows_expects() -> None:
    info = last_input_info()
    assert ctypes.sizeof(LASTINPUTINFO) == 8  # UINT cbSize + DWORD dwTime
    assert info.cbSize == 8 and info.dwTime == 0


def test_ioreg_output_gives_hid_idle_time() -> None:
    # The top-level property, not the one nested in HIDParameters' dictionary on the line above it.
    assert parse_ioreg_idle_ns(IOREG_OUTPUT) == 83_456_789_012
    assert parse_ioreg_idle_ns("+-o Root\n") is None


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="checks the Linux fallback")
def test_other_os_sources_say_unknown_on_linux() -> None:
    assert WindowsIdleSource().idle_seconds() is None
    assert MacIdleSource().idle_seconds() is None


@pytest.mark.parametrize(
    ("platform", "env", "kind"),
    [
        ("win32", {}, WindowsIdleSource),
        ("darwin", {}, MacIdleSource),
        ("linux", {}, UnavailableIdleSource),
        ("freebsd14", {}, UnavailableIdleSource),
    ],
)
def test_the_factory_picks_by_os(platform: str, env: dict[str, str], kind: type) -> None:
    assert isinstance(default_idle_source(platform, env), kind)


def test_no_graphical_session_means_unknown() -> None:
    source = default_idle_source("linux", {})
    assert source.idle_seconds() is None and source.name == "no graphical session"


def test_the_manual_source_simulates_idle_time() -> None:
    source = ManualIdleSource()
    assert source.idle_seconds() == 0.0
    source.set_idle_seconds(600)
    assert source.idle_seconds() == 600
    source.set_idle_seconds(None)
    assert source.idle_seconds() is None
