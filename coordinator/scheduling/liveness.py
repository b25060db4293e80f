"""Node liveness: when each worker node last sent a heartbeat, kept in process or, with ``--redis-url``,
in Redis so that several coordinator processes share one view. Both backends pass one contract suite
(``tests/scheduling/test_liveness_contract.py``).

Redis layout (``prefix`` defaults to ``hivemind:``; needs Redis 6.2+ for ``ZADD GT`` and ``ZMSCORE``):

- ``{prefix}nodes:seen``              sorted set, member = node id, score = last heartbeat as unix seconds
- ``{prefix}nodes:heartbeats_total``  integer counter of heartbeats recorded (all coordinators together)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from coordinator.errors import Unavailable

logger = logging.getLogger(__name__)

# Heartbeats and long-polls await these calls inline: when Redis is down they must fail within a couple
# of seconds (and map to UNAVAILABLE, so the worker retries) rather than hang the request.
CONNECT_TIMEOUT_S = 2.0
COMMAND_TIMEOUT_S = 2.0
COMMAND_RETRIES = 1

# ZMSCORE with tens of thousands of members would block Redis (single-threaded) for every other client.
SILENT_CHUNK = 1000


class LivenessStore(Protocol):
    """When each node was last heard from. Times are timezone-aware UTC datetimes, in and out."""

    async def touch(self, node_id: str, now: datetime) -> None:
        """Record a heartbeat at ``now``. A heartbeat older than the one recorded never moves it back."""

    async def touch_many(self, node_ids: Sequence[str], now: datetime) -> None:
        """Record a heartbeat at ``now`` for each node; each entry counts as one heartbeat."""

    async def last_seen(self, node_id: str) -> datetime | None:
        """The latest heartbeat of ``node_id``, or None if it was never seen (or forgotten)."""

    async def silent_since(self, node_ids: Iterable[str], cutoff: datetime) -> list[str]:
        """Those of ``node_ids`` (in the order given) not seen strictly after ``cutoff``; never seen is
        silent."""

    async def online(self, cutoff: datetime) -> list[str]:
        """Every node seen strictly after ``cutoff``, oldest heartbeat first (ties by node id)."""

    async def forget(self, node_id: str) -> None:
        """Drop the node (revoked or deleted). The heartbeat counter keeps its past heartbeats."""

    async def heartbeats_total(self) -> int:
        """Heartbeats recorded so far, a monotonic counter for a heartbeats-per-second rate."""

    async def close(self) -> None:
        """Release connections. The store must not be used afterwards."""


def _utc(ts: datetime) -> datetime:
    """``ts`` in UTC. A naive datetime is refused: ``timestamp()`` would read it as local time and a
    node would silently look hours fresher or staler than it is."""
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"liveness times must be timezone-aware UTC datetimes, got naive {ts!r}")
    return ts.astimezone(UTC)


class InProcessLiveness:
    """Liveness in a dict, for a single coordinator process. No lock: every caller runs on the one
    event loop and no method awaits between reading and writing the dict."""

    def __init__(self) -> None:
        self._seen: dict[str, datetime] = {}
        self._heartbeats = 0

    async def touch(self, node_id: str, now: datetime) -> None:
        self._record(node_id, _utc(now))
        self._heartbeats += 1

    async def touch_many(self, node_ids: Sequence[str], now: datetime) -> None:
        at = _utc(now)
        for node_id in node_ids:
            self._record(node_id, at)
        self._heartbeats += len(node_ids)

    def _record(self, node_id: str, at: datetime) -> None:
        # Keep the latest, as ZADD GT does: a delayed heartbeat must not make a node look older.
        previous = self._seen.get(node_id)
        if previous is None or at > previous:
            self._seen[node_id] = at

    async def last_seen(self, node_id: str) -> datetime | None:
        return self._seen.get(node_id)

    async def silent_since(self, node_ids: Iterable[str], cutoff: datetime) -> list[str]:
        limit = _utc(cutoff)
        return [n for n in node_ids if (seen := self._seen.get(n)) is None or seen <= limit]

    async def online(self, cutoff: datetime) -> list[str]:
        limit = _utc(cutoff)
        fresh = sorted((seen, n) for n, seen in self._seen.items() if seen > limit)
        return [n for _, n in fresh]

    async def forget(self, node_id: str) -> None:
        self._seen.pop(node_id, None)

    async def heartbeats_total(self) -> int:
        return self._heartbeats

    async def close(self) -> None:
        return None


# -- Redis plumbing, shared with coordinator/scheduling/wake.py ------------------------------------------
def redis_location(url: str) -> str:
    """``host:port/db`` of a Redis URL, for logs and messages: never the password in it."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}{parts.path or '/0'}"


def redis_client(url: str, **options: Any) -> aioredis.Redis:
    """A client with short timeouts and one quick retry; ``options`` override (e.g. for pub/sub).
    Connecting is lazy, so this never blocks and works before the event loop runs."""
    settings: dict[str, Any] = {
        "decode_responses": True,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_timeout": COMMAND_TIMEOUT_S,
        "retry": Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), COMMAND_RETRIES),
    }
    settings.update(options)
    return aioredis.Redis.from_url(url, **settings)


REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)


class RedisOutages:
    """Logs that Redis stopped answering, and that it answers again, once per outage rather than once
    per call: a few thousand nodes heartbeating would otherwise log a few thousand warnings a second."""

    def __init__(self, location: str, log: logging.Logger) -> None:
        self.location = location
        self._log = log
        self._down = False

    def failed(self, exc: BaseException, what: str) -> None:
        level = logging.DEBUG if self._down else logging.WARNING
        self._down = True
        self._log.log(
            level,
            "Redis at %s is unreachable (%s: %s); %s failed",
            self.location,
            type(exc).__name__,
            exc,
            what,
            extra={"redis": self.location},
        )

    def succeeded(self) -> None:
        if self._down:
            self._down = False
            self._log.info(
                "Redis at %s answers again", self.location, extra={"redis": self.location}
            )

    @contextmanager
    def unavailable_on_failure(self, what: str) -> Iterator[None]:
        """Turn "Redis is unreachable" into the domain's Unavailable (gRPC UNAVAILABLE / HTTP 503), so a
        worker retries later instead of seeing an internal error. The person gets a sentence; the log
        gets the address and the technical cause."""
        try:
            yield
        except REDIS_DOWN as exc:
            self.failed(exc, what)
            raise Unavailable(
                "The coordinator cannot reach its Redis server right now. Try again in a moment."
            ) from exc
        self.succeeded()


class RedisLiveness:
    """Liveness in Redis, shared by every coordinator process that uses the same URL and prefix."""

    def __init__(self, url: str, *, prefix: str = "hivemind:") -> None:
        self._redis = redis_client(url)
        self._outages = RedisOutages(redis_location(url), logger)
        self._seen_key = f"{prefix}nodes:seen"
        self._count_key = f"{prefix}nodes:heartbeats_total"

    async def touch(self, node_id: str, now: datetime) -> None:
        await self.touch_many([node_id], now)

    async def touch_many(self, node_ids: Sequence[str], now: datetime) -> None:
        score = _utc(now).timestamp()
        if not node_ids:
            return  # ZADD with no members is a syntax error in Redis
        with self._outages.unavailable_on_failure("recording a heartbeat"):
            # One round trip, and MULTI so the counter never runs ahead of or behind the set.
            async with self._redis.pipeline(transaction=True) as pipe:
                # GT: a heartbeat that arrives late (another coordinator, a retried request) keeps the
                # newer score; a member not yet in the set is still added.
                pipe.zadd(self._seen_key, dict.fromkeys(node_ids, score), gt=True)
                pipe.incrby(self._count_key, len(node_ids))
                await pipe.execute()

    async def last_seen(self, node_id: str) -> datetime | None:
        with self._outages.unavailable_on_failure("reading a heartbeat"):
            score = await self._redis.zscore(self._seen_key, node_id)
        return None if score is None else _from_score(score)

    async def silent_since(self, node_ids: Iterable[str], cutoff: datetime) -> list[str]:
        limit = _utc(cutoff).timestamp()
        wanted = list(node_ids)
        if not wanted:
            return []  # ZMSCORE needs at least one member
        chunks = [wanted[i : i + SILENT_CHUNK] for i in range(0, len(wanted), SILENT_CHUNK)]
        with self._outages.unavailable_on_failure("checking which nodes fell silent"):
            # No MULTI: the chunks need not be one snapshot, and a transaction would block Redis for all.
            async with self._redis.pipeline(transaction=False) as pipe:
                for chunk in chunks:
                    pipe.zmscore(self._seen_key, chunk)
                replies: list[list[float | None]] = await pipe.execute()
        scores = [score for reply in replies for score in reply]
        return [
            n for n, score in zip(wanted, scores, strict=True) if score is None or score <= limit
        ]

    async def online(self, cutoff: datetime) -> list[str]:
        # "(" makes the bound exclusive; repr() of a float parses back to the identical double.
        low = f"({_utc(cutoff).timestamp()!r}"
        with self._outages.unavailable_on_failure("listing online nodes"):
            members = await self._redis.zrangebyscore(self._seen_key, low, "+inf")
        # Plain members (no WITHSCORES), decoded to str by decode_responses=True.
        return cast(list[str], members)

    async def forget(self, node_id: str) -> None:
        with self._outages.unavailable_on_failure("forgetting a node"):
            await self._redis.zrem(self._seen_key, node_id)

    async def heartbeats_total(self) -> int:
        with self._outages.unavailable_on_failure("reading the heartbeat counter"):
            value = await self._redis.get(self._count_key)
        return int(value or 0)

    async def close(self) -> None:
        await self._redis.aclose()


def _from_score(score: float) -> datetime:
    # Exact: a microsecond-precision unix time up to year 2106 survives the round trip through a double
    # (its spacing there is under half a microsecond), and Redis returns scores with full precision.
    return datetime.fromtimestamp(score, UTC)


def make_liveness(redis_url: str | None, prefix: str = "hivemind:") -> LivenessStore:
    """Redis when a URL is given (several coordinators share it), otherwise in process."""
    if redis_url:
        return RedisLiveness(redis_url, prefix=prefix)
    return InProcessLiveness()
