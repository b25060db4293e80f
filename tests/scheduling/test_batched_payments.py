"""The report path pays a whole batch of verified tasks with ``ledger.post_many``: one ledger transaction per
task, each with its own idempotency key, written with a fixed number of statements. These tests hold it to
what ``ledger.post`` promises, on SQLite and PostgreSQL: balances to the micro-CPT, running balances in
every entry, a replayed batch pays nothing twice, and a refused batch writes nothing."""

from __future__ import annotations

import pytest

from coordinator.clock import utcnow
from coordinator.db import Database
from coordinator.errors import InvalidArgument
from coordinator.ledger import service as ledger
from coordinator.ledger.errors import IdempotencyConflict, InsufficientFunds
from tests.ledger.helpers import CPT, audit, balance, make_user, snapshot


def _escrow(db: Database, submitter: int, job: str, amount: int) -> int:
    now = utcnow()
    with db.write() as session:
        escrow = ledger.open_escrow_account(session, job, now=now)
        wallet = ledger.wallet_id(session, submitter)
        assert wallet is not None
        ledger.post(session, "escrow_hold", [(wallet, -amount), (escrow, amount)], now=now)
    return escrow


def _wallet(db: Database, user_id: int) -> int:
    with db.read() as session:
        wallet = ledger.wallet_id(session, user_id)
    assert wallet is not None
    return wallet


def _pay(db: Database, requests: list[ledger.PostingRequest]) -> list[ledger.Posting]:
    with db.write() as session:
        return ledger.post_many(session, "task_payment", requests, now=utcnow())


def test_a_batch_of_payments_moves_every_amount_and_chains_the_balances(database: Database) -> None:
    submitter = make_user(database, "submitter", grant_micro=10 * CPT)
    alice, bob = make_user(database, "alice"), make_user(database, "bob")
    escrow = _escrow(database, submitter, "job-1", 5 * CPT)
    with database.read() as session:
        fees = ledger.system_accounts(session, now=utcnow()).fees
    a, b = _wallet(database, alice), _wallet(database, bob)
    requests = [
        ledger.PostingRequest(
            [(escrow, -(2 * CPT + 100)), (a, 2 * CPT), (fees, 100)], "task 0", "pay:t0"
        ),
        ledger.PostingRequest([(escrow, -CPT), (a, CPT // 2), (b, CPT // 2)], "task 1", "pay:t1"),
        ledger.PostingRequest([(escrow, -7), (b, 7)], "task 2", "pay:t2"),
    ]
    postings = _pay(database, requests)

    assert [p.replayed for p in postings] == [False, False, False]
    assert len({p.transaction_id for p in postings}) == 3
    # Each posting sees the balances the one before it left.
    assert postings[0].balance_after(escrow) == 3 * CPT - 100
    assert postings[1].balance_after(escrow) == 2 * CPT - 100
    assert postings[2].balance_after(escrow) == 2 * CPT - 107
    assert postings[1].balance_after(a) == 2 * CPT + CPT // 2
    assert balance(database, alice) == 2 * CPT + CPT // 2
    assert balance(database, bob) == CPT // 2 + 7
    assert balance(database, submitter) == 5 * CPT
    assert audit(database) == []  # entries sum to zero, running balances match, nothing negative

    # The same batch again (a replayed report): every posting is answered from the first, nothing moves.
    before = snapshot(database)
    again = _pay(database, requests)
    assert [p.replayed for p in again] == [True, True, True]
    assert [p.transaction_id for p in again] == [p.transaction_id for p in postings]
    assert snapshot(database) == before

    # A batch mixing a replay and a new payment pays only the new one.
    mixed = _pay(
        database, [requests[2], ledger.PostingRequest([(escrow, -3), (a, 3)], "", "pay:t3")]
    )
    assert [p.replayed for p in mixed] == [True, False]
    assert balance(database, alice) == 2 * CPT + CPT // 2 + 3
    assert audit(database) == []


def test_a_refused_batch_writes_nothing(database: Database) -> None:
    submitter = make_user(database, "submitter", grant_micro=10 * CPT)
    alice = make_user(database, "alice")
    escrow = _escrow(database, submitter, "job-1", CPT)
    a = _wallet(database, alice)
    _pay(database, [ledger.PostingRequest([(escrow, -10), (a, 10)], "first", "pay:first")])
    before = snapshot(database)

    # The second payment would take the escrow below zero: neither is written.
    with pytest.raises(InsufficientFunds):
        _pay(
            database,
            [
                ledger.PostingRequest([(escrow, -(CPT // 2)), (a, CPT // 2)], "", "pay:a"),
                ledger.PostingRequest([(escrow, -(CPT // 2)), (a, CPT // 2)], "", "pay:b"),
            ],
        )
    assert snapshot(database) == before
    # A key reused for a different payment is refused, and so is the whole batch.
    with pytest.raises(IdempotencyConflict):
        _pay(
            database,
            [
                ledger.PostingRequest([(escrow, -1), (a, 1)], "", "pay:new"),
                ledger.PostingRequest([(escrow, -11), (a, 11)], "first", "pay:first"),
            ],
        )
    assert snapshot(database) == before
    with pytest.raises(InvalidArgument, match="its own idempotency key"):
        _pay(
            database,
            [
                ledger.PostingRequest([(escrow, -1), (a, 1)], "", "pay:twice"),
                ledger.PostingRequest([(escrow, -2), (a, 2)], "", "pay:twice"),
            ],
        )
    with pytest.raises(InvalidArgument, match="sum to zero"):
        _pay(database, [ledger.PostingRequest([(escrow, -1), (a, 2)], "", "pay:unbalanced")])
    assert snapshot(database) == before
    assert audit(database) == []
