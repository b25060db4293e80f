"""The ledger's rules, one by one, on a real SQLite file and a real PostgreSQL. Every refused request is
checked to have written nothing: same balances, same row counts, clean audit."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from coordinator.accounts.tokens import Principal
from coordinator.clock import utcnow
from coordinator.db import Database
from coordinator.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from coordinator.ledger import service as ledger
from coordinator.ledger.errors import IdempotencyConflict, InsufficientFunds
from coordinator.ledger.models import MINT_ACCOUNT
from coordinator.ledger.usecases import Ledger
from tests.ledger.helpers import CPT, audit, balance, make_user, snapshot


def _transfer(
    db: Database, sender: int, recipient: str, amount: Any, **kw: Any
) -> ledger.TransferResult:
    with db.write() as session:
        return ledger.transfer(session, sender, recipient, amount, now=utcnow(), **kw)


def _grant(db: Database, user_id: int, amount: Any, **kw: Any) -> ledger.GrantResult:
    with db.write() as session:
        return ledger.grant(session, user_id, amount, now=utcnow(), **kw)


@pytest.fixture
def pair(database: Database) -> tuple[int, int]:
    """alice holding 10 CPT, bob holding nothing."""
    return make_user(database, "alice", grant_micro=10 * CPT), make_user(database, "bob")


# -- grants -------------------------------------------------------------------------------------------------
def test_grant_mints_into_the_wallet(database: Database) -> None:
    ada = make_user(database, "ada")
    result = _grant(database, ada, 25 * CPT, memo="launch bonus")
    assert result.new_balance_micro == 25 * CPT and not result.replayed
    assert balance(database, ada) == 25 * CPT
    snap = snapshot(database)
    assert snap.balances[MINT_ACCOUNT] == -25 * CPT
    assert snap.transactions == 1 and snap.entries == 2
    with database.read() as session:
        assert ledger.total_supply_micro(session) == 25 * CPT
    assert audit(database) == []


def test_grant_replay_returns_the_original_and_mints_once(database: Database) -> None:
    ada = make_user(database, "ada")
    first = _grant(database, ada, 5 * CPT, idempotency_key="bonus-1")
    again = _grant(database, ada, 5 * CPT, idempotency_key="bonus-1")
    assert again.replayed and again.transaction_id == first.transaction_id
    assert again.new_balance_micro == first.new_balance_micro == 5 * CPT
    before = snapshot(database)
    with pytest.raises(IdempotencyConflict, match="already used for a different request"):
        _grant(database, ada, 6 * CPT, idempotency_key="bonus-1")
    assert snapshot(database) == before
    assert balance(database, ada) == 5 * CPT and audit(database) == []


@pytest.mark.parametrize("amount", [0, -1, 2**63, ledger.MAX_AMOUNT_MICRO + 1, 1.5, True, "5"])
def test_bad_grant_amounts_write_nothing(database: Database, amount: Any) -> None:
    ada = make_user(database, "ada", grant_micro=CPT)
    before = snapshot(database)
    with pytest.raises(InvalidArgument):
        _grant(database, ada, amount)
    assert snapshot(database) == before and audit(database) == []


def test_grant_to_unknown_user_is_not_found(database: Database) -> None:
    with pytest.raises(NotFound):
        _grant(database, 4242, CPT)
    assert snapshot(database).transactions == 0


def test_open_user_wallet_is_idempotent(database: Database) -> None:
    ada = make_user(database, "ada")
    with database.write() as session:
        first = ledger.open_user_wallet(session, ada, now=utcnow())
        second = ledger.open_user_wallet(session, ada, now=utcnow())
    assert first == second
    with database.read() as session:
        assert ledger.wallet_id(session, ada) == first


def test_system_accounts_survive_a_rolled_back_first_use(database: Database) -> None:
    """The mint created inside a transaction that rolls back must not be remembered by the id cache."""

    class Boom(Exception):
        pass

    with pytest.raises(Boom), database.write() as session:
        ledger.system_accounts(session, now=utcnow())
        raise Boom
    ada = make_user(database, "ada", grant_micro=3 * CPT)
    assert balance(database, ada) == 3 * CPT and audit(database) == []


# -- transfers ----------------------------------------------------------------------------------------------
def test_transfer_moves_money_both_ways_of_the_books(
    database: Database, pair: tuple[int, int]
) -> None:
    alice, bob = pair
    result = _transfer(database, alice, "bob", 2_500_000, memo="lunch")
    assert result.new_balance_micro == 7_500_000 and result.recipient_user_id == bob
    assert balance(database, alice) == 7_500_000 and balance(database, bob) == 2_500_000
    with database.read() as session:
        (mine,), _ = ledger.list_transactions(session, alice, 1)
        (theirs,), _ = ledger.list_transactions(session, bob, 1)
    assert (mine.amount_micro, mine.counterparty, mine.memo, mine.balance_after_micro) == (
        -2_500_000,
        "bob",
        "lunch",
        7_500_000,
    )
    assert (theirs.amount_micro, theirs.counterparty, theirs.balance_after_micro) == (
        2_500_000,
        "alice",
        2_500_000,
    )
    assert mine.transaction_id == theirs.transaction_id == result.transaction_id
    assert audit(database) == []


def test_transfer_of_the_whole_balance_leaves_exactly_zero(
    database: Database, pair: tuple[int, int]
) -> None:
    alice, bob = pair
    _transfer(database, alice, "bob", 10 * CPT)
    assert balance(database, alice) == 0 and balance(database, bob) == 10 * CPT
    assert audit(database) == []


BAD_TRANSFERS: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    ("zero", {"amount": 0}, InvalidArgument, "greater than zero"),
    ("negative", {"amount": -5}, InvalidArgument, "greater than zero"),
    ("overflowing", {"amount": 2**63}, InvalidArgument, "too large"),
    ("far overflowing", {"amount": 2**200}, InvalidArgument, "too large"),
    ("above the maximum", {"amount": ledger.MAX_AMOUNT_MICRO + 1}, InvalidArgument, "too large"),
    ("a float", {"amount": 1.0}, InvalidArgument, "whole number"),
    ("a bool", {"amount": True}, InvalidArgument, "whole number"),
    ("unknown recipient", {"recipient": "nobody"}, NotFound, "no user named 'nobody'"),
    ("oversized recipient", {"recipient": "x" * 500}, InvalidArgument, "at most 32 characters"),
    ("empty recipient", {"recipient": ""}, InvalidArgument, "recipient"),
    ("blank recipient", {"recipient": "   "}, InvalidArgument, "recipient"),
    ("self", {"recipient": "alice"}, InvalidArgument, "yourself"),
    ("oversized memo", {"memo": "m" * 201}, InvalidArgument, "200 characters"),
    ("memo with NUL", {"memo": "a\x00b"}, InvalidArgument, "control characters"),
    ("memo with newline", {"memo": "a\nb"}, InvalidArgument, "control characters"),
    ("empty key", {"idempotency_key": ""}, InvalidArgument, "idempotency key"),
    ("oversized key", {"idempotency_key": "k" * 129}, InvalidArgument, "128 characters"),
    ("unprintable key", {"idempotency_key": "k\x00"}, InvalidArgument, "printable"),
    ("more than held", {"amount": 10 * CPT + 1}, InsufficientFunds, "Insufficient funds"),
    (
        "the maximum",
        {"amount": ledger.MAX_AMOUNT_MICRO},
        InsufficientFunds,
        "your balance is 10 CPT",
    ),
]


@pytest.mark.parametrize(
    ("case", "change", "error", "says"), BAD_TRANSFERS, ids=[c[0] for c in BAD_TRANSFERS]
)
def test_refused_transfers_write_nothing(
    database: Database,
    pair: tuple[int, int],
    case: str,
    change: dict[str, Any],
    error: type[Exception],
    says: str,
) -> None:
    alice, _ = pair
    args: dict[str, Any] = {"recipient": "bob", "amount": CPT} | change
    before = snapshot(database)
    with pytest.raises(error, match=says):
        _transfer(database, alice, args.pop("recipient"), args.pop("amount"), **args)
    assert snapshot(database) == before
    assert audit(database) == []


def test_insufficient_funds_is_a_failed_precondition_that_shows_the_balance(
    database: Database, pair: tuple[int, int]
) -> None:
    alice, _ = pair
    _transfer(database, alice, "bob", 8_750_000)
    with pytest.raises(FailedPrecondition) as caught:
        _transfer(database, alice, "bob", 2 * CPT)
    assert isinstance(caught.value, InsufficientFunds)
    assert "insufficient" in caught.value.message.lower()
    assert "1.25 CPT" in caught.value.message
    assert caught.value.balance_micro == 1_250_000


def test_a_user_without_a_wallet_can_receive(database: Database) -> None:
    from coordinator.accounts.models import User

    alice = make_user(database, "alice", grant_micro=5 * CPT)
    with database.write() as session:  # a user made outside accounts.register: no wallet yet
        session.add(
            User(username="carol", email="c@example.org", password_hash="x", created_at=utcnow())
        )
    _transfer(database, alice, "carol", CPT)
    with database.read() as session:
        carol = ledger.user_id_by_username(session, "carol")
    assert balance(database, carol) == CPT and audit(database) == []


# -- idempotency ----------------------------------------------------------------------------------------------
def test_transfer_replay_returns_the_original_result(
    database: Database, pair: tuple[int, int]
) -> None:
    alice, bob = pair
    first = _transfer(database, alice, "bob", 3 * CPT, idempotency_key="rent-2026-11", memo="rent")
    _transfer(database, alice, "bob", 1 * CPT)  # balance moves on
    again = _transfer(database, alice, "bob", 3 * CPT, idempotency_key="rent-2026-11", memo="rent")
    assert again.replayed and not first.replayed
    assert (again.transaction_id, again.new_balance_micro) == (first.transaction_id, 7 * CPT)
    assert balance(database, alice) == 6 * CPT and balance(database, bob) == 4 * CPT


def test_replay_succeeds_even_after_the_money_is_spent(
    database: Database, pair: tuple[int, int]
) -> None:
    alice, _ = pair
    first = _transfer(database, alice, "bob", 10 * CPT, idempotency_key="all-in")
    before = snapshot(database)
    again = _transfer(database, alice, "bob", 10 * CPT, idempotency_key="all-in")
    assert again.transaction_id == first.transaction_id and again.new_balance_micro == 0
    assert snapshot(database) == before


@pytest.mark.parametrize(
    "change",
    [{"amount": 2 * CPT}, {"memo": "other"}, {"recipient": "carol"}],
    ids=["amount", "memo", "recipient"],
)
def test_same_key_with_other_parameters_is_refused(
    database: Database, pair: tuple[int, int], change: dict[str, Any]
) -> None:
    alice, _ = pair
    make_user(database, "carol")
    _transfer(database, alice, "bob", CPT, idempotency_key="k-1", memo="m")
    before = snapshot(database)
    args: dict[str, Any] = {"recipient": "bob", "amount": CPT, "memo": "m"} | change
    with pytest.raises(IdempotencyConflict, match="different request"):
        _transfer(
            database,
            alice,
            args.pop("recipient"),
            args.pop("amount"),
            idempotency_key="k-1",
            **args,
        )
    assert snapshot(database) == before and audit(database) == []


def test_idempotency_keys_are_scoped_to_the_sender(
    database: Database, pair: tuple[int, int]
) -> None:
    alice, bob = pair
    _transfer(database, alice, "bob", 4 * CPT, idempotency_key="same")
    result = _transfer(database, bob, "alice", CPT, idempotency_key="same")
    assert not result.replayed
    assert balance(database, alice) == 7 * CPT and balance(database, bob) == 3 * CPT


# -- statements -----------------------------------------------------------------------------------------------
def test_statement_pages_newest_first(database: Database, pair: tuple[int, int]) -> None:
    alice, _ = pair
    for i in range(1, 8):
        _transfer(database, alice, "bob", i * 10_000, memo=f"#{i}")
    seen: list[str] = []
    token: str | None = None
    with database.read() as session:
        while True:
            rows, token = ledger.list_transactions(session, alice, 3, token)
            seen += [r.memo or r.kind for r in rows]
            assert len(rows) <= 3
            if not token:
                break
    assert seen == ["#7", "#6", "#5", "#4", "#3", "#2", "#1", "grant"]
    with database.read() as session:
        (grant_row,) = ledger.list_transactions(session, alice, 200, token)[0][-1:]
    assert grant_row.counterparty == MINT_ACCOUNT and grant_row.amount_micro == 10 * CPT


@pytest.mark.parametrize("token", ["abc", "-1", "0", "1" * 30, "99999999999", "1.5", "٣"])
def test_bad_page_token_is_invalid_argument(
    database: Database, pair: tuple[int, int], token: str
) -> None:
    alice, _ = pair
    with database.read() as session, pytest.raises(InvalidArgument, match="page token"):
        ledger.list_transactions(session, alice, 10, token)


@pytest.mark.parametrize("size", [0, -1, 201, 10**9])
def test_bad_page_size_is_invalid_argument(
    database: Database, pair: tuple[int, int], size: int
) -> None:
    alice, _ = pair
    with database.read() as session, pytest.raises(InvalidArgument, match="page size"):
        ledger.list_transactions(session, alice, size)


def test_balance_of_an_unknown_user_is_not_found(database: Database) -> None:
    with database.read() as session, pytest.raises(NotFound):
        ledger.get_balance(session, 999)


# -- the generic posting (escrow) -----------------------------------------------------------------------------
def test_escrow_hold_and_payout_with_a_fee(database: Database) -> None:
    buyer = make_user(database, "buyer", grant_micro=10 * CPT)
    worker = make_user(database, "worker")
    now = utcnow()
    with database.write() as session:
        escrow = ledger.open_escrow_account(session, "job-1", now=now)
        assert ledger.open_escrow_account(session, "job-1", now=now) == escrow
        buyer_acc = ledger.wallet_id(session, buyer)
        worker_acc = ledger.wallet_id(session, worker)
        fees = ledger.system_accounts(session, now=now).fees
        assert buyer_acc is not None and worker_acc is not None
        hold = ledger.post(
            session,
            "escrow_hold",
            [(buyer_acc, -4 * CPT), (escrow, 4 * CPT)],
            now=now,
            idempotency_scope="job:job-1",
            idempotency_key="hold",
        )
        again = ledger.post(
            session,
            "escrow_hold",
            [(buyer_acc, -4 * CPT), (escrow, 4 * CPT)],
            now=now,
            idempotency_scope="job:job-1",
            idempotency_key="hold",
        )
        assert again.replayed and again.transaction_id == hold.transaction_id
    before = snapshot(database)
    with database.write() as session, pytest.raises(InsufficientFunds):
        ledger.post(session, "escrow_pay", [(escrow, -5 * CPT), (worker_acc, 5 * CPT)], now=now)
    for bad in (
        [(escrow, -1), (worker_acc, 2)],
        [(escrow, -1)],
        [(escrow, -1), (escrow, 1)],
        [(escrow, 0), (worker_acc, 0)],
    ):
        with database.write() as session, pytest.raises(InvalidArgument):
            ledger.post(session, "escrow_pay", bad, now=now)
    with database.write() as session, pytest.raises(NotFound):
        ledger.post(session, "escrow_pay", [(escrow, -1), (987654, 1)], now=now)
    assert snapshot(database) == before
    with database.write() as session:
        ledger.post(
            session,
            "escrow_pay",
            [(escrow, -4 * CPT), (worker_acc, 3_600_000), (fees, 400_000)],
            now=now,
            memo="job-1 done",
        )
    assert balance(database, buyer) == 6 * CPT and balance(database, worker) == 3_600_000
    snap = snapshot(database)
    assert snap.balances["escrow:job-1"] == 0 and snap.balances["system:fees"] == 400_000
    with database.read() as session:
        (row,), _ = ledger.list_transactions(session, worker, 1)
    assert row.counterparty == "escrow:job-1" and row.memo == "job-1 done"
    assert audit(database) == []


# -- audit ----------------------------------------------------------------------------------------------------
def test_audit_reports_tampering(database: Database, pair: tuple[int, int]) -> None:
    alice, bob = pair
    _transfer(database, alice, "bob", CPT)
    assert audit(database) == []
    with database.write() as session:
        session.execute(
            text(
                f"UPDATE ledger_accounts SET balance_micro = balance_micro + 7 WHERE name = 'user:{alice}'"
            )
        )
    problems = audit(database)
    assert any("caches a balance" in p for p in problems)
    assert any("Total minted" in p for p in problems)
    with database.write() as session:
        session.execute(
            text(
                f"UPDATE ledger_accounts SET balance_micro = balance_micro - 7 WHERE name = 'user:{alice}'"
            )
        )
        session.execute(
            text("UPDATE ledger_entries SET amount_micro = amount_micro + 1 WHERE id = 1")
        )
    problems = audit(database)
    assert any("sum to 1 micro-CPT instead of zero" in p for p in problems)
    assert any("records a balance after" in p for p in problems)
    with database.write() as session:
        session.execute(
            text("UPDATE ledger_entries SET amount_micro = amount_micro - 1 WHERE id = 1")
        )
        session.execute(
            text(f"UPDATE ledger_accounts SET balance_micro = -1 WHERE name = 'user:{bob}'")
        )
    assert any("negative" in p for p in audit(database))


# -- the use-case facade the transports call ------------------------------------------------------------------
def test_only_admins_see_other_users(database: Database, pair: tuple[int, int]) -> None:
    """(Granting is an admin action with an audit entry: coordinator/admin/grants.py, tests/admin.)"""
    alice, bob = pair
    facade = Ledger(database, utcnow)
    as_alice = Principal(user_id=alice, username="alice", role="user")
    as_admin = Principal(user_id=bob, username="bob", role="admin")
    assert facade.balance(as_alice).balance_micro == 10 * CPT
    assert facade.balance(as_alice, "alice").username == "alice"
    with pytest.raises(PermissionDenied, match="administrator"):
        facade.balance(as_alice, "bob")
    with pytest.raises(PermissionDenied):
        facade.statement(as_alice, username="bob")
    assert facade.balance(as_admin, "alice").balance_micro == 10 * CPT
    with pytest.raises(NotFound):
        facade.balance(as_admin, "nobody")
    rows, _ = facade.statement(as_admin, username="alice")
    assert rows[0].kind == "grant"
    assert facade.audit() == []
