"""How long since the person last touched the keyboard or mouse, one module per OS/desktop:

* X11 (``DISPLAY``): the MIT-SCREEN-SAVER extension (:mod:`.x11`);
* Wayland (``WAYLAND_DISPLAY``): the compositor's D-Bus idle monitor, GNOME's or KDE's (:mod:`.wayland`);
* Windows: ``GetLastInputInfo`` (:mod:`.windows`);
* macOS: IOKit's ``HIDIdleTime`` (:mod:`.macos`).

:func:`default_idle_source` picks one. A source answers ``None`` when this desktop cannot tell; the work
policy then does not treat the computer as idle and says so.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping
from typing import Protocol


class IdleSource(Protocol):
    """Where idle time comes from."""

    @property
    def name(self) -> str:
        """What the settings page shows, e.g. ``"X11 screen saver extension (XScreenSaver)"``."""
        ...

    def idle_seconds(self) -> float | None:
        """Seconds since the last keyboard or mouse input; None when this desktop cannot tell."""
        ...


class ManualIdleSource:
    """Idle time set by hand: the simulation used by tests and demos (and nothing else)."""

    def __init__(self, idle_seconds: float | None = 0.0, *, name: str = "simulated") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._idle = idle_seconds

    def set_idle_seconds(self, seconds: float | None) -> None:
        with self._lock:
            self._idle = seconds

    def idle_seconds(self) -> float | None:
        with self._lock:
            return self._idle


class UnavailableIdleSource:
    """A desktop whose idle time cannot be read (no graphical session, an unknown OS)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def idle_seconds(self) -> float | None:
        return None


def default_idle_source(
    platform: str | None = None, environ: Mapping[str, str] | None = None
) -> IdleSource:
    """The idle source for this OS and desktop session (``platform``/``environ``: for tests).

    On Linux a Wayland session (``WAYLAND_DISPLAY``) wins over ``DISPLAY``: a Wayland session also sets
    ``DISPLAY`` for XWayland, whose screen saver extension only sees input to X11 windows and would
    report the computer idle while the person types in a Wayland window.
    """
    platform = platform if platform is not None else sys.platform
    env = environ if environ is not None else os.environ
    if platform == "win32":
        from client_gui.platform.idle.windows import WindowsIdleSource

        return WindowsIdleSource()
    if platform == "darwin":
        from client_gui.platform.idle.macos import MacIdleSource

        return MacIdleSource()
    if env.get("WAYLAND_DISPLAY"):
        from client_gui.platform.idle.wayland import WaylandDBusIdleSource

        return WaylandDBusIdleSource()
    if env.get("DISPLAY"):
        from client_gui.platform.idle.x11 import X11IdleSource

        return X11IdleSource(env["DISPLAY"])
    return UnavailableIdleSource("no graphical session")


__all__ = [
    "IdleSource",
    "ManualIdleSource",
    "UnavailableIdleSource",
    "default_idle_source",
]
