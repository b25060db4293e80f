"""Fixtures for the platform tests: a real X server (Xvfb) and a real D-Bus session bus."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.platform.desktop import start_reporting, start_xvfb, stop

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(scope="module")
def xvfb_display() -> Iterator[str]:
    server, display = start_xvfb()
    yield display
    stop(server)


@pytest.fixture()
def dbus_session_bus() -> Iterator[str]:
    """The address of a fresh, private session bus (``dbus-daemon --session``)."""
    if shutil.which("dbus-daemon") is None:
        pytest.skip(
            "dbus-daemon is not installed (apt-get install dbus); the Wayland idle source uses D-Bus"
        )
    daemon, address = start_reporting(
        lambda fd: ["dbus-daemon", "--session", "--nofork", "--nopidfile", f"--print-address={fd}"]
    )
    yield address
    stop(daemon)
