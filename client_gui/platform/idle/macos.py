"""Idle time on macOS: the ``HIDIdleTime`` property (nanoseconds) of the IOHIDSystem service in IOKit.

Read through ctypes (IOKit + CoreFoundation); when that fails, from ``ioreg -c IOHIDSystem -d 4`` output
(:func:`parse_ioreg_idle_ns`), which prints the same property.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import re
import subprocess
from typing import Any

logger = logging.getLogger(__name__)

NANOSECONDS = 1_000_000_000
IOREG_COMMAND = ("ioreg", "-c", "IOHIDSystem", "-d", "4")
IOREG_TIMEOUT_S = 2.0
_HID_IDLE = re.compile(r'^\s*"HIDIdleTime"\s*=\s*(\d+)\s*$', re.MULTILINE)
"""A property line of its own: not the same name inside a dictionary (``"HIDParameters" = {...}``)."""

K_CF_STRING_ENCODING_UTF8 = 0x08000100
K_CF_NUMBER_SINT64 = 4


def parse_ioreg_idle_ns(output: str) -> int | None:
    """The ``"HIDIdleTime" = N`` property line in ``ioreg`` output, in nanoseconds; None without one."""
    match = _HID_IDLE.search(output)
    return int(match.group(1)) if match else None


def _iokit_idle_ns() -> int:
    """``HIDIdleTime`` straight from IOKit; raises ``OSError`` when it cannot be read."""
    iokit_path = ctypes.util.find_library("IOKit")
    cf_path = ctypes.util.find_library("CoreFoundation")
    if not iokit_path or not cf_path:
        raise OSError("IOKit or CoreFoundation not found")
    iokit: Any = ctypes.CDLL(iokit_path)
    cf: Any = ctypes.CDLL(cf_path)
    iokit.IOServiceMatching.restype = ctypes.c_void_p
    iokit.IOServiceMatching.argtypes = (ctypes.c_char_p,)
    iokit.IOServiceGetMatchingService.restype = ctypes.c_uint32
    iokit.IOServiceGetMatchingService.argtypes = (ctypes.c_uint32, ctypes.c_void_p)
    iokit.IORegistryEntryCreateCFProperty.restype = ctypes.c_void_p
    iokit.IORegistryEntryCreateCFProperty.argtypes = (
        ctypes.c_uint32,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_uint32,
    )
    iokit.IOObjectRelease.argtypes = (ctypes.c_uint32,)
    cf.CFStringCreateWithCString.restype = ctypes.c_void_p
    cf.CFStringCreateWithCString.argtypes = (ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint32)
    cf.CFNumberGetValue.restype = ctypes.c_bool
    cf.CFNumberGetValue.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p)
    cf.CFRelease.argtypes = (ctypes.c_void_p,)

    # kIOMainPortDefault is 0 (MACH_PORT_NULL); IOServiceGetMatchingService consumes the matching dict.
    service = iokit.IOServiceGetMatchingService(0, iokit.IOServiceMatching(b"IOHIDSystem"))
    if not service:
        raise OSError("no IOHIDSystem service")
    key = cf.CFStringCreateWithCString(None, b"HIDIdleTime", K_CF_STRING_ENCODING_UTF8)
    try:
        number = iokit.IORegistryEntryCreateCFProperty(service, key, None, 0)
        if not number:
            raise OSError("IOHIDSystem has no HIDIdleTime")
        try:
            value = ctypes.c_int64()
            if not cf.CFNumberGetValue(number, K_CF_NUMBER_SINT64, ctypes.byref(value)):
                raise OSError("HIDIdleTime is not a 64-bit number")
            return int(value.value)
        finally:
            cf.CFRelease(number)
    finally:
        cf.CFRelease(key)
        iokit.IOObjectRelease(service)


def _ioreg_idle_ns() -> int:
    out = subprocess.run(
        IOREG_COMMAND, capture_output=True, text=True, timeout=IOREG_TIMEOUT_S, check=True
    )
    value = parse_ioreg_idle_ns(out.stdout)
    if value is None:
        raise OSError("ioreg printed no HIDIdleTime")
    return value


class MacIdleSource:
    """Idle time of the macOS login session."""

    name = "macOS (IOKit HIDIdleTime)"

    def __init__(self) -> None:
        self._warned = False

    def idle_seconds(self) -> float | None:
        for read in (_iokit_idle_ns, _ioreg_idle_ns):
            try:
                return read() / NANOSECONDS
            except (OSError, AttributeError, subprocess.SubprocessError) as exc:
                if not self._warned:
                    logger.info("Reading idle time through %s failed: %r", read.__name__, exc)
        self._warned = True
        return None
