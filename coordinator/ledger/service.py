"""Ledger operations: open accounts, mint (grant), transfer between users, post any balanced transaction,
read balances and statements, and audit the books. The transports call them through ``usecases.Ledger``.

Every function here takes a ``Session`` that is already inside a write transaction (``Database.write()``)
or a read one, and never commits: the caller's transaction is the unit of work, so a ledger posting and
the domain change that caused it (a new user, a finished job) commit or roll back together. A refused
request (any exception raised here) has written nothing, even if the caller goes on to commit.

Concurrency. On SQLite ``Database.write()`` serializes writers, so reading a balance and then writing it is
safe. On PostgreSQL every posting first locks the rows of the accounts it touches with one
``SELECT ... ORDER BY id FOR NO KEY UPDATE`` (sorted, so two postings over the same accounts cannot
deadlock), then checks balances and writes. Idempotency keys are unique per (scope, key); the transaction
insert uses ``ON CONFLICT DO NOTHING``, so a replay - even one racing the first request on PostgreSQL -
is detected without an error and answered with the first result.

Speed. The hot paths run Core statements built once at import (statements, not engines: they hold no
connection), most of them as ``RawStatement`` (coordinator/rawsql.py: compiled once, run on the session's
driver connection): no ORM objects, no flush. A transfer is four statements: lock both wallets, insert the
transaction, insert its entries, update the balances. ``transfer_many`` and ``post_many`` do a batch in a
fixed number of statements plus one short insert per transaction.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Connection,
    Engine,
    Table,
    bindparam,
    case,
    func,
    insert,
    literal,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.elements import BindParameter
from sqlmodel import Session

from coordinator.errors import HiveMindError, InvalidArgument, NotFound
from coordinator.ledger.errors import BalanceLimitExceeded, IdempotencyConflict, InsufficientFunds
from coordinator.ledger.models import (
    FEES_ACCOUNT,
    KIND_ESCROW,
    KIND_FEES,
    KIND_MINT,
    KIND_USER,
    MINT_ACCOUNT,
)
from coordinator.ledger.tables import ACCOUNTS, ENTRIES, TRANSACTIONS, USERS
from coordinator.rawsql import RawStatement, padded

# The most one request may move: 10**15 micro-CPT is one billion CPT. Far above any real payment, far
# below what a signed 64-bit column holds, so sums of a few thousand maximal postings still fit.
MAX_AMOUNT_MICRO = 10**15
# What a BIGINT balance column can hold; a posting that would exceed it is refused, not truncated.
MAX_BALANCE_MICRO = 2**63 - 1
MAX_MEMO = 200
MAX_IDEMPOTENCY_KEY = 128
MAX_KIND = 32
MAX_USERNAME = 32
MAX_ACCOUNT_NAME = 64
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200

KIND_GRANT = "grant"
KIND_TRANSFER = "transfer"

POSTED_KINDS = "hivemind.ledger.posted_kinds"
"""Key of a list in a connection's ``info``: when an observer put one there (at the start of a transaction),
each transaction written appends its kind. Nothing is recorded on connections nobody observes."""


# -- results ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Posting:
    """A written (or, with ``replayed``, an earlier) transaction and each account's balance after it."""

    transaction_id: int
    created_at: datetime
    balances_after: tuple[tuple[int, int], ...]  # (account id, balance after), one per entry
    replayed: bool

    def balance_after(self, account_id: int) -> int:
        for acc, balance in self.balances_after:
            if acc == account_id:
                return balance
        raise KeyError(account_id)


@dataclass(frozen=True, slots=True)
class GrantResult:
    transaction_id: int
    user_id: int
    amount_micro: int
    new_balance_micro: int
    replayed: bool


@dataclass(frozen=True, slots=True)
class TransferResult:
    transaction_id: int
    sender_user_id: int
    recipient_user_id: int
    recipient_username: str
    amount_micro: int
    new_balance_micro: int  # the sender's balance right after this transfer
    created_at: datetime
    replayed: bool

    @property
    def message(self) -> str:
        """What to tell the sender."""
        if self.replayed:
            return (
                "This transfer was already made with this idempotency key; nothing was sent again."
            )
        return f"Sent {format_cpt(self.amount_micro)} to {self.recipient_username}."


@dataclass(frozen=True, slots=True)
class StatementRow:
    """One line of a user's history, seen from that user's wallet."""

    entry_id: int
    transaction_id: int
    kind: str
    amount_micro: int  # signed: positive is money in
    counterparty: str  # a username, or an account name such as "system:mint" or "escrow:<job>"
    created_at: datetime
    memo: str
    balance_after_micro: int


@dataclass(frozen=True, slots=True)
class SystemAccounts:
    mint: int
    fees: int


# -- validation -------------------------------------------------------------------------------------------
def format_cpt(micro: int) -> str:
    """``12_500_000`` -> ``"12.5 CPT"``, ``10**15`` -> ``"1,000,000,000 CPT"``; exact, never through a float."""
    text = format(Decimal(micro).scaleb(-6).normalize(), ",f")
    return f"{text} CPT"


def check_amount(amount_micro: object) -> int:
    if isinstance(amount_micro, bool) or not isinstance(amount_micro, int):
        raise InvalidArgument("The amount must be a whole number of micro-CPT (1 CPT = 1,000,000).")
    if amount_micro <= 0:
        raise InvalidArgument("Enter an amount greater than zero.")
    if amount_micro > MAX_AMOUNT_MICRO:
        raise InvalidArgument(
            f"The amount is too large: at most {format_cpt(MAX_AMOUNT_MICRO)} can move in one request."
        )
    return amount_micro


def check_memo(memo: str) -> str:
    if not isinstance(memo, str):
        raise InvalidArgument("The memo must be text.")
    if len(memo) > MAX_MEMO:
        raise InvalidArgument(
            f"Shorten the memo to at most {MAX_MEMO} characters (it has {len(memo)})."
        )
    # PostgreSQL text cannot hold NUL, and control characters render badly in every statement view.
    if any(ord(ch) < 32 and ch not in "\t" for ch in memo):
        raise InvalidArgument("Remove line breaks and control characters from the memo.")
    return memo


def check_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not isinstance(key, str) or not key:
        raise InvalidArgument(
            "The idempotency key is empty: leave it out, or send 1 to 128 characters."
        )
    if len(key) > MAX_IDEMPOTENCY_KEY:
        raise InvalidArgument(
            f"Shorten the idempotency key to at most {MAX_IDEMPOTENCY_KEY} characters (a UUID is ideal)."
        )
    if not key.isprintable():
        raise InvalidArgument(
            "The idempotency key may only contain printable characters (a UUID is ideal)."
        )
    return key


def check_recipient(username: str) -> str:
    if not isinstance(username, str) or not username.strip():
        raise InvalidArgument("Enter the recipient's username.")
    if len(username) > MAX_USERNAME:
        raise InvalidArgument(
            f"A username has at most {MAX_USERNAME} characters. Check the recipient's username."
        )
    return username


def check_kind(kind: str) -> str:
    if not isinstance(kind, str) or not kind or len(kind) > MAX_KIND:
        raise InvalidArgument(
            f"A ledger transaction kind is 1 to {MAX_KIND} characters, got {kind!r}."
        )
    return kind


def fingerprint(kind: str, entries: Iterable[tuple[int, int]], memo: str) -> str:
    """What a replay must match: the same kind, the same movements and the same memo."""
    body = "|".join(f"{acc}:{amount}" for acc, amount in sorted(entries))
    return hashlib.sha256(f"{kind}\x1f{body}\x1f{memo}".encode()).hexdigest()


# -- statements, built once -------------------------------------------------------------------------------
def _insert_ignoring_conflicts(dialect: str, table: Table, *columns: str) -> Insert:
    """``INSERT ... ON CONFLICT (columns) DO NOTHING`` in the session's dialect."""
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=list(columns))
    return sqlite.insert(table).on_conflict_do_nothing(index_elements=list(columns))


_INSERT_TX = {
    name: RawStatement(
        _insert_ignoring_conflicts(
            name, TRANSACTIONS, "idempotency_scope", "idempotency_key"
        ).returning(TRANSACTIONS.c.id)
    )
    for name in ("postgresql", "sqlite")
}
_INSERT_ACCOUNT = {
    name: _insert_ignoring_conflicts(name, ACCOUNTS, "name").returning(ACCOUNTS.c.id)
    for name in ("postgresql", "sqlite")
}


# Entries and balances written as few statements as possible: one multi-row INSERT and one UPDATE ... CASE
# per _ROWS_PER_STATEMENT rows, built once per size (not an executemany, which on psycopg runs one
# statement per row, each converted, sent and answered in Python). SQLite's executemany loops in C, so the
# batch paths keep it there (_write_entries, _write_balances).
_ROWS_PER_STATEMENT = 100
_ENTRY_COLUMNS = (
    "transaction_id",
    "account_id",
    "amount_micro",
    "balance_after_micro",
    "created_at",
)


@functools.cache
def _insert_entry_rows(n: int) -> RawStatement:
    return RawStatement(
        insert(ENTRIES).values(
            [
                {c: bindparam(f"{c}_{i}", type_=ENTRIES.c[c].type) for c in _ENTRY_COLUMNS}
                for i in range(n)
            ]  # typed each: SQLAlchemy types only the first row's parameters from the columns
        )
    )


@functools.cache
def _set_balances(n: int) -> RawStatement:
    ids: list[BindParameter[int]] = [bindparam(f"acc{i}") for i in range(n)]
    new_balance = case(*((ACCOUNTS.c.id == ids[i], bindparam(f"after{i}")) for i in range(n)))
    return RawStatement(
        update(ACCOUNTS).where(ACCOUNTS.c.id.in_(ids)).values(balance_micro=new_balance)
    )


def _insert_entries(conn: Connection, rows: Sequence[Mapping[str, object]]) -> None:
    for start in range(0, len(rows), _ROWS_PER_STATEMENT):
        chunk = rows[start : start + _ROWS_PER_STATEMENT]
        params = {f"{c}_{i}": row[c] for i, row in enumerate(chunk) for c in _ENTRY_COLUMNS}
        _insert_entry_rows(len(chunk)).rowcount(conn, params)


def _update_balances(conn: Connection, balances: Mapping[int, int]) -> None:
    """Set each account's cached balance (account id -> balance); the rows are locked already."""
    items = list(balances.items())
    for start in range(0, len(items), _ROWS_PER_STATEMENT):
        chunk = items[start : start + _ROWS_PER_STATEMENT]
        params: dict[str, object] = {}
        for i, (acc, after) in enumerate(chunk):
            params[f"acc{i}"], params[f"after{i}"] = acc, after
        updated = _set_balances(len(chunk)).rowcount(conn, params)
        if updated != len(chunk):  # pragma: no cover - the rows are locked: only a bug gets here
            raise RuntimeError(f"ledger: updated {updated} balances of {len(chunk)}; rolling back")


# FOR NO KEY UPDATE, not FOR UPDATE: it serializes balance writers just the same but does not block
# other tables' foreign-key checks on these rows (which take KEY SHARE). SQLite ignores the clause.
_LOCK_ACCOUNTS = RawStatement(
    select(ACCOUNTS.c.id, ACCOUNTS.c.kind, ACCOUNTS.c.balance_micro)
    .where(ACCOUNTS.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(ACCOUNTS.c.id)
    .with_for_update(key_share=True)
)
_LOCK_TRANSFER_PARTIES = RawStatement(
    select(ACCOUNTS.c.id, ACCOUNTS.c.user_id, ACCOUNTS.c.balance_micro)
    .where(
        ACCOUNTS.c.user_id.in_(
            [
                bindparam("sender"),
                select(USERS.c.id)
                .where(USERS.c.username == bindparam("recipient"))
                .scalar_subquery(),
            ]
        )
    )
    .order_by(ACCOUNTS.c.id)
    .with_for_update(key_share=True)
)  # rows: (account id, user id, balance)
_FIND_REPLAY = (
    select(
        TRANSACTIONS.c.id,
        TRANSACTIONS.c.request_fingerprint,
        TRANSACTIONS.c.created_at,
        ENTRIES.c.account_id,
        ENTRIES.c.balance_after_micro,
    )
    .join(ENTRIES, ENTRIES.c.transaction_id == TRANSACTIONS.c.id)
    .where(
        TRANSACTIONS.c.idempotency_scope == bindparam("scope"),
        TRANSACTIONS.c.idempotency_key == bindparam("key"),
    )
    .order_by(ENTRIES.c.id)
)
_WALLET_OF = select(ACCOUNTS.c.id).where(ACCOUNTS.c.user_id == bindparam("user_id"))
_ACCOUNT_NAMED = select(ACCOUNTS.c.id).where(ACCOUNTS.c.name == bindparam("name"))
_LOCK_WALLETS_OF = (
    select(ACCOUNTS.c.id)
    .where(
        ACCOUNTS.c.user_id.in_(bindparam("senders", expanding=True))
        | ACCOUNTS.c.user_id.in_(
            select(USERS.c.id).where(USERS.c.username.in_(bindparam("recipients", expanding=True)))
        )
    )
    .order_by(ACCOUNTS.c.id)
    .with_for_update(key_share=True)
)
_USER_NAMED = select(USERS.c.id).where(USERS.c.username == bindparam("username"))
_USER_EXISTS = select(USERS.c.id).where(USERS.c.id == bindparam("user_id"))


def _dialect(conn: Connection) -> str:
    return "postgresql" if conn.dialect.name == "postgresql" else "sqlite"


# -- account ids ------------------------------------------------------------------------------------------
# System account ids never change once committed, so they are cached per engine (a Database owns its
# engines; a test's fresh database gets a fresh engine, hence a fresh cache entry).
_system_ids: weakref.WeakKeyDictionary[Engine, SystemAccounts] = weakref.WeakKeyDictionary()
_system_ids_lock = threading.Lock()


def _engine_of(session: Session) -> Engine:
    bind = session.get_bind()
    return bind if isinstance(bind, Engine) else bind.engine


def _ensure_account(
    conn: Connection, name: str, kind: str, *, now: datetime, user_id: int | None = None
) -> tuple[int, bool]:
    """The id of account ``name``, creating it if missing; and whether it existed before this call.

    Race-safe on both databases: a concurrent creator makes our insert a no-op (PostgreSQL waits for it to
    commit), and the select that follows sees its row."""
    created = conn.execute(
        _INSERT_ACCOUNT[_dialect(conn)],
        {"name": name, "kind": kind, "user_id": user_id, "balance_micro": 0, "created_at": now},
    ).scalar()
    if created is not None:
        return int(created), False
    existing = conn.execute(_ACCOUNT_NAMED, {"name": name}).scalar()
    if existing is None:  # pragma: no cover - a conflict on a row we cannot see: it was deleted
        raise NotFound(f"The ledger account '{name}' could not be created or found.")
    return int(existing), True


def system_accounts(session: Session, *, now: datetime) -> SystemAccounts:
    """The ids of the mint and fees accounts, created on first use."""
    engine = _engine_of(session)
    cached = _system_ids.get(engine)
    if cached is not None:
        return cached
    conn = session.connection()
    mint, mint_existed = _ensure_account(conn, MINT_ACCOUNT, KIND_MINT, now=now)
    fees, fees_existed = _ensure_account(conn, FEES_ACCOUNT, KIND_FEES, now=now)
    ids = SystemAccounts(mint=mint, fees=fees)
    # Only cache rows that were committed before: ones we just inserted vanish if our caller rolls back.
    if mint_existed and fees_existed:
        with _system_ids_lock:
            _system_ids[engine] = ids
    return ids


def _forget_system_accounts(session: Session) -> None:
    with _system_ids_lock:
        _system_ids.pop(_engine_of(session), None)


def open_user_wallet(session: Session, user_id: int, *, now: datetime) -> int:
    """Create the wallet of user ``user_id`` (idempotent) and return its account id."""
    system_accounts(session, now=now)
    account_id, _ = _ensure_account(
        session.connection(), f"user:{user_id}", KIND_USER, now=now, user_id=user_id
    )
    return account_id


def open_escrow_account(session: Session, job_id: str, *, now: datetime) -> int:
    """Create the escrow account of job ``job_id`` (idempotent) and return its id."""
    name = f"escrow:{job_id}"
    if not job_id or len(name) > MAX_ACCOUNT_NAME:
        raise InvalidArgument(
            f"A job id for an escrow account is 1 to {MAX_ACCOUNT_NAME - 7} characters."
        )
    system_accounts(session, now=now)
    account_id, _ = _ensure_account(session.connection(), name, KIND_ESCROW, now=now)
    return account_id


def wallet_id(session: Session, user_id: int) -> int | None:
    """The wallet account id of ``user_id``, or None if the user has none."""
    found = session.connection().execute(_WALLET_OF, {"user_id": user_id}).scalar()
    return None if found is None else int(found)


def account_id(session: Session, name: str) -> int | None:
    found = session.connection().execute(_ACCOUNT_NAMED, {"name": name}).scalar()
    return None if found is None else int(found)


def user_id_by_username(session: Session, username: str) -> int:
    found = session.connection().execute(_USER_NAMED, {"username": username}).scalar()
    if found is None:
        raise NotFound(f"There is no user named '{username[:40]}'. Check the username.")
    return int(found)


def _wallet_or_open(session: Session, user_id: int, *, now: datetime) -> int:
    existing = wallet_id(session, user_id)
    if existing is not None:
        return existing
    if session.connection().execute(_USER_EXISTS, {"user_id": user_id}).scalar() is None:
        raise NotFound(f"There is no user with id {user_id}.")
    return open_user_wallet(session, user_id, now=now)


# -- the posting core -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Idempotency:
    """A request's idempotency key, its scope, and the fingerprint a replay must match."""

    scope: str
    key: str
    fingerprint: str


def _idempotency(
    scope: str, key: str | None, kind: str, entries: Sequence[tuple[int, int]], memo: str
) -> _Idempotency | None:
    return None if key is None else _Idempotency(scope, key, fingerprint(kind, entries, memo))


def _transaction_row(
    kind: str, initiator_user_id: int | None, idem: _Idempotency | None, memo: str, now: datetime
) -> dict[str, object]:
    """The parameters of one ledger transaction's insert."""
    return {
        "kind": kind,
        "initiator_user_id": initiator_user_id,
        "idempotency_scope": None if idem is None else idem.scope,
        "idempotency_key": None if idem is None else idem.key,
        "request_fingerprint": None if idem is None else idem.fingerprint,
        "memo": memo,
        "created_at": now,
    }


def _find_replay(conn: Connection, idem: _Idempotency) -> Posting | None:
    rows = conn.execute(_FIND_REPLAY, {"scope": idem.scope, "key": idem.key}).all()
    if not rows:
        return None
    if rows[0].request_fingerprint != idem.fingerprint:
        raise IdempotencyConflict(
            "This idempotency key was already used for a different request. Use a new key for a new "
            "request, or resend the original request unchanged to get its result."
        )
    return Posting(
        transaction_id=int(rows[0].id),
        created_at=rows[0].created_at,
        balances_after=tuple((int(r.account_id), int(r.balance_after_micro)) for r in rows),
        replayed=True,
    )


def _balance_after(acc: int, acc_kind: str, balance: int, amount: int) -> int:
    """``balance + amount``, refused below zero (except for the mint) and past the largest balance."""
    after = balance + amount
    if after < 0 and acc_kind != KIND_MINT:
        raise InsufficientFunds(
            f"Insufficient funds: the account holds {format_cpt(balance)} and this needs "
            f"{format_cpt(-amount)}.",
            account_id=acc,
            balance_micro=balance,
            needed_micro=-amount,
        )
    if not -MAX_BALANCE_MICRO <= after <= MAX_BALANCE_MICRO:
        raise BalanceLimitExceeded(
            "This payment would take an account past the largest balance the ledger can hold. "
            "Send a smaller amount."
        )
    return after


def _write(
    conn: Connection,
    *,
    kind: str,
    entries: Sequence[tuple[int, int]],
    balances: dict[int, tuple[str, int]],
    now: datetime,
    memo: str,
    idem: _Idempotency | None,
    initiator_user_id: int | None,
) -> Posting:
    """Write one balanced transaction on accounts already locked; ``balances`` maps id -> (kind, balance).

    A replay of ``idem`` returns the first posting and writes nothing. It is looked up only when needed:
    before refusing for lack of funds (a replay must succeed even after the money is spent), and when
    the transaction insert hits the unique (scope, key) - so the common case costs no extra statement."""
    new_balances: list[tuple[int, int]] = []
    for acc, amount in entries:
        acc_kind, balance = balances[acc]
        try:
            after = _balance_after(acc, acc_kind, balance, amount)
        except InsufficientFunds:
            replay = _find_replay(conn, idem) if idem is not None else None
            if replay is not None:
                return replay
            raise
        new_balances.append((acc, after))
    tx_id = _INSERT_TX[_dialect(conn)].scalar(
        conn, _transaction_row(kind, initiator_user_id, idem, memo, now)
    )
    if tx_id is None:
        # ON CONFLICT DO NOTHING: this key was used before (or by a concurrent request that committed
        # while we waited on PostgreSQL). Nothing was written; answer with the first result.
        replay = _find_replay(conn, idem) if idem is not None else None
        if replay is None:  # pragma: no cover - a conflict needs a key, and a committed row to see
            raise RuntimeError(
                "ledger: the transaction insert conflicted but no earlier one exists"
            )
        return replay
    _insert_entries(
        conn,
        [
            {
                "transaction_id": tx_id,
                "account_id": acc,
                "amount_micro": amount,
                "balance_after_micro": after,
                "created_at": now,
            }
            for (acc, amount), (_, after) in zip(entries, new_balances, strict=True)
        ],
    )
    _update_balances(conn, dict(new_balances))
    posted = conn.info.get(POSTED_KINDS)
    if (
        posted is not None
    ):  # an observer (coordinator/metrics.py) counts it when the transaction commits
        posted.append(kind)
    return Posting(
        transaction_id=int(tx_id),
        created_at=now,
        balances_after=tuple(new_balances),
        replayed=False,
    )


def _lock(conn: Connection, account_ids: Iterable[int]) -> dict[int, tuple[str, int]]:
    rows = _LOCK_ACCOUNTS.rows(conn, {"ids": padded(sorted(set(account_ids)))})
    return {int(r.id): (str(r.kind), int(r.balance_micro)) for r in rows}


def _check_entries(entries: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    checked = [(int(acc), int(amount)) for acc, amount in entries]
    if len(checked) < 2:
        raise InvalidArgument("A ledger transaction needs at least two entries.")
    if len({acc for acc, _ in checked}) != len(checked):
        raise InvalidArgument("A ledger transaction may name each account only once.")
    if any(amount == 0 or abs(amount) > MAX_BALANCE_MICRO for _, amount in checked):
        raise InvalidArgument("Every ledger entry moves a non-zero amount that fits in 64 bits.")
    if sum(amount for _, amount in checked) != 0:
        raise InvalidArgument("A ledger transaction's entries must sum to zero.")
    return checked


def post(
    session: Session,
    kind: str,
    entries: Sequence[tuple[int, int]],
    *,
    now: datetime,
    memo: str = "",
    idempotency_scope: str | None = None,
    idempotency_key: str | None = None,
    initiator_user_id: int | None = None,
) -> Posting:
    """Post one balanced transaction: ``entries`` are (account id, signed micro-CPT) and sum to zero.

    Locks the accounts, refuses to take any non-mint account below zero (``InsufficientFunds``), writes
    the transaction, its entries and the new cached balances. With an idempotency key (unique within
    ``idempotency_scope``, default ``"ledger"``) a replay returns the first posting and writes nothing;
    the same key with other entries or memo raises ``IdempotencyConflict``. This is the primitive that
    jobs use to hold, release and pay escrow.
    """
    kind = check_kind(kind)
    checked = _check_entries(entries)
    memo = check_memo(memo)
    key = check_idempotency_key(idempotency_key)
    if idempotency_scope is not None and not 0 < len(idempotency_scope) <= MAX_ACCOUNT_NAME:
        raise InvalidArgument(f"An idempotency scope is 1 to {MAX_ACCOUNT_NAME} characters.")
    conn = session.connection()
    balances = _lock(conn, (acc for acc, _ in checked))
    missing = [acc for acc, _ in checked if acc not in balances]
    if missing:
        raise NotFound(f"Ledger account(s) {missing} do not exist.")
    return _write(
        conn,
        kind=kind,
        entries=checked,
        balances=balances,
        now=now,
        memo=memo,
        idem=_idempotency(idempotency_scope or "ledger", key, kind, checked, memo),
        initiator_user_id=initiator_user_id,
    )


@dataclass(frozen=True, slots=True)
class PostingRequest:
    """One balanced transaction for :func:`post_many`."""

    entries: Sequence[tuple[int, int]]
    memo: str = ""
    idempotency_key: str | None = None


_INSERT_ENTRY = RawStatement(insert(ENTRIES))
_SET_BALANCE = RawStatement(
    update(ACCOUNTS)
    .where(ACCOUNTS.c.id == bindparam("b_id"))
    .values(balance_micro=bindparam("b_balance"))
)


def _write_entries(conn: Connection, rows: list[dict[str, object]]) -> None:
    """A batch's entries: an executemany on SQLite, multi-row statements on PostgreSQL."""
    if _dialect(conn) == "postgresql":
        _insert_entries(conn, rows)
    else:
        _INSERT_ENTRY.executemany(conn, rows)


def _write_balances(conn: Connection, balances: dict[int, int]) -> None:
    """A batch's new balances (account id -> balance), as :func:`_write_entries` writes entries."""
    if _dialect(conn) == "postgresql":
        _update_balances(conn, balances)
    else:
        _SET_BALANCE.executemany(
            conn, [{"b_id": acc, "b_balance": after} for acc, after in balances.items()]
        )


class IdempotencyRace(RuntimeError):
    """A batch met a key that a concurrent transaction committed after the batch looked: it rolls back
    (its group commit then runs each transfer alone, which replays the key)."""


def _insert_transactions(conn: Connection, rows: list[dict[str, object]]) -> list[int]:
    """Insert transaction rows, one short statement each (SQLite cannot promise the order of a multi-row
    RETURNING; on PostgreSQL they go out as one pipeline, one round trip); their ids, in order. A key that
    a concurrent request committed since the caller looked raises :class:`IdempotencyRace`, which rolls
    the caller's transaction back."""
    ids = _INSERT_TX[_dialect(conn)].returning_many(conn, rows)
    if any(tx_id is None for tx_id in ids):
        raise IdempotencyRace("an idempotency key was used concurrently; run one by one")
    return [int(tx_id) for tx_id in ids]


def post_many(
    session: Session,
    kind: str,
    requests: Sequence[PostingRequest],
    *,
    now: datetime,
    idempotency_scope: str | None = None,
    initiator_user_id: int | None = None,
) -> list[Posting]:
    """Post several balanced transactions of one ``kind``, in order, as :func:`post` would one by one, but
    with a fixed number of statements whatever their number: lock every account once, look up every
    idempotency key once, then insert the transactions, their entries and the new balances with one
    ``executemany`` each. Each transaction keeps its own entries, memo and idempotency key (a replayed key
    returns its first posting and writes nothing; a key used for something else raises
    ``IdempotencyConflict``), and later transactions see the balances the earlier ones left.

    All or nothing: any refusal (bad entries, missing account, insufficient funds, a key named twice in
    the batch) raises before anything is written. Unlike :func:`post`, a transaction with a key that a
    concurrent request inserts at the same moment fails the batch (``IdempotencyRace``) instead of
    replaying it, so callers must already serialize the work a key stands for (the dispatcher holds the
    task's row lock)."""
    kind = check_kind(kind)
    scope = idempotency_scope or "ledger"
    if not 0 < len(scope) <= MAX_ACCOUNT_NAME:
        raise InvalidArgument(f"An idempotency scope is 1 to {MAX_ACCOUNT_NAME} characters.")
    checked = [
        (_check_entries(r.entries), check_memo(r.memo), check_idempotency_key(r.idempotency_key))
        for r in requests
    ]
    if not checked:
        return []
    keys = [key for _, _, key in checked if key is not None]
    if len(set(keys)) != len(keys):
        raise InvalidArgument("Each transaction of a batch needs its own idempotency key.")
    conn = session.connection()
    balances = _lock(conn, (acc for entries, _, _ in checked for acc, _ in entries))
    missing = sorted({acc for entries, _, _ in checked for acc, _ in entries} - set(balances))
    if missing:
        raise NotFound(f"Ledger account(s) {missing} do not exist.")
    used = {key for _, key in _used_pairs(conn, [(scope, key) for key in keys])} if keys else set()
    running = {acc: balance for acc, (_, balance) in balances.items()}
    results: list[Posting | None] = []
    tx_rows: list[dict[str, object]] = []
    afters: list[list[tuple[int, int]]] = []
    for entries, memo, key in checked:
        idem = _idempotency(scope, key, kind, entries, memo)
        if idem is not None and key in used:
            replay = _find_replay(conn, idem)  # raises IdempotencyConflict on a different request
            assert replay is not None
            results.append(replay)
            continue
        after_entries: list[tuple[int, int]] = []
        for acc, amount in entries:
            after_entries.append((acc, _balance_after(acc, balances[acc][0], running[acc], amount)))
        for acc, after in after_entries:
            running[acc] = after
        results.append(None)
        afters.append(after_entries)
        tx_rows.append(_transaction_row(kind, initiator_user_id, idem, memo, now))
    if not tx_rows:
        return [r for r in results if r is not None]
    tx_ids = _insert_transactions(conn, tx_rows)
    entry_rows: list[dict[str, object]] = []
    written = iter(zip(tx_ids, afters, strict=True))
    postings: list[Posting] = []
    for (entries, _, _), replay in zip(checked, results, strict=True):
        if replay is not None:
            postings.append(replay)
            continue
        tx_id, after_entries = next(written)
        for (acc, amount), (_, after) in zip(entries, after_entries, strict=True):
            entry_rows.append(
                {
                    "transaction_id": tx_id,
                    "account_id": acc,
                    "amount_micro": amount,
                    "balance_after_micro": after,
                    "created_at": now,
                }
            )
        postings.append(
            Posting(
                transaction_id=tx_id,
                created_at=now,
                balances_after=tuple(after_entries),
                replayed=False,
            )
        )
    _write_entries(conn, entry_rows)
    changed = {acc: after for acc, after in running.items() if after != balances[acc][1]}
    if changed:
        _write_balances(conn, changed)
    posted = conn.info.get(POSTED_KINDS)
    if posted is not None:
        posted.extend([kind] * len(tx_rows))
    return postings


# -- grants and transfers ---------------------------------------------------------------------------------
def grant(
    session: Session,
    user_id: int,
    amount_micro: int,
    *,
    kind: str = KIND_GRANT,
    idempotency_key: str | None = None,
    memo: str = "",
    now: datetime,
    initiator_user_id: int | None = None,
) -> GrantResult:
    """Mint ``amount_micro`` into the wallet of ``user_id`` (opening the wallet if needed).

    Idempotency keys of grants share one scope, the mint's, whoever initiates them."""
    amount = check_amount(amount_micro)
    kind = check_kind(kind)
    memo = check_memo(memo)
    key = check_idempotency_key(idempotency_key)
    wallet = _wallet_or_open(session, user_id, now=now)
    mint = system_accounts(session, now=now).mint
    conn = session.connection()
    balances = _lock(conn, (mint, wallet))
    if mint not in balances:
        # The cached id belongs to a database that was reset under this engine: look it up afresh.
        _forget_system_accounts(session)
        mint = system_accounts(session, now=now).mint
        balances = _lock(conn, (mint, wallet))
    entries = [(mint, -amount), (wallet, amount)]
    posting = _write(
        conn,
        kind=kind,
        entries=entries,
        balances=balances,
        now=now,
        memo=memo,
        idem=_idempotency(MINT_ACCOUNT, key, kind, entries, memo),
        initiator_user_id=initiator_user_id,
    )
    return GrantResult(
        transaction_id=posting.transaction_id,
        user_id=user_id,
        amount_micro=amount,
        new_balance_micro=posting.balance_after(wallet),
        replayed=posting.replayed,
    )


def _lock_transfer_parties(
    session: Session,
    conn: Connection,
    sender_user_id: int,
    recipient_username: str,
    *,
    now: datetime,
) -> tuple[tuple[int, int], tuple[int, int, int]]:
    """Lock both wallets; returns ((sender account, sender balance), (recipient account, balance, user id)).

    The common case is one statement. Anything unusual (unknown recipient, sending to oneself, a user
    without a wallet) falls to a slower path that explains or repairs it."""
    for _attempt in range(2):
        sender: tuple[int, int] | None = None
        recipient: tuple[int, int, int] | None = None
        for acc, user_id, balance in _LOCK_TRANSFER_PARTIES.rows(
            conn, {"sender": sender_user_id, "recipient": recipient_username}
        ):
            if user_id == sender_user_id:
                sender = (int(acc), int(balance))
            else:
                recipient = (int(acc), int(balance), int(user_id))
        if sender is not None and recipient is not None:
            return sender, recipient
        recipient_user_id = conn.execute(_USER_NAMED, {"username": recipient_username}).scalar()
        if recipient_user_id is None:
            raise NotFound(
                f"There is no user named '{recipient_username}'. Check the recipient's username."
            )
        if recipient_user_id == sender_user_id:
            raise InvalidArgument("You cannot send CPT to yourself. Choose another recipient.")
        # A user without a wallet (created outside accounts.register): open it, then lock again.
        if sender is None:
            _wallet_or_open(session, sender_user_id, now=now)
        if recipient is None:
            _wallet_or_open(session, int(recipient_user_id), now=now)
    raise NotFound(
        "The wallets for this transfer could not be found. Try again."
    )  # pragma: no cover


def lock_transfer_wallets(session: Session, parties: list[tuple[int, str]]) -> None:
    """Lock, in one ordered statement, the wallets of several transfers' (sender id, recipient name)
    parties: a group of transfers sharing one transaction then takes its row locks in ascending order,
    as every other ledger writer does, and cannot deadlock against them (PostgreSQL; on SQLite the
    database is locked whole)."""
    conn = session.connection()
    if _dialect(conn) != "postgresql" or not parties:
        return
    conn.execute(
        _LOCK_WALLETS_OF,
        {
            "senders": sorted({sender for sender, _ in parties}),
            "recipients": sorted({recipient for _, recipient in parties}),
        },
    )


def transfer(
    session: Session,
    sender_user_id: int,
    recipient_username: str,
    amount_micro: int,
    *,
    idempotency_key: str | None = None,
    memo: str = "",
    now: datetime,
) -> TransferResult:
    """Move ``amount_micro`` from the wallet of ``sender_user_id`` to the wallet of ``recipient_username``.

    Checks, in order: the fields; the recipient exists and is not the sender; a replay of the same
    idempotency key (scope: the sender) returns the original result; the sender holds enough.
    The common case is four statements: lock both wallets, insert the transaction, its two entries,
    and the two new balances."""
    amount = check_amount(amount_micro)
    recipient_username = check_recipient(recipient_username)
    memo = check_memo(memo)
    key = check_idempotency_key(idempotency_key)
    conn = session.connection()
    (sender_acc, sender_balance), (recipient_acc, recipient_balance, recipient_user_id) = (
        _lock_transfer_parties(session, conn, sender_user_id, recipient_username, now=now)
    )
    entries = [(sender_acc, -amount), (recipient_acc, amount)]
    try:
        posting = _write(
            conn,
            kind=KIND_TRANSFER,
            entries=entries,
            balances={
                sender_acc: (KIND_USER, sender_balance),
                recipient_acc: (KIND_USER, recipient_balance),
            },
            now=now,
            memo=memo,
            idem=_idempotency(f"user:{sender_user_id}", key, KIND_TRANSFER, entries, memo),
            initiator_user_id=sender_user_id,
        )
    except InsufficientFunds as exc:
        raise _short_of_funds(sender_acc, sender_balance, amount) from exc
    return TransferResult(
        transaction_id=posting.transaction_id,
        sender_user_id=sender_user_id,
        recipient_user_id=recipient_user_id,
        recipient_username=recipient_username,
        amount_micro=amount,
        new_balance_micro=posting.balance_after(sender_acc),
        created_at=posting.created_at,
        replayed=posting.replayed,
    )


def _short_of_funds(sender_acc: int, balance: int, amount: int) -> InsufficientFunds:
    return InsufficientFunds(
        f"Insufficient funds: your balance is {format_cpt(balance)} and this transfer "
        f"needs {format_cpt(amount)}. Send a smaller amount.",
        account_id=sender_acc,
        balance_micro=balance,
        needed_micro=amount,
    )


@dataclass(frozen=True, slots=True)
class TransferRequest:
    """One transfer for :func:`transfer_many`, as :func:`transfer` takes it."""

    sender_user_id: int
    recipient_username: str
    amount_micro: int
    idempotency_key: str | None = None
    memo: str = ""


def transfer_request(session: Session, r: TransferRequest, *, now: datetime) -> TransferResult:
    """:func:`transfer` of one :class:`TransferRequest`."""
    return transfer(
        session,
        r.sender_user_id,
        r.recipient_username,
        r.amount_micro,
        idempotency_key=r.idempotency_key,
        memo=r.memo,
        now=now,
    )


# The wallets of a batch's senders and recipients, locked in one ordered statement (as a prelock does);
# and which of the batch's idempotency keys were used before. One statement per list size, so each
# runs as a RawStatement (an expanding IN would cost SQLAlchemy's per-call rendering).
@functools.cache
def _lock_batch_wallets(senders: int, recipients: int) -> RawStatement:
    return RawStatement(
        select(ACCOUNTS.c.id, ACCOUNTS.c.user_id, ACCOUNTS.c.balance_micro, USERS.c.username)
        .select_from(USERS.join(ACCOUNTS, ACCOUNTS.c.user_id == USERS.c.id))
        .where(
            # Both IN-lists on the users table, each on an index of its own: an index search per term,
            # then the wallet by its user. (With the recipients as a subquery on the accounts side,
            # PostgreSQL could only filter every account through a hashed subplan, at any table size.)
            USERS.c.id.in_([bindparam(f"s{i}") for i in range(senders)])
            | USERS.c.username.in_([bindparam(f"r{i}") for i in range(recipients)])
        )
        .order_by(ACCOUNTS.c.id)
        .with_for_update(key_share=True, of=ACCOUNTS)
    )


# Pairs looked up per statement (SQLite allows 500 terms in a compound SELECT); a power of two, as the
# statement sizes are (_used_pairs).
_PAIRS_PER_LOOKUP = 128


@functools.cache
def _key_pairs(n: int) -> RawStatement:
    """Which of ``n`` (scope, key) pairs a transaction already holds: one equality probe of the unique
    (scope, key) index per pair, joined with UNION ALL. Each probe names both columns with ``=``, so every
    planner searches the index by both, whatever its statistics say. (``scope IN (...) AND key IN
    (...)`` did not: PostgreSQL, with statistics older than the table's growth, searched by scope
    alone and filtered every transaction of that scope - a hot sender's whole history per batch.)"""
    probes = [
        select(TRANSACTIONS.c.idempotency_scope, TRANSACTIONS.c.idempotency_key).where(
            TRANSACTIONS.c.idempotency_scope == bindparam(f"c{i}"),
            TRANSACTIONS.c.idempotency_key == bindparam(f"k{i}"),
        )
        for i in range(n)
    ]
    return RawStatement(probes[0] if n == 1 else union_all(*probes))


def _used_pairs(conn: Connection, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """The (scope, key) pairs among ``pairs`` that a ledger transaction already holds."""
    unique = sorted(set(pairs))
    used: set[tuple[str, str]] = set()
    for start in range(0, len(unique), _PAIRS_PER_LOOKUP):
        chunk = padded(unique[start : start + _PAIRS_PER_LOOKUP])  # one statement per power of two
        params = _numbered("c", [c for c, _ in chunk]) | _numbered("k", [k for _, k in chunk])
        used.update((str(c), str(k)) for c, k in _key_pairs(len(chunk)).rows(conn, params))
    return used


def _numbered(prefix: str, values: Sequence[object]) -> dict[str, object]:
    return {f"{prefix}{i}": value for i, value in enumerate(values)}


def transfer_many(
    session: Session, requests: Sequence[TransferRequest], *, now: datetime
) -> list[TransferResult | HiveMindError]:
    """Several transfers in one transaction, each with the outcome :func:`transfer` would give it if they
    ran one after another in this order: its result, or its refusal (returned, not raised). A refused
    transfer writes nothing; the others are written.

    The common case costs a fixed number of statements whatever the number of transfers: lock every
    wallet involved (one ordered statement), look up the idempotency keys, then insert the transactions
    (one short statement each), their entries and the new balances (one ``executemany`` each). A transfer
    that is not the common case - an unknown recipient, a missing wallet, a payment to oneself, a key used
    before or earlier in the batch - is handed to :func:`transfer` in its turn: what the batch has
    computed so far is written first, and the wallets are read again after it."""
    outcomes: list[TransferResult | HiveMindError | None] = [None] * len(requests)
    checked: list[tuple[int, TransferRequest, int, str, str | None]] = []
    for i, r in enumerate(requests):
        try:
            amount = check_amount(r.amount_micro)  # checked in transfer()'s order
            check_recipient(r.recipient_username)
            memo, key = check_memo(r.memo), check_idempotency_key(r.idempotency_key)
        except HiveMindError as exc:
            outcomes[i] = exc
            continue
        checked.append((i, r, amount, memo, key))
    conn = session.connection()
    batch = _TransferBatch(conn, now, outcomes)
    if checked:
        batch.lock(checked)
        keyed = [(f"user:{r.sender_user_id}", key) for _, r, *_, key in checked if key is not None]
        if keyed:
            batch.used = _used_pairs(conn, keyed)
    for n, (i, r, amount, memo, key) in enumerate(checked):
        try:
            batch.add(i, r, amount, memo, key)
        except HiveMindError as exc:
            outcomes[i] = exc
        except _Unusual:
            batch.flush()
            try:
                outcomes[i] = transfer_request(session, r, now=now)
            except HiveMindError as exc:
                outcomes[i] = exc
            batch.lock(checked[n + 1 :])  # transfer() changed balances the batch had read
            if key is not None:
                batch.used.add((f"user:{r.sender_user_id}", key))
    batch.flush()
    settled = [o for o in outcomes if o is not None]
    if len(settled) != len(requests):  # pragma: no cover - every branch above settles its transfer
        raise RuntimeError("ledger: a transfer of the batch was left without an outcome")
    return settled


class _Unusual(Exception):
    """A transfer the batch leaves to :func:`transfer` (see :func:`transfer_many`)."""


class _TransferBatch:
    """The state of :func:`transfer_many`: locked wallets with their running balances, the keys in use,
    and the transactions computed but not yet written."""

    def __init__(
        self, conn: Connection, now: datetime, outcomes: list[TransferResult | HiveMindError | None]
    ) -> None:
        self.conn = conn
        self.now = now
        self.outcomes = outcomes
        self.wallets: dict[int, tuple[int, int]] = {}  # user id -> (account id, balance)
        self.user_ids: dict[str, int] = {}
        self.used: set[tuple[str, str]] = set()
        self.tx_rows: list[dict[str, object]] = []
        self.moves: list[
            tuple[int, int, int, int, int]
        ] = []  # sender acc, recipient acc, amount, afters
        self.results: list[
            tuple[int, TransferRequest, int, int, int]
        ] = []  # outcome index, request,
        # recipient id, amount, sender after

    def lock(self, items: Sequence[tuple[int, TransferRequest, int, str, str | None]]) -> None:
        if not items:
            return
        senders = sorted({r.sender_user_id for _, r, *_ in items})
        recipients = sorted({r.recipient_username for _, r, *_ in items})
        for acc, user_id, balance, username in _lock_batch_wallets(
            len(senders), len(recipients)
        ).rows(self.conn, _numbered("s", senders) | _numbered("r", recipients)):
            self.wallets[int(user_id)] = (int(acc), int(balance))
            self.user_ids[str(username)] = int(user_id)

    def add(self, i: int, r: TransferRequest, amount: int, memo: str, key: str | None) -> None:
        """Compute transfer ``i`` against the running balances and queue its writes; its outcome is set
        when they are written (:meth:`flush`). Raises its refusal, or ``_Unusual``."""
        sender = self.wallets.get(r.sender_user_id)
        recipient_id = self.user_ids.get(r.recipient_username)
        recipient = None if recipient_id is None else self.wallets.get(recipient_id)
        scope = f"user:{r.sender_user_id}"
        if (
            sender is None
            or recipient is None
            or recipient_id is None
            or recipient_id == r.sender_user_id
            or (key is not None and (scope, key) in self.used)
        ):
            raise _Unusual
        (sender_acc, sender_balance), (recipient_acc, recipient_balance) = sender, recipient
        if sender_balance < amount:
            raise _short_of_funds(sender_acc, sender_balance, amount)
        recipient_after = _balance_after(recipient_acc, KIND_USER, recipient_balance, amount)
        sender_after = sender_balance - amount
        self.wallets[r.sender_user_id] = (sender_acc, sender_after)
        self.wallets[recipient_id] = (recipient_acc, recipient_after)
        entries = [(sender_acc, -amount), (recipient_acc, amount)]
        idem = _idempotency(scope, key, KIND_TRANSFER, entries, memo)
        if idem is not None:
            self.used.add((scope, idem.key))  # a second use in this batch replays this one
        self.tx_rows.append(_transaction_row(KIND_TRANSFER, r.sender_user_id, idem, memo, self.now))
        self.moves.append((sender_acc, recipient_acc, amount, sender_after, recipient_after))
        self.results.append((i, r, recipient_id, amount, sender_after))

    def flush(self) -> None:
        """Write the queued transactions and set their outcomes."""
        if not self.tx_rows:
            return
        tx_ids = _insert_transactions(self.conn, self.tx_rows)
        entry_rows: list[dict[str, object]] = []
        balances: dict[int, int] = {}
        for tx_id, (sender_acc, recipient_acc, amount, s_after, r_after) in zip(
            tx_ids, self.moves, strict=True
        ):
            for acc, moved, after in (
                (sender_acc, -amount, s_after),
                (recipient_acc, amount, r_after),
            ):
                entry_rows.append(
                    {
                        "transaction_id": tx_id,
                        "account_id": acc,
                        "amount_micro": moved,
                        "balance_after_micro": after,
                        "created_at": self.now,
                    }
                )
                balances[acc] = after
        _write_entries(self.conn, entry_rows)
        _write_balances(self.conn, balances)
        posted = self.conn.info.get(POSTED_KINDS)
        if posted is not None:
            posted.extend([KIND_TRANSFER] * len(self.tx_rows))
        for tx_id, (i, r, recipient_id, amount, sender_after) in zip(
            tx_ids, self.results, strict=True
        ):
            self.outcomes[i] = TransferResult(
                transaction_id=tx_id,
                sender_user_id=r.sender_user_id,
                recipient_user_id=recipient_id,
                recipient_username=r.recipient_username,
                amount_micro=amount,
                new_balance_micro=sender_after,
                created_at=self.now,
                replayed=False,
            )
        self.tx_rows, self.moves, self.results = [], [], []


# -- reading ----------------------------------------------------------------------------------------------
_BALANCE_OF = select(ACCOUNTS.c.balance_micro).where(ACCOUNTS.c.user_id == bindparam("user_id"))


def get_balance(session: Session, user_id: int) -> int:
    """The balance of ``user_id``'s wallet in micro-CPT (0 for a user without a wallet yet)."""
    conn = session.connection()
    balance = conn.execute(_BALANCE_OF, {"user_id": user_id}).scalar()
    if balance is not None:
        return int(balance)
    if conn.execute(_USER_EXISTS, {"user_id": user_id}).scalar() is None:
        raise NotFound(f"There is no user with id {user_id}.")
    return 0


# Entry ids are the cursor. Their column may be 32-bit (PostgreSQL INTEGER): a larger token cannot be
# one we issued, and sending it to the database would fail there rather than here.
_MAX_ENTRY_ID = 2**63 - 1 if isinstance(ENTRIES.c.id.type, BigInteger) else 2**31 - 1


def _parse_page_token(page_token: str | None) -> int | None:
    if not page_token:
        return None
    if not (page_token.isascii() and page_token.isdigit() and len(page_token) <= 19):
        raise InvalidArgument("The page token is not valid. Start again from the first page.")
    before = int(page_token)
    if not 0 < before <= _MAX_ENTRY_ID:
        raise InvalidArgument("The page token is not valid. Start again from the first page.")
    return before


_FIRST_PAGE = (
    select(
        ENTRIES.c.id,
        ENTRIES.c.transaction_id,
        ENTRIES.c.amount_micro,
        ENTRIES.c.balance_after_micro,
        ENTRIES.c.created_at,
        TRANSACTIONS.c.kind,
        TRANSACTIONS.c.memo,
    )
    .join(TRANSACTIONS, TRANSACTIONS.c.id == ENTRIES.c.transaction_id)
    .where(ENTRIES.c.account_id == bindparam("account_id"))
    .order_by(ENTRIES.c.id.desc())
    .limit(bindparam("limit"))
)
_NEXT_PAGE = _FIRST_PAGE.where(ENTRIES.c.id < bindparam("before"))
_OTHER_SIDES = (
    select(
        ENTRIES.c.transaction_id,
        ENTRIES.c.amount_micro,
        ACCOUNTS.c.name,
        ACCOUNTS.c.kind,
        USERS.c.username,
    )
    .join(ACCOUNTS, ACCOUNTS.c.id == ENTRIES.c.account_id)
    .outerjoin(USERS, USERS.c.id == ACCOUNTS.c.user_id)
    .where(
        ENTRIES.c.transaction_id.in_(bindparam("tx_ids", expanding=True)),
        ENTRIES.c.account_id != bindparam("account_id"),
    )
)


def list_transactions(
    session: Session,
    user_id: int,
    page_size: int = DEFAULT_PAGE_SIZE,
    page_token: str | None = None,
) -> tuple[list[StatementRow], str]:
    """A page of ``user_id``'s history, newest first, and the token of the next page ("" at the end).

    The counterparty of a line is the account on the other side that moved the most (a transfer has one
    other side; an escrow payout may also pay fees)."""
    if (
        isinstance(page_size, bool)
        or not isinstance(page_size, int)
        or not 1 <= page_size <= MAX_PAGE_SIZE
    ):
        raise InvalidArgument(f"Choose a page size from 1 to {MAX_PAGE_SIZE}.")
    before = _parse_page_token(page_token)
    conn = session.connection()
    wallet = wallet_id(session, user_id)
    if wallet is None:
        get_balance(session, user_id)  # raises NotFound for an unknown user
        return [], ""
    params = {"account_id": wallet, "limit": page_size + 1}
    if before is None:
        rows = conn.execute(_FIRST_PAGE, params).all()
    else:
        rows = conn.execute(_NEXT_PAGE, params | {"before": before}).all()
    more = len(rows) > page_size
    rows = rows[:page_size]
    counterparty: dict[int, tuple[int, str]] = {}
    if rows:
        for other in conn.execute(
            _OTHER_SIDES,
            {"tx_ids": sorted({int(r.transaction_id) for r in rows}), "account_id": wallet},
        ):
            name = other.username if other.kind == KIND_USER and other.username else other.name
            size = abs(int(other.amount_micro))
            tx = int(other.transaction_id)
            if tx not in counterparty or size > counterparty[tx][0]:
                counterparty[tx] = (size, str(name))
    page = [
        StatementRow(
            entry_id=int(r.id),
            transaction_id=int(r.transaction_id),
            kind=str(r.kind),
            amount_micro=int(r.amount_micro),
            counterparty=counterparty.get(int(r.transaction_id), (0, ""))[1],
            created_at=r.created_at,
            memo=str(r.memo),
            balance_after_micro=int(r.balance_after_micro),
        )
        for r in rows
    ]
    return page, (str(page[-1].entry_id) if more and page else "")


# -- audit ------------------------------------------------------------------------------------------------
def audit(session: Session) -> list[str]:
    """Check the books; returns one sentence per discrepancy (empty when everything adds up).

    Checks: every transaction has entries summing to zero; every cached balance equals the sum of its
    entries, and every entry's ``balance_after_micro`` equals the running sum; no account but the mint
    is negative; and everything minted (minus the mint's balance) equals the sum of all other balances."""
    conn = session.connection()
    problems: list[str] = []
    entry_sum = func.coalesce(func.sum(ENTRIES.c.amount_micro), 0)
    for tx_id, total, count in conn.execute(
        select(TRANSACTIONS.c.id, entry_sum, func.count(ENTRIES.c.id))
        .select_from(TRANSACTIONS.outerjoin(ENTRIES, ENTRIES.c.transaction_id == TRANSACTIONS.c.id))
        .group_by(TRANSACTIONS.c.id)
        .having((entry_sum != 0) | (func.count(ENTRIES.c.id) < 2))
        .order_by(TRANSACTIONS.c.id)
    ):
        if count < 2:
            problems.append(
                f"Transaction {tx_id} has {count} entries; every transaction needs at least two."
            )
        else:
            problems.append(
                f"Transaction {tx_id}'s entries sum to {total} micro-CPT instead of zero."
            )
    for name, cached, summed in conn.execute(
        select(ACCOUNTS.c.name, ACCOUNTS.c.balance_micro, entry_sum)
        .select_from(ACCOUNTS.outerjoin(ENTRIES, ENTRIES.c.account_id == ACCOUNTS.c.id))
        .group_by(ACCOUNTS.c.id, ACCOUNTS.c.name, ACCOUNTS.c.balance_micro)
        .having(ACCOUNTS.c.balance_micro != entry_sum)
        .order_by(ACCOUNTS.c.id)
    ):
        problems.append(
            f"Account {name} caches a balance of {cached} micro-CPT but its entries sum to {summed}."
        )
    running = (
        func.sum(ENTRIES.c.amount_micro)
        .over(partition_by=ENTRIES.c.account_id, order_by=ENTRIES.c.id)
        .label("running")
    )
    chain = select(
        ENTRIES.c.id, ENTRIES.c.account_id, ENTRIES.c.balance_after_micro, running
    ).subquery()
    for entry_id, acc, after, expected in conn.execute(
        select(chain.c.id, chain.c.account_id, chain.c.balance_after_micro, chain.c.running)
        .where(chain.c.balance_after_micro != chain.c.running)
        .order_by(chain.c.id)
        .limit(100)
    ):
        problems.append(
            f"Entry {entry_id} on account {acc} records a balance after of {after} micro-CPT, "
            f"but the entries up to it sum to {expected}."
        )
    for name, kind, balance in conn.execute(
        select(ACCOUNTS.c.name, ACCOUNTS.c.kind, ACCOUNTS.c.balance_micro)
        .where(
            ((ACCOUNTS.c.kind != KIND_MINT) & (ACCOUNTS.c.balance_micro < 0))
            | ((ACCOUNTS.c.kind == KIND_MINT) & (ACCOUNTS.c.balance_micro > 0))
        )
        .order_by(ACCOUNTS.c.id)
    ):
        if kind == KIND_MINT:
            problems.append(
                f"The mint account {name} has a positive balance of {balance} micro-CPT."
            )
        else:
            problems.append(f"Account {name} is negative: {balance} micro-CPT.")
    minted = conn.execute(
        select(func.coalesce(-func.sum(ACCOUNTS.c.balance_micro), literal(0))).where(
            ACCOUNTS.c.kind == KIND_MINT
        )
    ).scalar_one()
    held = conn.execute(
        select(func.coalesce(func.sum(ACCOUNTS.c.balance_micro), literal(0))).where(
            ACCOUNTS.c.kind != KIND_MINT
        )
    ).scalar_one()
    if int(minted) != int(held):
        problems.append(
            f"Total minted is {format_cpt(int(minted))} but all other accounts together hold {format_cpt(int(held))}."
        )
    return problems


def total_supply_micro(session: Session) -> int:
    """Everything ever minted: minus the mint's balance."""
    minted = (
        session.connection()
        .execute(
            select(func.coalesce(-func.sum(ACCOUNTS.c.balance_micro), literal(0))).where(
                ACCOUNTS.c.kind == KIND_MINT
            )
        )
        .scalar_one()
    )
    return int(minted)
