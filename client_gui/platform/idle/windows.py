"""Idle time on Windows: ``GetLastInputInfo`` (user32) against ``GetTickCount`` (kernel32), via ctypes.

Both clocks are 32-bit millisecond tick counts that wrap to 0 every 49.7 days, so the difference is taken
modulo 2**32 (:func:`idle_milliseconds`); ``GetTickCount64`` would not help, ``dwTime`` itself is 32-bit.
"""

from __future__ import annotations

import ctypes
import logging
from typing import Any

logger = logging.getLogger(__name__)

TICK_MODULUS = 2**32


class LASTINPUTINFO(ctypes.Structure):
    """``LASTINPUTINFO`` from ``winuser.h``: ``cbSize`` must be set to the structure's size."""

    _fields_ = (("cbSize", ctypes.c_uint), ("dwTime", ctypes.c_uint32))


def idle_milliseconds(now_tick: int, last_input_tick: int) -> int:
    """Milliseconds from ``last_input_tick`` to ``now_tick``, both 32-bit tick counts, across a wrap."""
    return (now_tick - last_input_tick) % TICK_MODULUS


def last_input_info() -> LASTINPUTINFO:
    """An empty ``LASTINPUTINFO`` with ``cbSize`` set, ready for ``GetLastInputInfo``."""
    info = LASTINPUTINFO()
    info.cbSize = ctypes.sizeof(LASTINPUTINFO)
    return info


class WindowsIdleSource:
    """Idle time of the signed-in Windows session."""

    name = "Windows (GetLastInputInfo)"

    def __init__(self) -> None:
        self._warned = False

    def idle_seconds(self) -> float | None:
        try:
            win_dll: Any = getattr(ctypes, "WinDLL")  # noqa: B009 (absent from ctypes off Windows)
            user32 = win_dll("user32")
            kernel32 = win_dll("kernel32")
            kernel32.GetTickCount.restype = ctypes.c_uint32
            info = last_input_info()
            if not user32.GetLastInputInfo(ctypes.byref(info)):
                raise OSError("GetLastInputInfo failed")
            now = int(kernel32.GetTickCount())
        except (AttributeError, OSError) as exc:
            if not self._warned:
                self._warned = True
                logger.warning("Cannot read idle time with GetLastInputInfo: %r", exc)
            return None
        return idle_milliseconds(now, int(info.dwTime)) / 1000.0
