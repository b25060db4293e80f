"""The X11 idle source against a real X server (Xvfb), with real input sent through the XTEST extension."""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from collections.abc import Iterator
from typing import Any

import pytest

from client_gui.engine.policy import IDLE_UNKNOWN_REASON, WorkPolicy
from client_gui.engine.preferences import Preferences
from client_gui.platform.idle import default_idle_source
from client_gui.platform.idle.x11 import X11IdleSource
from client_gui.platform.power import ManualPowerSource
from tests.platform.desktop import start_xvfb, stop


class XTest:
    """Moves the pointer of an X display, as a person's mouse would."""

    def __init__(self, display: str) -> None:
        try:
            self.xtst: Any = ctypes.CDLL(ctypes.util.find_library("Xtst") or "libXtst.so.6")
        except OSError:
            pytest.skip(
                "libXtst is not installed (apt-get install libxtst6); it sends the test's input"
            )
        self.x11: Any = ctypes.CDLL(ctypes.util.find_library("X11") or "libX11.so.6")
        self.x11.XOpenDisplay.argtypes = (ctypes.c_char_p,)
        self.x11.XOpenDisplay.restype = ctypes.c_void_p
        self.x11.XSync.argtypes = (ctypes.c_void_p, ctypes.c_int)
        self.x11.XCloseDisplay.argtypes = (ctypes.c_void_p,)
        self.xtst.XTestFakeMotionEvent.argtypes = (
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_ulong,
        )
        self.display = self.x11.XOpenDisplay(display.encode())
        assert self.display, f"cannot open {display}"
        self.x = 10

    def move_mouse(self) -> None:
        self.x = 30 if self.x == 10 else 10
        self.xtst.XTestFakeMotionEvent(self.display, -1, self.x, self.x, 0)
        self.x11.XSync(self.display, 0)

    def close(self) -> None:
        self.x11.XCloseDisplay(self.display)


@pytest.fixture()
def mouse(xvfb_display: str) -> Iterator[XTest]:
    xtest = XTest(xvfb_display)
    yield xtest
    xtest.close()


def test_idle_time_grows_while_nobody_touches_the_computer(xvfb_display: str, mouse: XTest) -> None:
    source = X11IdleSource(xvfb_display)
    mouse.move_mouse()
    first = source.idle_seconds()
    assert first is not None and first >= 0
    time.sleep(1.2)
    later = source.idle_seconds()
    assert later is not None and later >= first + 1.0


def test_input_resets_idle_time(xvfb_display: str, mouse: XTest) -> None:
    source = X11IdleSource(xvfb_display)
    time.sleep(1.2)
    before = source.idle_seconds()
    assert before is not None and before >= 1.0
    mouse.move_mouse()
    after = source.idle_seconds()
    assert after is not None and after < before


def test_the_factory_picks_x11_from_display_and_it_reads(xvfb_display: str) -> None:
    source = default_idle_source("linux", {"DISPLAY": xvfb_display})
    assert isinstance(source, X11IdleSource)
    assert "X11" in source.name
    assert source.idle_seconds() is not None


def test_idle_only_waits_on_a_real_x_display(xvfb_display: str, mouse: XTest) -> None:
    policy = WorkPolicy(X11IdleSource(xvfb_display), ManualPowerSource(False))
    mouse.move_mouse()
    decision = policy.decide(Preferences(idle_only=True, idle_minutes=1))
    assert not decision.allowed
    assert decision.reason == "Waiting for 1 idle minute (idle for less than a minute)."


def test_no_x_server_means_unknown_not_a_crash() -> None:
    server, display = start_xvfb()
    stop(server)  # the display number is free again: nobody answers there
    source = X11IdleSource(display)
    assert source.idle_seconds() is None
    policy = WorkPolicy(source, ManualPowerSource(False))
    assert policy.decide(Preferences(idle_only=True)).reason == IDLE_UNKNOWN_REASON


def test_a_server_without_the_screen_saver_extension_means_unknown() -> None:
    # Asking such a server would raise an X error, which ends the process; the source checks first.
    server, display = start_xvfb("-extension", "MIT-SCREEN-SAVER")
    try:
        assert X11IdleSource(display).idle_seconds() is None
    finally:
        stop(server)
