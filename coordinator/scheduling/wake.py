"""Wake-ups for long-polls: a worker waiting for work, a browser waiting for log lines. ``publish(topic)``
wakes every current ``wait(topic)``, in this process and, with ``--redis-url``, in every coordinator
process sharing that Redis. Both backends pass one contract suite (``tests/scheduling/test_wake_contract.py``).

A wake-up is a hint, not a message: callers re-check their condition after waking and wait again, so a
spurious wake costs one re-check while a lost one costs a worker one long-poll timeout.

Redis layout: one pub/sub channel ``{prefix}wake`` carrying ``"<sender id> <topic>"`` (see ``RedisWake``).
Pub/sub ignores the database number in the URL, so deployments sharing a Redis need distinct prefixes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from coordinator.errors import Unavailable
from coordinator.scheduling.liveness import REDIS_DOWN, RedisOutages, redis_client, redis_location

logger = logging.getLogger(__name__)

# Reconnect backoff for the subscriber: quick for a blip, capped so a long outage is retried often
# enough that wake-ups resume within seconds of Redis coming back.
RECONNECT_MIN_S = 0.1
RECONNECT_MAX_S = 5.0
# A subscriber only reads, so a half-open TCP connection (Redis host gone without a reset) would leave it
# deaf for hours. It pings when the channel is quiet and gives up when nothing, not even a pong, arrives.
READ_POLL_S = 1.0
PING_EVERY_S = 5.0
DEAD_AFTER_S = 15.0
SUBSCRIBE_TIMEOUT_S = 5.0


class WakeBus(Protocol):
    """Wakes long-polls. Call ``start()`` once before use and ``close()`` at shutdown."""

    async def start(self) -> None:
        """Connect (Redis: subscribe, and raise Unavailable when Redis cannot be reached)."""

    async def publish(self, topic: str) -> None:
        """Wake every current waiter on ``topic``, e.g. ``"work"`` or ``"logs:<task_id>"``. Never
        raises for Redis trouble: local waiters are woken regardless and the failure is logged."""

    async def wait(self, topic: str, timeout_s: float) -> bool:
        """True when woken by a publish made after this wait began, False after ``timeout_s``.
        (Redis: also True once for every waiter after the subscriber reconnects; see ``RedisWake``.)"""

    async def close(self) -> None:
        """Stop cross-process delivery and release connections; later calls only reach this process."""


@dataclass(eq=False, slots=True)
class _Generation:
    """The waiters of one topic between two publishes."""

    fired: asyncio.Event = field(default_factory=asyncio.Event)
    waiters: int = 0


class _LocalWaiters:
    """The waiters in this process, shared by both buses.

    Each topic with waiters has one current generation; a publish fires it and removes it, so every
    waiter present is woken exactly once and a later waiter starts on a fresh, unfired generation. The
    Event object *is* the generation number: nothing to compare, no lock on one event loop, and topics
    with no waiter (most ``logs:<task_id>``) cost no memory.
    """

    def __init__(self) -> None:
        self._current: dict[str, _Generation] = {}

    async def wait(self, topic: str, timeout_s: float) -> bool:
        generation = self._current.get(topic)
        if generation is None:
            generation = self._current[topic] = _Generation()
        generation.waiters += 1
        try:
            # Even timeout_s <= 0 suspends once, so a caller looping on wait() cannot starve the loop.
            async with asyncio.timeout(timeout_s):
                await generation.fired.wait()
            return True
        except TimeoutError:
            # A publish in the same loop iteration as the deadline still counts.
            return generation.fired.is_set()
        finally:
            generation.waiters -= 1
            if generation.waiters == 0 and self._current.get(topic) is generation:
                del self._current[topic]

    def wake(self, topic: str) -> None:
        generation = self._current.pop(topic, None)
        if generation is not None:
            generation.fired.set()

    def wake_all(self) -> None:
        current, self._current = self._current, {}
        for generation in current.values():
            generation.fired.set()


class _Lifecycle:
    """What both buses share about ``start()``: use before it is a wiring bug worth failing loudly on
    (a Redis bus never started would silently never hear other processes)."""

    _started = False

    def _require_started(self) -> None:
        if not self._started:
            raise RuntimeError(f"{type(self).__name__}.start() must be awaited before use")


class InProcessWake(_Lifecycle):
    """Wake-ups within one coordinator process (one event loop)."""

    def __init__(self) -> None:
        self._local = _LocalWaiters()

    async def start(self) -> None:
        self._started = True

    async def publish(self, topic: str) -> None:
        self._require_started()
        self._local.wake(topic)

    async def wait(self, topic: str, timeout_s: float) -> bool:
        self._require_started()
        return await self._local.wait(topic, timeout_s)

    async def close(self) -> None:
        return None  # nothing held; waits and publishes keep working, as after RedisWake.close()


_SENDER = re.compile(r"[0-9a-f]{32}")
# CLIENT SETNAME accepts only printable ASCII without spaces.
_NOT_NAME_CHAR = re.compile(r"[^!-~]")


def _decode(message: str) -> tuple[str | None, str]:
    """(sender, topic) of a channel message. A bare topic (say ``redis-cli PUBLISH hivemind:wake work``
    from an operator) has no sender and wakes every process, including this one."""
    sender, sep, topic = message.partition(" ")
    if sep and _SENDER.fullmatch(sender):
        return sender, topic
    return None, message


class RedisWake(_Lifecycle):
    """Wake-ups across coordinator processes through the Redis pub/sub channel ``{prefix}wake``.

    Each message is ``"<sender id> <topic>"``, the sender id being a random per-instance hex string.
    Local waiters are woken exactly once, *locally*: ``publish`` wakes them before sending, and the
    subscriber drops the echo of its own messages by that id. So a wait that begins after ``publish``
    returned is never woken by the echo arriving later, and in-process wake-ups keep working while Redis
    is down. A bare topic as the message would not do: our echo could not be told apart from another
    process's publish of the same topic.

    The background subscriber reconnects with capped exponential backoff. Publishes made while it was
    away are lost, so on resubscribing it wakes every local waiter once to make them re-check.
    """

    def __init__(self, url: str, *, prefix: str = "hivemind:") -> None:
        self._location = redis_location(url)
        self._channel = f"{prefix}wake"
        self._id = uuid.uuid4().hex
        self._local = _LocalWaiters()
        self._publisher = redis_client(url)
        # Its own connection pool: no socket timeout (the reader waits for messages indefinitely, the
        # watchdog below notices a dead link) and no silent retries, so that every drop reaches
        # _listen(), which logs it and knows to wake waiters after the gap.
        self._subscriber = redis_client(
            url,
            socket_timeout=None,
            retry=Retry(NoBackoff(), 0),
            client_name=_NOT_NAME_CHAR.sub("_", f"{prefix}wake-subscriber"),
        )
        self._listener: asyncio.Task[None] | None = None
        self._publish_outages = RedisOutages(self._location, logger)
        self._closed = False

    async def start(self) -> None:
        if self._closed:
            raise RuntimeError("a closed RedisWake cannot be started again; make a new one")
        if self._started:
            return
        try:
            pubsub = await self._subscribe()
        except REDIS_DOWN as exc:
            raise Unavailable(
                f"Cannot reach Redis at {self._location} for wake-ups ({exc}). Start redis-server "
                "or correct --redis-url, then start the coordinator again."
            ) from exc
        self._started = True
        self._listener = asyncio.create_task(
            self._listen(pubsub), name=f"{self._channel} subscriber"
        )

    async def publish(self, topic: str) -> None:
        self._require_started()
        self._local.wake(topic)
        if self._closed:
            return
        try:
            await self._publisher.publish(self._channel, f"{self._id} {topic}")
        except (RedisError, OSError) as exc:
            # Callers fire publishes and move on (some as detached tasks), so this must not raise.
            # Other processes' waiters then miss this one and fall back to their long-poll timeout.
            self._publish_outages.failed(exc, "sending a wake-up to other coordinators")
            return
        self._publish_outages.succeeded()

    async def wait(self, topic: str, timeout_s: float) -> bool:
        self._require_started()
        return await self._local.wait(topic, timeout_s)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self._publisher.aclose()
        await self._subscriber.aclose()

    # -- the subscriber ------------------------------------------------------------------------------
    async def _subscribe(self) -> PubSub:
        """A pubsub connection whose subscription the server has confirmed: SUBSCRIBE is only sent by
        ``subscribe()``, and a publish another process makes after ``start()`` returns must reach us."""
        pubsub = self._subscriber.pubsub()
        try:
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT_S):
                await pubsub.subscribe(self._channel)
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is not None and message["type"] == "subscribe":
                        return pubsub
        except TimeoutError as exc:
            await _discard(pubsub)
            raise RedisConnectionError(
                f"no SUBSCRIBE confirmation within {SUBSCRIBE_TIMEOUT_S}s"
            ) from exc
        except BaseException:
            await _discard(pubsub)
            raise

    async def _listen(self, pubsub: PubSub) -> None:
        """Deliver other processes' messages until cancelled, resubscribing whenever the link drops."""
        try:
            while True:
                try:
                    await self._pump(pubsub)
                except Exception as exc:
                    # Anything, not just connection errors: a dead subscriber would stop cross-process
                    # wake-ups silently, so it logs and starts over instead.
                    logger.warning(
                        "wake subscriber lost Redis at %s (%s: %s); reconnecting",
                        self._location,
                        type(exc).__name__,
                        exc,
                        extra={"redis": self._location},
                        exc_info=not isinstance(exc, REDIS_DOWN),
                    )
                await _discard(pubsub)
                pubsub = await self._resubscribe()
                self._local.wake_all()
        finally:
            await _discard(pubsub)

    async def _pump(self, pubsub: PubSub) -> None:
        """Read the channel; returns only by raising."""
        loop = asyncio.get_running_loop()
        heard = pinged = loop.time()
        while True:
            message: dict[str, Any] | None = await pubsub.get_message(
                ignore_subscribe_messages=True, timeout=READ_POLL_S
            )
            now = loop.time()
            if message is not None:
                heard = now  # any reply, a pong included, proves the link is alive
                if message["type"] == "message":
                    sender, topic = _decode(message["data"])
                    if sender != self._id:  # our own publishes woke local waiters already
                        self._local.wake(topic)
            elif now - heard > DEAD_AFTER_S:
                raise RedisConnectionError(f"no reply from Redis for {DEAD_AFTER_S:.0f}s")
            if now - max(heard, pinged) >= PING_EVERY_S:
                await pubsub.ping()
                pinged = now

    async def _resubscribe(self) -> PubSub:
        delay = RECONNECT_MIN_S
        started = asyncio.get_running_loop().time()
        attempt = 0
        while True:
            # Jitter spreads the reconnects of many coordinators after a Redis restart.
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            attempt += 1
            try:
                pubsub = await self._subscribe()
            except Exception as exc:  # keep trying whatever the cause; each failure is logged
                delay = min(delay * 2, RECONNECT_MAX_S)
                logger.warning(
                    "wake subscriber still cannot reach Redis at %s (%s); attempt %d, next within %.1fs",
                    self._location,
                    exc,
                    attempt,
                    delay,
                    extra={"redis": self._location, "attempt": attempt},
                )
                continue
            outage_s = asyncio.get_running_loop().time() - started
            logger.info(
                "wake subscriber reconnected to Redis at %s after %.1fs; waking all local waiters",
                self._location,
                outage_s,
                extra={"redis": self._location, "outage_s": round(outage_s, 1)},
            )
            return pubsub


async def _discard(pubsub: PubSub) -> None:
    """Close a pubsub whose connection may already be broken; the error that broke it is logged."""
    try:
        await pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated in redis-py
    except (RedisError, OSError):
        logger.debug("closing a broken pubsub connection failed", exc_info=True)


def make_wake(redis_url: str | None, prefix: str = "hivemind:") -> WakeBus:
    """Redis pub/sub when a URL is given (several coordinators), otherwise in process."""
    if redis_url:
        return RedisWake(redis_url, prefix=prefix)
    return InProcessWake()
