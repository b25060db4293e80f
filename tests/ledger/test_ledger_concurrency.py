"""Many writers at once, each in its own write transaction, on both databases: a hot account never goes
negative, opposite transfers never deadlock, and an idempotency key moves money once however many
copies of the request race."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest

from coordinator.clock import utcnow
from coordinator.db import Database
from coordinator.errors import HiveMindError
from coordinator.ledger import service as ledger
from coordinator.ledger.errors import IdempotencyConflict, InsufficientFunds
from coordinator.ledger.usecases import Ledger
from tests.ledger.helpers import CPT, audit, balance, make_user, snapshot

T = TypeVar("T")


def race(n: int, fn: Callable[[int], T], *, threads: int = 200) -> list[T | HiveMindError]:
    """Run ``fn(0..n-1)`` on ``threads`` threads released together; a domain error is returned, not raised."""
    gate = threading.Barrier(min(n, threads))

    def one(i: int) -> T | HiveMindError:
        if i < threads:
            gate.wait(30)
        try:
            return fn(i)
        except HiveMindError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(one, range(n)))


def test_200_concurrent_transfers_from_100_cpt_exactly_100_succeed(database: Database) -> None:
    alice = make_user(database, "alice", grant_micro=100 * CPT)
    bob = make_user(database, "bob")
    facade = Ledger(database, utcnow)
    outcomes = race(200, lambda _i: facade.transfer(alice, "bob", CPT))
    done = [o for o in outcomes if isinstance(o, ledger.TransferResult)]
    refused = [o for o in outcomes if isinstance(o, InsufficientFunds)]
    assert len(done) == 100 and len(refused) == 100
    assert all("insufficient" in r.message.lower() for r in refused)
    assert sorted(r.new_balance_micro for r in done) == [i * CPT for i in range(100)]
    assert balance(database, alice) == 0 and balance(database, bob) == 100 * CPT
    assert audit(database) == []


def test_opposite_transfers_do_not_deadlock(database: Database) -> None:
    names = ["u0", "u1", "u2", "u3"]
    ids = [make_user(database, n, grant_micro=50 * CPT) for n in names]
    facade = Ledger(database, utcnow)
    rnd = random.Random(7)
    plan = [(rnd.randrange(4), rnd.randrange(1, 4)) for _ in range(400)]

    def move(i: int) -> ledger.TransferResult:
        src, step = plan[i]
        return facade.transfer(ids[src], names[(src + step) % 4], rnd.randrange(1, 30) * CPT)

    outcomes = race(len(plan), move, threads=64)
    unexpected = [
        o for o in outcomes if isinstance(o, HiveMindError) and not isinstance(o, InsufficientFunds)
    ]
    assert unexpected == []
    assert sum(balance(database, u) for u in ids) == 200 * CPT
    assert audit(database) == []


def test_concurrent_replays_of_one_key_move_money_once(database: Database) -> None:
    alice = make_user(database, "alice", grant_micro=10 * CPT)
    bob = make_user(database, "bob")
    facade = Ledger(database, utcnow)
    outcomes = race(
        60,
        lambda _i: facade.transfer(alice, "bob", 3 * CPT, idempotency_key="once", memo="m"),
        threads=60,
    )
    assert all(isinstance(o, ledger.TransferResult) for o in outcomes), outcomes
    results = [o for o in outcomes if isinstance(o, ledger.TransferResult)]
    assert len({r.transaction_id for r in results}) == 1
    assert {r.new_balance_micro for r in results} == {7 * CPT}
    assert sum(not r.replayed for r in results) == 1
    assert balance(database, alice) == 7 * CPT and balance(database, bob) == 3 * CPT
    assert snapshot(database).transactions == 2  # the grant and the one transfer
    assert audit(database) == []


def test_concurrent_grants_with_one_key_mint_once(database: Database) -> None:
    ada = make_user(database, "ada")

    def grant(_i: int) -> ledger.GrantResult:
        with database.write() as session:
            return ledger.grant(session, ada, 5 * CPT, idempotency_key="airdrop-1", now=utcnow())

    outcomes = race(40, grant, threads=40)
    results = [o for o in outcomes if isinstance(o, ledger.GrantResult)]
    assert len(results) == 40 and len({r.transaction_id for r in results}) == 1
    assert balance(database, ada) == 5 * CPT and audit(database) == []


@pytest.mark.parametrize("writers", [2, 16])
def test_one_key_for_different_postings_lets_exactly_one_through(
    database: Database, writers: int
) -> None:
    """Postings over *different* accounts do not share a row lock; the unique (scope, key) must still let
    only one of them commit, and the others get a clear conflict, not a database error."""
    users = [make_user(database, f"w{i}", grant_micro=CPT) for i in range(writers)]
    sink = make_user(database, "sink")
    with database.read() as session:
        wallets = [ledger.wallet_id(session, u) for u in users]
        sink_wallet = ledger.wallet_id(session, sink)
    assert sink_wallet is not None

    def pay(i: int) -> ledger.Posting:
        wallet = wallets[i]
        assert wallet is not None
        with database.write() as session:
            return ledger.post(
                session,
                "fee",
                [(wallet, -(i + 1)), (sink_wallet, i + 1)],
                now=utcnow(),
                idempotency_scope="batch:1",
                idempotency_key="fee",
            )

    outcomes = race(writers, pay, threads=writers)
    assert sum(isinstance(o, ledger.Posting) for o in outcomes) == 1
    assert sum(isinstance(o, IdempotencyConflict) for o in outcomes) == writers - 1
    assert snapshot(database).transactions == writers + 1
    assert audit(database) == []
