"""Failed sign-in limits per username and per client address (a sliding window, in process memory).

A successful sign-in clears the username's failures. Kept in memory: a restart forgets them, which errs
on the side of letting people in; with several coordinator processes each keeps its own window.
"""

from __future__ import annotations

import threading
from collections import deque
from datetime import datetime, timedelta

from coordinator.clock import Clock
from coordinator.errors import RateLimited


class LoginRateLimiter:
    def __init__(self, *, per_user: int, per_address: int, window_s: int, clock: Clock) -> None:
        self._limits = {"user": per_user, "address": per_address}
        self._window = timedelta(seconds=window_s)
        self._clock = clock
        self._failures: dict[tuple[str, str], deque[datetime]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: datetime) -> deque[datetime]:
        q = self._failures.get(key)
        if q is None:
            return deque()
        while q and now - q[0] >= self._window:
            q.popleft()
        if not q:
            del self._failures[key]
        return q

    def check(self, username: str, address: str) -> None:
        """Raise :class:`RateLimited` when either the username or the address has too many recent failures."""
        now = self._clock()
        with self._lock:
            for kind, value in (("user", username), ("address", address)):
                q = self._recent((kind, value), now)
                if len(q) >= self._limits[kind]:
                    wait = max(1, int((q[0] + self._window - now).total_seconds()) + 1)
                    who = "this account" if kind == "user" else "your network address"
                    raise RateLimited(
                        f"Too many failed sign-in attempts for {who}. Try again in {wait} seconds.",
                        retry_after_s=wait,
                    )

    def record_failure(self, username: str, address: str) -> None:
        now = self._clock()
        with self._lock:
            for key in (("user", username), ("address", address)):
                self._failures.setdefault(key, deque()).append(now)

    def record_success(self, username: str) -> None:
        with self._lock:
            self._failures.pop(("user", username), None)
