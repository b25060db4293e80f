"""The wake-up contract, run against both backends: in process, and Redis pub/sub when
HIVEMIND_TEST_REDIS_URL is set (each test on its own channel prefix). Plus what only Redis can show:
a publish in one coordinator process waking a long-poll in another, and surviving a dropped link."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import redis

from coordinator.errors import Unavailable
from coordinator.scheduling.wake import InProcessWake, RedisWake, WakeBus, make_wake

REDIS_URL = os.environ.get("HIVEMIND_TEST_REDIS_URL", "")
# Every scenario runs under asyncio.wait_for(SCENARIO_BUDGET_S); pytest-timeout backs that up.
SCENARIO_BUDGET_S = 20.0
pytestmark = pytest.mark.timeout(60)
# A wait that should be woken gets far longer than any wake-up takes, so a slow machine cannot fail it;
# a wait that should not be woken gets just long enough for a stray wake-up (a Redis echo) to arrive.
WOKEN_S = 10.0
NOT_WOKEN_S = 0.3

Scenario = Callable[[WakeBus], Coroutine[Any, Any, None]]
RunWithBus = Callable[[Scenario], None]


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, SCENARIO_BUDGET_S))


@pytest.fixture
def redis_prefix() -> str:
    """A fresh channel prefix on the test Redis (pub/sub leaves no keys behind to clean up)."""
    if not REDIS_URL:
        pytest.skip("Redis not configured: set HIVEMIND_TEST_REDIS_URL (.ci/run always does)")
    return f"test:{uuid.uuid4().hex}:"


@pytest.fixture(params=["in-process", "redis"])
def with_bus(request: pytest.FixtureRequest) -> RunWithBus:
    """Runs a scenario against a started bus of each backend, closing it afterwards."""
    if request.param == "in-process":

        def new_bus() -> WakeBus:
            return InProcessWake()
    else:
        prefix: str = request.getfixturevalue("redis_prefix")

        def new_bus() -> WakeBus:
            return RedisWake(REDIS_URL, prefix=prefix)

    def go(scenario: Scenario) -> None:
        async def body() -> None:
            bus = new_bus()
            await bus.start()
            try:
                await scenario(bus)
            finally:
                await bus.close()

        run(body())

    return go


async def waiters(
    bus: WakeBus, topic: str, timeout_s: float, n: int = 1
) -> list[asyncio.Task[bool]]:
    """``n`` waits on ``topic`` that have begun by the time this returns: one pass of the event loop runs
    each new task up to its first suspension, which is inside wait() after registering."""
    tasks = [asyncio.create_task(bus.wait(topic, timeout_s)) for _ in range(n)]
    await asyncio.sleep(0)
    return tasks


# -- the contract ------------------------------------------------------------------------------------
def test_a_publish_wakes_a_waiter_on_its_topic_only(with_bus: RunWithBus) -> None:
    async def scenario(bus: WakeBus) -> None:
        [work] = await waiters(bus, "work", WOKEN_S)
        [logs] = await waiters(bus, "logs:t1", NOT_WOKEN_S)
        await bus.publish("work")
        assert await work is True
        assert await logs is False

    with_bus(scenario)


def test_a_wait_nobody_publishes_to_times_out_with_false(with_bus: RunWithBus) -> None:
    async def scenario(bus: WakeBus) -> None:
        assert await bus.wait("work", NOT_WOKEN_S) is False
        assert await bus.wait("work", 0) is False

    with_bus(scenario)


def test_one_publish_wakes_every_current_waiter(with_bus: RunWithBus) -> None:
    async def scenario(bus: WakeBus) -> None:
        tasks = await waiters(bus, "work", WOKEN_S, n=200)
        await bus.publish("work")
        assert await asyncio.gather(*tasks) == [True] * 200

    with_bus(scenario)


def test_a_publish_before_the_wait_began_does_not_wake_it(with_bus: RunWithBus) -> None:
    async def scenario(bus: WakeBus) -> None:
        [earlier] = await waiters(bus, "work", WOKEN_S)
        await bus.publish("work")
        # In process, the waiter woken above has not even resumed yet; on Redis, the echo of the
        # publish arrives during this wait. Neither may wake a wait that began after the publish.
        assert await bus.wait("work", NOT_WOKEN_S) is False
        assert await earlier is True
        await bus.publish("logs:t1")  # nobody waits: nothing is kept for later
        assert await bus.wait("logs:t1", NOT_WOKEN_S) is False

    with_bus(scenario)


def test_each_publish_wakes_a_waiter_once_and_is_then_spent(with_bus: RunWithBus) -> None:
    async def scenario(bus: WakeBus) -> None:
        [first] = await waiters(bus, "logs:t1", WOKEN_S)
        await bus.publish("logs:t1")
        assert await first is True
        # The waiter polls again, as a long-poll does after finding nothing new.
        assert await bus.wait("logs:t1", NOT_WOKEN_S) is False
        [second] = await waiters(bus, "logs:t1", WOKEN_S)
        await bus.publish("logs:t1")
        assert await second is True

    with_bus(scenario)


def test_a_cancelled_waiter_leaves_the_others_working(with_bus: RunWithBus) -> None:
    async def scenario(bus: WakeBus) -> None:
        gone, staying = await waiters(bus, "work", WOKEN_S, n=2)
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        await bus.publish("work")
        assert await staying is True
        [later] = await waiters(bus, "work", WOKEN_S)
        await bus.publish("work")
        assert await later is True

    with_bus(scenario)


def test_a_bus_must_be_started_before_use() -> None:
    async def scenario() -> None:
        for bus in (InProcessWake(), RedisWake("redis://127.0.0.1:1/0", prefix="never:")):
            with pytest.raises(RuntimeError, match="start"):
                await bus.publish("work")
            with pytest.raises(RuntimeError, match="start"):
                await bus.wait("work", NOT_WOKEN_S)
            await bus.close()

    run(scenario())


def test_after_close_wake_ups_still_reach_this_process(with_bus: RunWithBus) -> None:
    async def scenario(bus: WakeBus) -> None:
        await bus.close()
        [work] = await waiters(bus, "work", WOKEN_S)
        await bus.publish("work")
        assert await work is True

    with_bus(scenario)


def test_make_wake_picks_the_backend_from_the_url() -> None:
    assert isinstance(make_wake(None), InProcessWake)
    assert isinstance(make_wake("redis://127.0.0.1:6379/15", prefix="x:"), RedisWake)


# -- Redis only ---------------------------------------------------------------------------------------
def test_a_publish_in_one_coordinator_wakes_long_polls_in_another(redis_prefix: str) -> None:
    async def scenario() -> None:
        first = RedisWake(REDIS_URL, prefix=redis_prefix)
        second = RedisWake(REDIS_URL, prefix=redis_prefix)
        elsewhere = RedisWake(REDIS_URL, prefix=f"{redis_prefix}other:")
        for bus in (first, second, elsewhere):
            await bus.start()
        try:
            [here] = await waiters(first, "work", WOKEN_S)
            there = await waiters(second, "work", WOKEN_S, n=20)
            [other_topic] = await waiters(second, "logs:t1", NOT_WOKEN_S)
            [other_prefix] = await waiters(elsewhere, "work", NOT_WOKEN_S)
            await first.publish("work")
            assert await here is True
            assert await asyncio.gather(*there) == [True] * 20
            assert await other_topic is False
            assert await other_prefix is False
            # And back the other way.
            [back] = await waiters(first, "logs:t1", WOKEN_S)
            await second.publish("logs:t1")
            assert await back is True
        finally:
            for bus in (first, second, elsewhere):
                await bus.close()

    run(scenario())


def test_a_bare_topic_published_with_redis_cli_wakes_waiters(redis_prefix: str) -> None:
    async def scenario() -> None:
        bus = RedisWake(REDIS_URL, prefix=redis_prefix)
        await bus.start()
        try:
            [work] = await waiters(bus, "work", WOKEN_S)
            with redis.Redis.from_url(REDIS_URL) as client:
                client.publish(f"{redis_prefix}wake", "work")
            assert await work is True
        finally:
            await bus.close()

    run(scenario())


def test_the_subscriber_reconnects_after_redis_drops_it(
    redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="coordinator.scheduling.wake")

    async def scenario() -> None:
        first = RedisWake(REDIS_URL, prefix=redis_prefix)
        second = RedisWake(REDIS_URL, prefix=redis_prefix)
        await first.start()
        await second.start()
        try:
            [on_first] = await waiters(first, "work", WOKEN_S)
            [on_second] = await waiters(second, "work", WOKEN_S)
            name = f"{redis_prefix}wake-subscriber"
            with redis.Redis.from_url(REDIS_URL, decode_responses=True) as client:
                ours = [c["id"] for c in client.client_list() if c["name"] == name]
                assert len(ours) == 2  # one subscriber per bus
                for client_id in ours:
                    client.execute_command("CLIENT", "KILL", "ID", client_id)
            # Publishes during the gap are lost, so resubscribing wakes every waiter to re-check.
            assert await on_first is True
            assert await on_second is True
            # The link works again, both ways.
            [across] = await waiters(first, "work", WOKEN_S)
            await second.publish("work")
            assert await across is True
            [back] = await waiters(second, "work", WOKEN_S)
            await first.publish("work")
            assert await back is True
        finally:
            await first.close()
            await second.close()

    run(scenario())
    messages = [r.getMessage() for r in caplog.records]
    assert any("lost Redis" in m and "reconnecting" in m for m in messages), messages
    assert any("reconnected" in m for m in messages), messages


def test_starting_against_an_unreachable_redis_says_what_to_do() -> None:
    async def scenario() -> None:
        bus = RedisWake("redis://:secret@127.0.0.1:1/0", prefix="unreachable:")
        try:
            with pytest.raises(Unavailable, match=r"127\.0\.0\.1:1/0.*redis-server") as raised:
                await bus.start()
            assert "secret" not in raised.value.message
        finally:
            await bus.close()

    run(scenario())
