"""Idle time on an X11 desktop: ``XScreenSaverQueryInfo`` of the MIT-SCREEN-SAVER extension (libXss),
called through ctypes, as ``xprintidle`` does.

Each reading opens its own short connection to the X server and closes it. A connection kept open would
be cheaper, but Xlib ends the whole process when the server behind an open connection goes away; the
app's own window has its own connection either way.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from typing import Any

logger = logging.getLogger(__name__)


class XScreenSaverInfo(ctypes.Structure):
    """``XScreenSaverInfo`` from ``<X11/extensions/scrnsaver.h>``; ``idle`` is in milliseconds."""

    _fields_ = (
        ("window", ctypes.c_ulong),
        ("state", ctypes.c_int),
        ("kind", ctypes.c_int),
        ("til_or_since", ctypes.c_ulong),
        ("idle", ctypes.c_ulong),
        ("event_mask", ctypes.c_ulong),
    )


class _Libraries:
    """libX11 and libXss with the signatures used here."""

    def __init__(self) -> None:
        x11_name = ctypes.util.find_library("X11") or "libX11.so.6"
        xss_name = ctypes.util.find_library("Xss") or "libXss.so.1"
        self.x11: Any = ctypes.CDLL(x11_name)
        self.xss: Any = ctypes.CDLL(xss_name)
        self.x11.XOpenDisplay.argtypes = (ctypes.c_char_p,)
        self.x11.XOpenDisplay.restype = ctypes.c_void_p
        self.x11.XDefaultRootWindow.argtypes = (ctypes.c_void_p,)
        self.x11.XDefaultRootWindow.restype = ctypes.c_ulong
        self.x11.XCloseDisplay.argtypes = (ctypes.c_void_p,)
        self.x11.XCloseDisplay.restype = ctypes.c_int
        self.x11.XFree.argtypes = (ctypes.c_void_p,)
        self.x11.XFree.restype = ctypes.c_int
        self.xss.XScreenSaverQueryExtension.argtypes = (
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_int),
            ctypes.POINTER(ctypes.c_int),
        )
        self.xss.XScreenSaverQueryExtension.restype = ctypes.c_int
        self.xss.XScreenSaverAllocInfo.argtypes = ()
        self.xss.XScreenSaverAllocInfo.restype = ctypes.POINTER(XScreenSaverInfo)
        self.xss.XScreenSaverQueryInfo.argtypes = (
            ctypes.c_void_p,
            ctypes.c_ulong,
            ctypes.POINTER(XScreenSaverInfo),
        )
        self.xss.XScreenSaverQueryInfo.restype = ctypes.c_int


class X11IdleSource:
    """Idle time of the X display ``display`` (``":0"``), or of ``$DISPLAY`` when None."""

    name = "X11 screen saver extension (XScreenSaver)"

    def __init__(self, display: str | None = None) -> None:
        self.display = display
        self._lock = threading.Lock()
        self._libs: _Libraries | None = None
        self._load_failed = False
        self._warned = False

    def _libraries(self) -> _Libraries | None:
        if self._libs is None and not self._load_failed:
            try:
                self._libs = _Libraries()
            except (OSError, AttributeError) as exc:
                self._load_failed = True
                logger.warning("libX11/libXss cannot be loaded, so idle time is unknown: %r", exc)
        return self._libs

    def _unknown(self, why: str) -> float | None:
        if not self._warned:  # once: the policy asks every few seconds
            self._warned = True
            logger.warning("Cannot read idle time from X display %s: %s", self.display, why)
        return None

    def idle_seconds(self) -> float | None:
        with self._lock:
            libs = self._libraries()
            if libs is None:
                return None
            name = self.display.encode() if self.display is not None else None
            display = libs.x11.XOpenDisplay(name)
            if not display:
                return self._unknown("cannot connect to the X server")
            try:
                event_base, error_base = ctypes.c_int(), ctypes.c_int()
                # Without the extension XScreenSaverQueryInfo raises an X error, which ends the process.
                if not libs.xss.XScreenSaverQueryExtension(
                    display, ctypes.byref(event_base), ctypes.byref(error_base)
                ):
                    return self._unknown("the X server has no MIT-SCREEN-SAVER extension")
                info = libs.xss.XScreenSaverAllocInfo()
                if not info:
                    return self._unknown("out of memory")
                try:
                    root = libs.x11.XDefaultRootWindow(display)
                    if not libs.xss.XScreenSaverQueryInfo(display, root, info):
                        return self._unknown("XScreenSaverQueryInfo failed")
                    self._warned = False
                    return float(info.contents.idle) / 1000.0
                finally:
                    libs.x11.XFree(info)
            finally:
                libs.x11.XCloseDisplay(display)
