"""Run blocking calls (network, Docker, disk) off the GUI thread and get their outcome back on it.

Every coordinator call the app makes goes through :class:`Background`, so a slot on the GUI thread only
ever starts work and returns: the 50 ms rule holds however slow the network is.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from PySide6.QtCore import QCoreApplication, QDeadlineTimer, QObject, QRunnable, QThreadPool, Signal

logger = logging.getLogger(__name__)
T = TypeVar("T")


class _Relay(QObject):
    """Lives on the GUI thread; its signals, emitted from a pool thread, are delivered there (queued)."""

    done = Signal(object)
    failed = Signal(object)


class _Job(QRunnable):
    def __init__(self, fn: Callable[[], Any], relay: _Relay) -> None:
        super().__init__()
        self.setAutoDelete(True)
        self._fn = fn
        self._relay = relay

    def run(self) -> None:
        try:
            result = self._fn()
        except Exception as exc:  # delivered to the caller's on_error, which shows a sentence
            logger.debug("background call failed: %r", exc)
            self._relay.failed.emit(exc)
        else:
            self._relay.done.emit(result)


class Background(QObject):
    """A small pool of threads for blocking calls. ``run(fn, on_done, on_error)`` returns at once;
    ``on_done(result)`` or ``on_error(exception)`` is later called on the GUI thread."""

    def __init__(self, parent: QObject | None = None, *, threads: int = 4) -> None:
        super().__init__(parent)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(threads)
        self._relays: set[_Relay] = set()
        self._lock = threading.Lock()
        self._closed = False

    def run(
        self,
        fn: Callable[[], T],
        on_done: Callable[[T], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        if self._closed:
            return
        relay = _Relay()
        self._relays.add(relay)

        def finished(outcome: object, handler: Callable[[Any], None] | None) -> None:
            self._relays.discard(relay)
            relay.deleteLater()
            if handler is not None and not self._closed:
                handler(outcome)
            elif handler is None and isinstance(outcome, Exception):
                logger.warning("background call failed and nobody handled it: %r", outcome)

        relay.done.connect(lambda result: finished(result, on_done))
        relay.failed.connect(lambda exc: finished(exc, on_error if on_error is not None else None))
        self._pool.start(_Job(fn, relay))

    @property
    def busy(self) -> bool:
        """Whether calls are still running or their outcome is not yet delivered."""
        return bool(self._relays) or self._pool.activeThreadCount() > 0

    def wait_idle(self, timeout_s: float = 10.0) -> bool:
        """Block until every call ran and its outcome was delivered (tests; shutdown)."""
        deadline = QDeadlineTimer(int(timeout_s * 1000))
        while self.busy and not deadline.hasExpired():
            self._pool.waitForDone(20)
            QCoreApplication.processEvents()
        return not self.busy

    def close(self, timeout_s: float = 5.0) -> bool:
        """Stop delivering outcomes and wait for running calls to end."""
        self._closed = True
        return self._pool.waitForDone(int(timeout_s * 1000))
