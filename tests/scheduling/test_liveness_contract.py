"""The liveness contract, run against both backends: in process, and Redis when HIVEMIND_TEST_REDIS_URL is
set (each test under its own key prefix, deleted afterwards). Plus what only Redis can show: two
coordinator processes sharing one view."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import redis

from coordinator.errors import Unavailable
from coordinator.scheduling.liveness import (
    InProcessLiveness,
    LivenessStore,
    RedisLiveness,
    make_liveness,
)

REDIS_URL = os.environ.get("HIVEMIND_TEST_REDIS_URL", "")
# Every scenario runs under asyncio.wait_for(SCENARIO_BUDGET_S); pytest-timeout backs that up.
SCENARIO_BUDGET_S = 20.0
pytestmark = pytest.mark.timeout(60)

# Microseconds on purpose: the Redis backend stores unix-time doubles and must give them back exactly.
T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
S = timedelta(seconds=1)

Scenario = Callable[[LivenessStore], Coroutine[Any, Any, None]]
RunWithStore = Callable[[Scenario], None]


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, SCENARIO_BUDGET_S))


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A fresh key prefix on the test Redis, with every key under it deleted afterwards."""
    if not REDIS_URL:
        pytest.skip("Redis not configured: set HIVEMIND_TEST_REDIS_URL (.ci/run always does)")
    prefix = f"test:{uuid.uuid4().hex}:"
    yield prefix
    with redis.Redis.from_url(REDIS_URL) as client:
        stale = list(client.scan_iter(match=f"{prefix}*"))
        if stale:
            client.delete(*stale)


@pytest.fixture(params=["in-process", "redis"])
def with_store(request: pytest.FixtureRequest) -> RunWithStore:
    """Runs a scenario against a fresh store of each backend, closing it afterwards."""
    if request.param == "in-process":

        def new_store() -> LivenessStore:
            return InProcessLiveness()
    else:
        prefix: str = request.getfixturevalue("redis_prefix")

        def new_store() -> LivenessStore:
            return RedisLiveness(REDIS_URL, prefix=prefix)

    def go(scenario: Scenario) -> None:
        async def body() -> None:
            store = new_store()
            try:
                await scenario(store)
            finally:
                await store.close()

        run(body())

    return go


# -- the contract ------------------------------------------------------------------------------------
def test_touch_then_last_seen_gives_back_the_same_utc_time(with_store: RunWithStore) -> None:
    async def scenario(store: LivenessStore) -> None:
        assert await store.last_seen("n1") is None
        await store.touch("n1", T0)
        seen = await store.last_seen("n1")
        assert seen == T0
        assert seen is not None and seen.utcoffset() == timedelta(0)
        await store.touch("n1", T0 + 7 * S)
        assert await store.last_seen("n1") == T0 + 7 * S

    with_store(scenario)


def test_a_late_older_heartbeat_does_not_move_last_seen_back(with_store: RunWithStore) -> None:
    async def scenario(store: LivenessStore) -> None:
        await store.touch("n1", T0 + 10 * S)
        await store.touch("n1", T0)
        await store.touch_many(["n1"], T0 + 5 * S)
        assert await store.last_seen("n1") == T0 + 10 * S

    with_store(scenario)


def test_times_in_another_zone_come_back_as_the_same_instant_in_utc(
    with_store: RunWithStore,
) -> None:
    async def scenario(store: LivenessStore) -> None:
        paris = T0.astimezone(timezone(timedelta(hours=1)))
        await store.touch("n1", paris)
        seen = await store.last_seen("n1")
        assert seen == T0
        assert seen is not None and seen.utcoffset() == timedelta(0)
        assert await store.online(paris - S) == ["n1"]

    with_store(scenario)


def test_naive_times_are_refused(with_store: RunWithStore) -> None:
    async def scenario(store: LivenessStore) -> None:
        naive = T0.replace(tzinfo=None)
        with pytest.raises(ValueError, match="timezone-aware"):
            await store.touch("n1", naive)
        with pytest.raises(ValueError, match="timezone-aware"):
            await store.silent_since(["n1"], naive)
        with pytest.raises(ValueError, match="timezone-aware"):
            await store.online(naive)
        assert await store.last_seen("n1") is None
        assert await store.heartbeats_total() == 0

    with_store(scenario)


def test_silent_since_lists_the_given_nodes_not_seen_after_the_cutoff(
    with_store: RunWithStore,
) -> None:
    async def scenario(store: LivenessStore) -> None:
        await store.touch("old", T0)
        await store.touch("fresh", T0 + 10 * S)
        await store.touch("not-asked", T0)
        asked = ["fresh", "never", "old"]
        assert await store.silent_since(asked, T0 + 5 * S) == ["never", "old"]
        assert await store.silent_since(asked, T0 - S) == ["never"]
        # Seen exactly at the cutoff is not "after" it.
        assert await store.silent_since(asked, T0) == ["never", "old"]
        assert await store.silent_since(asked, T0 + 10 * S) == asked
        assert await store.silent_since([], T0) == []
        assert await store.silent_since(iter(["old"]), T0 + S) == ["old"]

    with_store(scenario)


def test_silent_since_handles_thousands_of_nodes(with_store: RunWithStore) -> None:
    async def scenario(store: LivenessStore) -> None:
        nodes = [f"n{i:05d}" for i in range(2500)]
        await store.touch_many(nodes[::2], T0 + 10 * S)
        await store.touch_many(nodes[1::2], T0)
        assert await store.silent_since(nodes, T0 + 5 * S) == nodes[1::2]

    with_store(scenario)


def test_online_lists_every_node_seen_after_the_cutoff_oldest_first(
    with_store: RunWithStore,
) -> None:
    async def scenario(store: LivenessStore) -> None:
        assert await store.online(T0) == []
        await store.touch("c", T0 + 3 * S)
        await store.touch("a", T0 + 1 * S)
        await store.touch("b", T0 + 3 * S)
        await store.touch("gone", T0 - 60 * S)
        assert await store.online(T0) == ["a", "b", "c"]
        assert await store.online(T0 + 1 * S) == ["b", "c"]
        assert await store.online(T0 + 3 * S) == []
        assert await store.online(T0 - 61 * S) == ["gone", "a", "b", "c"]

    with_store(scenario)


def test_touch_many_records_every_node_at_once(with_store: RunWithStore) -> None:
    async def scenario(store: LivenessStore) -> None:
        await store.touch_many(["a", "b", "c"], T0)
        await store.touch_many([], T0 + S)
        for node in ("a", "b", "c"):
            assert await store.last_seen(node) == T0
        assert await store.online(T0 - S) == ["a", "b", "c"]
        assert await store.heartbeats_total() == 3

    with_store(scenario)


def test_forget_drops_the_node_but_not_the_heartbeats_counted(with_store: RunWithStore) -> None:
    async def scenario(store: LivenessStore) -> None:
        await store.touch_many(["a", "b"], T0)
        await store.forget("a")
        await store.forget("never-seen")
        assert await store.last_seen("a") is None
        assert await store.last_seen("b") == T0
        assert await store.online(T0 - S) == ["b"]
        assert await store.silent_since(["a", "b"], T0 - S) == ["a"]
        assert await store.heartbeats_total() == 2
        await store.touch("a", T0 + S)  # a forgotten node that comes back is seen again
        assert await store.last_seen("a") == T0 + S

    with_store(scenario)


def test_heartbeats_total_counts_every_heartbeat(with_store: RunWithStore) -> None:
    async def scenario(store: LivenessStore) -> None:
        assert await store.heartbeats_total() == 0
        await store.touch("a", T0)
        await store.touch("a", T0 + S)
        await store.touch("a", T0)  # an older one still counts as a heartbeat received
        await store.touch_many(["b", "c", "b"], T0)
        assert await store.heartbeats_total() == 6

    with_store(scenario)


def test_make_liveness_picks_the_backend_from_the_url() -> None:
    async def scenario() -> None:
        in_process = make_liveness(None)
        assert isinstance(in_process, InProcessLiveness)
        over_redis = make_liveness("redis://127.0.0.1:6379/15", prefix="x:")
        assert isinstance(over_redis, RedisLiveness)
        await in_process.close()
        await over_redis.close()  # never connected: no Redis needed

    run(scenario())


# -- Redis only ---------------------------------------------------------------------------------------
def test_two_coordinators_on_one_redis_see_each_others_heartbeats(redis_prefix: str) -> None:
    async def scenario() -> None:
        first = RedisLiveness(REDIS_URL, prefix=redis_prefix)
        second = RedisLiveness(REDIS_URL, prefix=redis_prefix)
        elsewhere = RedisLiveness(REDIS_URL, prefix=f"{redis_prefix}other:")
        try:
            await first.touch("a", T0)
            await second.touch_many(["b", "c"], T0 + S)
            assert await second.last_seen("a") == T0
            assert await first.online(T0 - S) == ["a", "b", "c"]
            assert await first.silent_since(["a", "b"], T0) == ["a"]
            await second.forget("c")
            assert await first.last_seen("c") is None
            assert await first.heartbeats_total() == 3
            # Another prefix is another deployment: it shares nothing.
            assert await elsewhere.online(T0 - S) == []
            assert await elsewhere.heartbeats_total() == 0
        finally:
            for store in (first, second, elsewhere):
                await store.close()

    run(scenario())


def test_an_unreachable_redis_is_reported_as_unavailable_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        # Port 1 on loopback refuses at once; no Redis server needed.
        store = RedisLiveness("redis://:secret@127.0.0.1:1/0", prefix="unreachable:")
        try:
            with pytest.raises(Unavailable, match="cannot reach its Redis server"):
                await store.touch("a", T0)
            with pytest.raises(Unavailable):
                await store.silent_since(["a"], T0)
            with pytest.raises(Unavailable):
                await store.heartbeats_total()
        finally:
            await store.close()

    with caplog.at_level(logging.WARNING, logger="coordinator.scheduling.liveness"):
        run(scenario())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings  # one per outage, not one per heartbeat
    assert "127.0.0.1:1/0" in warnings[0] and "recording a heartbeat" in warnings[0]
    assert "secret" not in warnings[0]
