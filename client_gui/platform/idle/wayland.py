"""Idle time on a Wayland desktop, from the compositor's idle monitor on the session D-Bus.

Wayland's own answer is the ``ext-idle-notify-v1`` protocol, but Python has no Wayland client binding in
HiveMind's dependencies (it would need pywayland and its generated protocol code), and the protocol only
notifies after a fixed timeout rather than reporting the idle time. So HiveMind asks the compositors'
D-Bus idle monitors instead, through jeepney (a pure-Python D-Bus client already installed with keyring):

* GNOME (Mutter): ``org.gnome.Mutter.IdleMonitor.GetIdletime`` on ``/org/gnome/Mutter/IdleMonitor/Core``
  (milliseconds);
* KDE Plasma and others implementing the freedesktop screen saver service:
  ``org.freedesktop.ScreenSaver.GetSessionIdleTime`` on ``/org/freedesktop/ScreenSaver``
  (milliseconds, as KDE's KIdleTime counts; some Plasma 6 sessions refuse the call).

The first monitor that answers is remembered. When none answers (wlroots compositors such as Sway offer
neither), the idle time is unknown and "only when idle" cannot start work; the policy says so.
"""

from __future__ import annotations

import importlib
import logging
import threading
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

CALL_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class IdleMonitor:
    """One D-Bus method that answers the session's idle time in milliseconds."""

    label: str
    bus_name: str
    object_path: str
    interface: str
    method: str


GNOME_MUTTER = IdleMonitor(
    "GNOME (Mutter idle monitor)",
    "org.gnome.Mutter.IdleMonitor",
    "/org/gnome/Mutter/IdleMonitor/Core",
    "org.gnome.Mutter.IdleMonitor",
    "GetIdletime",
)
FREEDESKTOP_SCREENSAVER = IdleMonitor(
    "freedesktop screen saver service (KDE)",
    "org.freedesktop.ScreenSaver",
    "/org/freedesktop/ScreenSaver",
    "org.freedesktop.ScreenSaver",
    "GetSessionIdleTime",
)
MONITORS = (GNOME_MUTTER, FREEDESKTOP_SCREENSAVER)


class WaylandDBusIdleSource:
    """Idle time from the first of ``monitors`` that answers on the session bus (``bus``: a jeepney bus
    name or address; tests pass the address of their own ``dbus-daemon``)."""

    def __init__(self, monitors: tuple[IdleMonitor, ...] = MONITORS, bus: str = "SESSION") -> None:
        self.monitors = monitors
        self.bus = bus
        self._lock = threading.Lock()
        self._connection: Any = None
        self._working: IdleMonitor | None = None
        self._warned = False

    @property
    def name(self) -> str:
        if self._working is not None:
            return f"Wayland: {self._working.label} over D-Bus"
        return "Wayland: compositor idle monitor over D-Bus"

    def _connect(self) -> Any:
        if self._connection is None:
            blocking: Any = importlib.import_module("jeepney.io.blocking")
            self._connection = blocking.open_dbus_connection(bus=self.bus)
        return self._connection

    def _ask(self, monitor: IdleMonitor) -> float:
        jeepney: Any = importlib.import_module("jeepney")  # no type hints: used as Any
        address = jeepney.DBusAddress(
            monitor.object_path, bus_name=monitor.bus_name, interface=monitor.interface
        )
        call = jeepney.new_method_call(address, monitor.method)
        # A reading every few seconds must never launch a service that is not running already.
        call.header.flags |= jeepney.MessageFlag.no_auto_start
        reply = self._connect().send_and_get_reply(call, timeout=CALL_TIMEOUT_S)
        (milliseconds,) = jeepney.wrappers.unwrap_msg(reply)
        return float(milliseconds) / 1000.0

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def idle_seconds(self) -> float | None:
        error_reply: Any = importlib.import_module("jeepney").DBusErrorResponse

        with self._lock:
            ordered = ([self._working] if self._working else []) + [
                m for m in self.monitors if m != self._working
            ]
            problems: list[str] = []
            for monitor in ordered:
                try:
                    seconds = self._ask(monitor)
                except error_reply as exc:  # the service is absent or refuses: try the next
                    problems.append(f"{monitor.label}: {exc}")
                    continue
                except Exception as exc:
                    # No session bus (KeyError: no DBUS_SESSION_BUS_ADDRESS), it went away, or it did
                    # not answer in time: reconnect on the next reading.
                    problems.append(f"session bus: {exc!r}")
                    if self._connection is not None:
                        self._connection.close()
                    self._connection = None
                    break
                self._working = monitor
                self._warned = False
                return seconds
            self._working = None
            if not self._warned:
                self._warned = True
                logger.warning("No Wayland idle monitor answered: %s", "; ".join(problems))
            return None
