"""Time as the coordinator sees it: timezone-aware UTC datetimes (SQLModel's UTCDateTime stores them)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_unix(ts: datetime) -> int:
    return int(ts.timestamp())
