"""Batched transfers (ledger.transfer_many, and the event-loop group commit that feeds it): on both
databases a batch gives every transfer exactly the outcome ``transfer`` gives it one by one, concurrent
callers on the event loop share commits, and a batch that fails hands its transfers to ``transfer``."""

from __future__ import annotations

import asyncio
import random
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import bindparam, text
from sqlmodel import Session

from coordinator.accounts.models import User
from coordinator.clock import utcnow
from coordinator.db import Database
from coordinator.errors import HiveMindError
from coordinator.ledger import service as ledger
from coordinator.ledger.usecases import Ledger
from tests.ledger.helpers import CPT, audit, balance, make_user
from tests.ledger.test_group_commit import _count_commits

NAMES = ["ann", "ben", "cat", "dan"]


def _people(db: Database, prefix: str) -> dict[str, int]:
    ids = {n: make_user(db, f"{prefix}{n}", grant_micro=10 * CPT) for n in NAMES}
    with db.write() as session:  # a user without a wallet, as one made outside accounts.register
        user = User(
            username=f"{prefix}eve", email=f"{prefix}eve@example.org", password_hash="x",
            created_at=utcnow(),
        )  # fmt: skip
        session.add(user)
        session.flush()
        assert user.id is not None
        ids["eve"] = user.id
    return ids


def _plan(seed: int) -> list[tuple[str, str, int, str | None, str]]:
    """(sender, recipient, amount, key, memo) covering the unusual cases between ordinary ones."""
    rnd = random.Random(seed)
    who = [*NAMES, "eve"]
    plan: list[tuple[str, str, int, str | None, str]] = []
    for i in range(40):
        sender, recipient = rnd.choice(NAMES), rnd.choice(who)
        amount = rnd.choice([CPT, 2 * CPT, 3 * CPT, 7 * CPT])
        key = rnd.choice([None, None, f"k{i}", f"k{i % 3}"])  # k0..k2 repeat: replays and conflicts
        plan.append((sender, recipient, amount, key, ""))
    plan[5] = ("ann", "ann", CPT, None, "")  # to oneself
    plan[9] = ("ben", "nobody", CPT, None, "")  # unknown recipient
    plan[13] = ("cat", "dan", 0, None, "")  # no amount
    plan[17] = ("dan", "ann", CPT, None, "x" * 500)  # memo too long
    plan[21] = ("eve", "ann", CPT, None, "")  # a sender without a wallet (and without money)
    plan[25] = ("ann", "ben", 10**9 * CPT, None, "")  # far more than anyone holds
    plan[27] = ("ann", "ben", CPT, "before", "")  # replays the transfer made before the batch
    plan[29] = plan[30] = ("cat", "ben", CPT, f"again{seed}", "")  # the second replays the first
    plan[32] = ("dan", "cat", CPT, f"other{seed}", "")
    plan[33] = ("dan", "cat", 2 * CPT, f"other{seed}", "")  # the same key for another request
    plan[35] = ("ann", "", CPT, None, "x" * 500)  # no recipient and a bad memo: which is said first
    return plan


def _outcome(result: ledger.TransferResult | HiveMindError, prefix: str) -> tuple[object, ...]:
    if isinstance(result, HiveMindError):
        return (type(result).__name__, result.message.replace(prefix, ""))
    return (
        result.amount_micro,
        result.new_balance_micro,
        result.replayed,
        result.recipient_username.replace(prefix, ""),
    )


def test_a_batch_gives_each_transfer_its_one_by_one_outcome(database: Database) -> None:
    batched, single = _people(database, "b_"), _people(database, "s_")
    with database.write() as session:  # a key used before the batch: the batch must replay it
        ledger.transfer(
            session, batched["ann"], "b_ben", CPT, idempotency_key="before", now=utcnow()
        )
        ledger.transfer(
            session, single["ann"], "s_ben", CPT, idempotency_key="before", now=utcnow()
        )
    for seed in range(3):
        plan = _plan(seed)
        requests = [
            ledger.TransferRequest(batched[s], f"b_{r}" if r else "", amount, key, memo)
            for s, r, amount, key, memo in plan
        ]
        with database.write() as session:
            got = ledger.transfer_many(session, requests, now=utcnow())
        expected: list[ledger.TransferResult | HiveMindError] = []
        for s, r, amount, key, memo in plan:
            try:
                with database.write() as session:
                    expected.append(
                        ledger.transfer(
                            session,
                            single[s],
                            f"s_{r}" if r else "",
                            amount,
                            idempotency_key=key,
                            memo=memo,
                            now=utcnow(),
                        )
                    )
            except HiveMindError as exc:
                expected.append(exc)
        assert [_outcome(o, "b_") for o in got] == [_outcome(o, "s_") for o in expected]
        kinds = {type(o).__name__ for o in got}
        assert {
            "TransferResult", "InsufficientFunds", "InvalidArgument", "NotFound", "IdempotencyConflict",
        } <= kinds  # fmt: skip
        assert sum(isinstance(o, ledger.TransferResult) and o.replayed for o in got) >= 2
    for name in [*NAMES, "eve"]:
        assert balance(database, batched[name]) == balance(database, single[name])
    assert audit(database) == []


def test_concurrent_transfers_on_the_event_loop_share_commits(database: Database) -> None:
    """200 concurrent transfers of 1 CPT out of 100 CPT, from the event loop: exactly 100 succeed, in
    fewer commits than transfers, and the books balance."""
    alice = make_user(database, "alice", grant_micro=100 * CPT)
    make_user(database, "bob")
    facade = Ledger(database, utcnow)
    commits = _count_commits(database)

    async def run() -> list[ledger.TransferResult | BaseException]:
        with ThreadPoolExecutor(4) as executor:
            return await asyncio.gather(
                *(
                    facade.transfer_async(executor, ledger.TransferRequest(alice, "bob", CPT))
                    for _ in range(200)
                ),
                return_exceptions=True,
            )

    outcomes = asyncio.run(run())
    done = [o for o in outcomes if isinstance(o, ledger.TransferResult)]
    refused = [o for o in outcomes if isinstance(o, ledger.InsufficientFunds)]
    assert len(done) == 100 and len(refused) == 100
    assert sorted(o.new_balance_micro for o in done) == [i * CPT for i in range(100)]
    assert 0 < commits[0] < 200
    assert balance(database, alice) == 0
    assert audit(database) == []


def test_a_failing_batch_hands_its_pieces_to_their_own_transactions(database: Database) -> None:
    """When the batch call fails, nothing of it commits and each piece runs alone through ``work``."""
    alice = make_user(database, "alice", grant_micro=100 * CPT)
    bob = make_user(database, "bob")
    calls = {"batch": 0}

    def broken_batch(session: Session, requests: list[int]) -> list[object]:
        calls["batch"] += 1
        ledger.transfer(session, alice, "bob", 50 * CPT, now=utcnow())  # written, then rolled back
        raise RuntimeError("disk on fire")

    def work(session: Session) -> ledger.TransferResult:
        return ledger.transfer(session, alice, "bob", CPT, now=utcnow())

    async def run() -> list[ledger.TransferResult]:
        with ThreadPoolExecutor(2) as executor:
            return await asyncio.gather(
                *(
                    database.write_grouped_async(
                        work, executor, refusals=HiveMindError, batch=broken_batch, request=i
                    )
                    for i in range(10)
                )
            )

    results = asyncio.run(run())
    assert calls["batch"] >= 1
    assert len(results) == 10 and all(r.amount_micro == CPT for r in results)
    assert balance(database, alice) == 90 * CPT and balance(database, bob) == 10 * CPT
    assert audit(database) == []


def test_a_shut_down_executor_fails_the_callers_instead_of_hanging(database: Database) -> None:
    executor = ThreadPoolExecutor(1)
    executor.shutdown()

    async def run() -> None:
        await asyncio.wait_for(
            database.write_grouped_async(lambda _s: None, executor, refusals=HiveMindError), 10
        )

    with pytest.raises(RuntimeError, match="shutdown"):
        asyncio.run(run())


def test_a_batch_larger_than_one_statement_writes_every_entry(database: Database) -> None:
    """A batch whose entries and balances take more than one statement each (on PostgreSQL they go out
    as multi-row statements of ledger._ROWS_PER_STATEMENT rows): every transfer lands with its two
    entries and every wallet ends where transferring one by one leaves it."""
    count = ledger._ROWS_PER_STATEMENT + 30  # 2 entries each: 2.6 statements' worth
    payer = make_user(database, "payer", grant_micro=count * 3 * CPT)
    payees = [make_user(database, f"payee{i}") for i in range(count)]
    requests = [
        ledger.TransferRequest(payer, f"payee{i}", (i % 3 + 1) * CPT, f"k{i}") for i in range(count)
    ]
    with database.write() as session:
        results = ledger.transfer_many(session, requests, now=utcnow())
    assert all(isinstance(r, ledger.TransferResult) and not r.replayed for r in results)
    total = sum(r.amount_micro for r in requests)
    assert balance(database, payer) == count * 3 * CPT - total
    assert [balance(database, p) for p in payees] == [r.amount_micro for r in requests]
    with database.read() as session:
        entries = session.execute(
            text("SELECT COUNT(*) FROM ledger_entries WHERE transaction_id IN :ids").bindparams(
                bindparam("ids", expanding=True)
            ),
            {"ids": [r.transaction_id for r in results if isinstance(r, ledger.TransferResult)]},
        ).scalar_one()
    assert entries == 2 * count
    assert audit(database) == []
