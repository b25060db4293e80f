"""The Wayland idle source over a real D-Bus session bus (a private ``dbus-daemon``). The compositor's
side is played by a small D-Bus service answering GNOME's or KDE's idle-monitor method, as Mutter and
KWin do: no compositor runs here, but the bus, the names and the messages are the real ones."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from jeepney import HeaderFields, MessageType, new_error, new_method_return
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import open_dbus_connection

from client_gui.engine.policy import IDLE_UNKNOWN_REASON, WorkPolicy
from client_gui.engine.preferences import Preferences
from client_gui.platform.idle import default_idle_source
from client_gui.platform.idle.wayland import (
    FREEDESKTOP_SCREENSAVER,
    GNOME_MUTTER,
    IdleMonitor,
    WaylandDBusIdleSource,
)
from client_gui.platform.power import ManualPowerSource


class IdleMonitorService:
    """Owns ``monitor.bus_name`` on the bus and answers its idle method with ``idle_ms``."""

    def __init__(self, bus: str, monitor: IdleMonitor, signature: str, idle_ms: int) -> None:
        self.monitor = monitor
        self.signature = signature
        self.idle_ms = idle_ms
        self.calls = 0
        self.connection: Any = open_dbus_connection(bus=bus)
        reply = self.connection.send_and_get_reply(message_bus.RequestName(monitor.bus_name))
        assert reply.body == (1,), f"could not own {monitor.bus_name}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                message = self.connection.receive(timeout=0.1)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = message.header.fields
            if message.header.message_type != MessageType.method_call:
                continue
            if (
                fields.get(HeaderFields.path) == self.monitor.object_path
                and fields.get(HeaderFields.member) == self.monitor.method
            ):
                self.calls += 1
                self.connection.send(new_method_return(message, self.signature, (self.idle_ms,)))
            else:
                self.connection.send(
                    new_error(message, "org.freedesktop.DBus.Error.UnknownMethod", "s", ("no",))
                )

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.connection.close()


@pytest.fixture()
def services(dbus_session_bus: str) -> Iterator[list[IdleMonitorService]]:
    running: list[IdleMonitorService] = []
    yield running
    for service in running:
        service.close()


def test_gnome_mutter_idle_monitor(
    dbus_session_bus: str, services: list[IdleMonitorService]
) -> None:
    services.append(IdleMonitorService(dbus_session_bus, GNOME_MUTTER, "t", 125_000))
    source = WaylandDBusIdleSource(bus=dbus_session_bus)
    assert source.idle_seconds() == 125.0
    assert "GNOME" in source.name
    services[0].idle_ms = 2_500  # the person touched the keyboard
    assert source.idle_seconds() == 2.5
    source.close()


def test_kde_freedesktop_screensaver(
    dbus_session_bus: str, services: list[IdleMonitorService]
) -> None:
    services.append(IdleMonitorService(dbus_session_bus, FREEDESKTOP_SCREENSAVER, "u", 61_000))
    source = WaylandDBusIdleSource(bus=dbus_session_bus)
    assert source.idle_seconds() == 61.0
    assert "KDE" in source.name
    decision = WorkPolicy(source, ManualPowerSource(False)).decide(
        Preferences(idle_only=True, idle_minutes=1)
    )
    assert decision.allowed
    source.close()


def test_the_monitor_that_answered_is_asked_first(
    dbus_session_bus: str, services: list[IdleMonitorService]
) -> None:
    services.append(IdleMonitorService(dbus_session_bus, FREEDESKTOP_SCREENSAVER, "u", 1_000))
    source = WaylandDBusIdleSource(bus=dbus_session_bus)
    for _ in range(3):
        assert source.idle_seconds() == 1.0
    assert services[0].calls == 3
    source.close()


def test_no_idle_monitor_on_the_bus_means_unknown(dbus_session_bus: str) -> None:
    source = WaylandDBusIdleSource(bus=dbus_session_bus)
    assert source.idle_seconds() is None
    decision = WorkPolicy(source, ManualPowerSource(False)).decide(Preferences(idle_only=True))
    assert decision.reason == IDLE_UNKNOWN_REASON
    source.close()


def test_no_session_bus_means_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    assert WaylandDBusIdleSource().idle_seconds() is None


def test_a_bus_that_goes_away_means_unknown_then_recovers(
    dbus_session_bus: str, services: list[IdleMonitorService]
) -> None:
    services.append(IdleMonitorService(dbus_session_bus, GNOME_MUTTER, "t", 9_000))
    source = WaylandDBusIdleSource(bus=dbus_session_bus)
    assert source.idle_seconds() == 9.0
    source._connection.close()  # as when the session bus restarts under us
    assert source.idle_seconds() is None
    assert source.idle_seconds() == 9.0  # reconnected
    source.close()


def test_the_factory_prefers_wayland_over_xwayland() -> None:
    source = default_idle_source("linux", {"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"})
    assert isinstance(source, WaylandDBusIdleSource)
