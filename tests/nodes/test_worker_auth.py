"""How WorkerService authenticates a node credential: each is trusted for ``node_auth_cache_s`` seconds, and
the ones out of date are checked again together, in one read, on both databases."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlmodel import update

from coordinator.accounts.models import User
from coordinator.db import Database
from coordinator.errors import Unauthenticated
from coordinator.nodes import service as node_service
from coordinator.nodes.models import Node
from coordinator.nodes.service import REVOKED, UNKNOWN_CREDENTIAL, NodeHardware, NodeRegistry
from coordinator.rpc.worker_servicer import NodeAuthCache
from shared_proto.v1 import nodes_pb2, worker_pb2, worker_pb2_grpc
from tests.nodes.test_registry import _user
from tests.support import RunningCoordinator, auth, bearer

HW = NodeHardware(hostname="ada-pc", cpu_cores=8, memory_gb=32.0, cpu_score=100.0)
TTL = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingRegistry(NodeRegistry):
    """The real registry, counting its reads."""

    def __init__(self, db: Database) -> None:
        super().__init__(db, lambda: datetime(2030, 1, 1, tzinfo=UTC))
        self.alone: list[str] = []
        self.together: list[list[str]] = []

    def authenticate(self, credential: str) -> Node:
        self.alone.append(credential)
        return super().authenticate(credential)

    def authenticate_many(self, credentials: Sequence[str]) -> dict[str, Node | Unauthenticated]:
        self.together.append(sorted(credentials))
        return super().authenticate_many(credentials)


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(2)
    yield pool
    pool.shutdown()


def test_out_of_date_credentials_are_checked_again_together(
    database: Database, executor: ThreadPoolExecutor
) -> None:
    registry = CountingRegistry(database)
    clock = Clock()
    cache = NodeAuthCache(registry, TTL, executor, clock)
    ada = _user(database, "ada")
    regs = [registry.register(ada, HW) for _ in range(5)]
    creds = [r.credential for r in regs]

    async def scenario() -> None:
        # First seen: each is checked alone.
        nodes = [await cache.node(c) for c in creds]
        assert [n.id for n in nodes] == [r.node.id for r in regs]
        assert registry.alone == creds and registry.together == []
        # Within the cache time nothing is read again.
        clock.now += TTL / 2 - 0.1
        assert [(await cache.node(c)).id for c in creds] == [r.node.id for r in regs]
        assert len(registry.alone) == 5 and registry.together == []

        # Out of date, and asked for at once: one read checks every entry past half its time.
        clock.now += TTL / 2 + 0.2
        again = await asyncio.gather(*(cache.node(c) for c in creds))
        assert [n.id for n in again] == [r.node.id for r in regs]
        assert registry.together == [sorted(creds)] and len(registry.alone) == 5

        # A revoked credential and a disabled owner are refused at the next check, with their reasons.
        registry.revoke(regs[1].node.id, ada)
        bob = _user(database, "bob")
        bobs = registry.register(bob, HW)
        assert (await cache.node(bobs.credential)).id == bobs.node.id
        with database.write() as s:
            s.execute(update(User).where(User.id == bob.user_id).values(disabled=True))
        clock.now += TTL
        with pytest.raises(Unauthenticated, match=REVOKED):
            await cache.node(creds[1])
        with pytest.raises(Unauthenticated, match="owns this node is disabled"):
            await cache.node(bobs.credential)
        assert (await cache.node(creds[0])).id == regs[0].node.id
        # The refused ones were read together, then alone to say why; each is refused again, alone,
        # every time (a refusal is not kept).
        assert set(registry.together[-1]) == {*creds, bobs.credential}
        assert registry.alone[-2:] == [creds[1], bobs.credential]
        with pytest.raises(Unauthenticated, match=REVOKED):
            await cache.node(creds[1])
        assert registry.alone[-1] == creds[1]

        # An entry unused for long is dropped, not checked: seen again, it is checked alone.
        clock.now += NodeAuthCache.IDLE_TTLS * TTL + 1
        reads = len(registry.together)
        assert (await cache.node(creds[0])).id == regs[0].node.id
        assert len(registry.together) == reads and registry.alone[-1] == creds[0]

    asyncio.run(scenario())


def test_many_credentials_are_read_in_chunks_and_junk_is_refused_unread(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = NodeRegistry(database, lambda: datetime(2030, 1, 1, tzinfo=UTC))
    ada = _user(database, "ada")
    regs = [registry.register(ada, HW) for _ in range(5)]
    reads = 0
    real_read = database.read

    def counted_read() -> Any:
        nonlocal reads
        reads += 1
        return real_read()

    monkeypatch.setattr(database, "read", counted_read)
    junk = ["", "Bearer x", "hmn_" + "x" * 200]
    answers = registry.authenticate_many(junk)
    assert reads == 0 and all(isinstance(answers[j], Unauthenticated) for j in junk)

    # Two credentials per statement: five real ones and one unknown take three statements in one read.
    monkeypatch.setattr(node_service, "_CREDENTIALS_PER_READ", 2)
    answers = registry.authenticate_many([r.credential for r in regs] + ["hmn_unknown", *junk])
    assert reads == 1
    for r in regs:
        node = answers[r.credential]
        assert isinstance(node, Node) and node.id == r.node.id and node.owner_id == ada.user_id
    assert str(answers["hmn_unknown"]) == UNKNOWN_CREDENTIAL
    assert len(answers) == len(regs) + 1 + len(junk)


@pytest.mark.parametrize(("cache_s", "still_works"), [(3600.0, True), (0.0, False)])
def test_the_cache_time_bounds_how_long_a_revoked_credential_works(
    db_url: str, tmp_path: Path, cache_s: float, still_works: bool
) -> None:
    """Within the cache time a connected worker's revoked credential still works; with 0, not at all."""
    with RunningCoordinator.start(db_url=db_url, data_dir=tmp_path, node_auth_cache_s=cache_s) as c:
        _, token = c.signup("ada")
        first, second = (
            c.nodes.RegisterWorkerNode(
                nodes_pb2.RegisterWorkerNodeRequest(hostname=name, cpu_cores=4, memory_gb=8.0),
                metadata=auth(token),
            )
            for name in ("one", "two")
        )
        worker = worker_pb2_grpc.WorkerServiceStub(c.channel)

        def heartbeat(credential: str) -> worker_pb2.HeartbeatResponse:
            return worker.Heartbeat(
                worker_pb2.HeartbeatRequest(status="idle"), metadata=auth(credential)
            )

        heartbeat(first.node_credential)
        heartbeat(second.node_credential)
        r = c.http.post(f"/api/v1/nodes/{first.node_id}/revoke", headers=bearer(token))
        assert r.status_code == 200
        if still_works:
            assert heartbeat(first.node_credential).deadline_ms > 0
        else:
            with pytest.raises(grpc.RpcError) as exc:
                heartbeat(first.node_credential)
            assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert exc.value.details() == REVOKED
        assert heartbeat(second.node_credential).deadline_ms > 0


def test_a_failed_check_together_falls_back_to_each_alone(
    database: Database, executor: ThreadPoolExecutor, caplog: pytest.LogCaptureFixture
) -> None:
    class Failing(CountingRegistry):
        def authenticate_many(
            self, credentials: Sequence[str]
        ) -> dict[str, Node | Unauthenticated]:
            super().authenticate_many(credentials)
            raise RuntimeError("the database went away")

    registry = Failing(database)
    clock = Clock()
    cache = NodeAuthCache(registry, TTL, executor, clock)
    ada = _user(database, "ada")
    creds = [registry.register(ada, HW).credential for _ in range(3)]

    async def scenario() -> None:
        for c in creds:
            await cache.node(c)
        clock.now += TTL + 1
        nodes = await asyncio.gather(*(cache.node(c) for c in creds))
        assert len({n.id for n in nodes}) == 3
        # One check together, which failed (and was logged once), then each alone.
        assert len(registry.together) == 1
        assert registry.alone[:3] == creds and sorted(registry.alone[3:]) == sorted(creds)
        # The entries are fresh again: nothing more is read.
        await cache.node(creds[0])
        assert len(registry.alone) == 6

    asyncio.run(scenario())
    assert caplog.text.count("could not be re-checked together") == 1
