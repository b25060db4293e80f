"""Group commit (Database.write_grouped), as transfers use it, on both databases: concurrent transfers
share commits, a failure inside a group costs only the piece that failed, and grouped transfers never
deadlock against other ledger writers."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlmodel import Session

from coordinator.clock import utcnow
from coordinator.db import Database
from coordinator.errors import HiveMindError
from coordinator.ledger import service as ledger
from coordinator.ledger.errors import InsufficientFunds
from coordinator.ledger.usecases import Ledger
from tests.ledger.helpers import CPT, audit, balance, make_user, snapshot
from tests.ledger.test_ledger_concurrency import race


def _count_commits(database: Database) -> list[int]:
    commits = [0]

    def on_commit(_conn: Any) -> None:
        commits[0] += 1

    event.listen(database._write_engine, "commit", on_commit)
    return commits


def test_concurrent_transfers_share_commits(database: Database) -> None:
    alice = make_user(database, "alice", grant_micro=1_000 * CPT)
    make_user(database, "bob")
    facade = Ledger(database, utcnow)
    commits = _count_commits(database)
    outcomes = race(300, lambda _i: facade.transfer(alice, "bob", CPT), threads=60)
    assert all(isinstance(o, ledger.TransferResult) for o in outcomes)
    assert sorted(o.new_balance_micro for o in outcomes) == [  # type: ignore[union-attr]
        (1_000 - 300 + i) * CPT for i in range(300)
    ]
    assert 0 < commits[0] < 300  # grouped: fewer commits than transfers
    assert balance(database, alice) == 700 * CPT
    assert audit(database) == []


def test_a_failing_piece_is_rolled_back_alone(database: Database) -> None:
    """A piece that fails after writing (not a refusal) must not commit, nor fail its neighbours."""
    alice = make_user(database, "alice", grant_micro=100 * CPT)
    bob = make_user(database, "bob")
    facade = Ledger(database, utcnow)

    def broken_transfer(session: Session) -> None:
        ledger.transfer(session, alice, "bob", 7 * CPT, now=utcnow())
        raise RuntimeError("disk on fire")

    def one(i: int) -> object:
        if i % 10 == 0:
            try:
                database.write_grouped(broken_transfer, refusals=HiveMindError)
            except RuntimeError as exc:
                return exc
            raise AssertionError("the broken piece reported success")
        return facade.transfer(alice, "bob", CPT)

    outcomes = race(100, one, threads=50)
    failed = [o for o in outcomes if isinstance(o, RuntimeError)]
    done = [o for o in outcomes if isinstance(o, ledger.TransferResult)]
    assert len(failed) == 10 and len(done) == 90
    assert balance(database, alice) == 10 * CPT and balance(database, bob) == 90 * CPT
    assert audit(database) == []


def test_grouped_transfers_and_ordered_postings_do_not_deadlock(database: Database) -> None:
    """Grouped transfers lock their wallets up front in ascending order, as ``post`` does, so they run
    beside escrow-style postings on the same wallets without a deadlock (PostgreSQL aborts one side of a
    deadlock with an error, which would show up here as an unexpected failure)."""
    names = [f"u{i}" for i in range(6)]
    ids = [make_user(database, n, grant_micro=100 * CPT) for n in names]
    with database.write() as session:
        wallets = [ledger.wallet_id(session, u) for u in ids]
        escrow = ledger.open_escrow_account(session, "job-1", now=utcnow())
    facade = Ledger(database, utcnow)
    rnd = random.Random(11)
    plan = [(rnd.randrange(6), rnd.randrange(1, 6), rnd.randrange(1, 5)) for _ in range(300)]
    lock = threading.Lock()

    def one(i: int) -> object:
        src, step, amount = plan[i]
        if i % 3 == 0:
            # An escrow hold touching two wallets and the escrow in one sorted lock (as jobs do).
            other = (src + step) % 6
            with database.write() as session:
                return ledger.post(
                    session,
                    "escrow_hold",
                    [
                        (wallets[src], -amount * CPT),  # type: ignore[list-item]
                        (wallets[other], -amount * CPT),  # type: ignore[list-item]
                        (escrow, 2 * amount * CPT),
                    ],
                    now=utcnow(),
                )
        with lock:
            recipient = names[(src + step) % 6]
        return facade.transfer(ids[src], recipient, amount * CPT)

    outcomes = race(len(plan), one, threads=48)
    unexpected = [
        o for o in outcomes if isinstance(o, Exception) and not isinstance(o, InsufficientFunds)
    ]
    assert unexpected == []
    wallets_total = sum(balance(database, u) for u in ids)
    held = next(v for k, v in snapshot(database).balances.items() if k.endswith("job-1"))
    assert wallets_total + held == 600 * CPT
    assert audit(database) == []


def test_postgres_writes_reuse_the_connection_returned_last(database: Database) -> None:
    """The loop's groups write one after another; each takes the connection the last one returned (the
    pool is LIFO), whose backend is warm and has the ledger's statements prepared, not the one that has
    waited longest in the pool."""
    if database.is_sqlite:
        pytest.skip("PostgreSQL's connection pool; SQLite writes on its own connection")
    backend = text("SELECT pg_backend_pid()")
    with database.engine.connect() as first, database.engine.connect() as second:
        older, newer = first.execute(backend).scalar(), second.execute(backend).scalar()
        first.close()  # back in the pool first: it has waited longest when the writes start
    assert older != newer
    for _ in range(3):
        with database.write() as session:
            assert session.connection().execute(backend).scalar() == newer
