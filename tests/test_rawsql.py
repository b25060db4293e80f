"""RawStatement runs Core statements on the driver connection: the same SQL and value conversions as
SQLAlchemy, inside the session's transaction, on both databases; statements it cannot run are refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Integer, bindparam, literal_column, select

from coordinator.clock import utcnow
from coordinator.db import Database
from coordinator.ledger.tables import ACCOUNTS, USERS
from coordinator.rawsql import RawStatement, padded
from tests.ledger.helpers import CPT, make_user

_BY_USER = RawStatement(
    select(ACCOUNTS.c.id, ACCOUNTS.c.balance_micro).where(ACCOUNTS.c.user_id == bindparam("u"))
)
_SET = RawStatement(
    ACCOUNTS.update()
    .where(ACCOUNTS.c.id == bindparam("acc"))
    .values(balance_micro=bindparam("bal"), created_at=bindparam("at"))
)


def test_reads_and_writes_inside_the_session_transaction(database: Database) -> None:
    alice = make_user(database, "alice", grant_micro=5 * CPT)
    with database.write() as session:
        conn = session.connection()
        [(acc, bal)] = _BY_USER.rows(conn, {"u": alice})
        assert bal == 5 * CPT
        assert _SET.rowcount(conn, {"acc": acc, "bal": 7, "at": utcnow()}) == 1
        assert _BY_USER.rows(conn, {"u": alice}) == [(acc, 7)]  # seen by the same transaction
        session.rollback()
    with database.read() as session:
        assert _BY_USER.rows(session.connection(), {"u": alice}) == [(acc, 5 * CPT)]
        assert _BY_USER.scalar(session.connection(), {"u": -1}) is None


def test_lists_and_column_types_read_as_sqlalchemy_reads_them(database: Database) -> None:
    """Expanding IN-lists of every length (an empty one included) and typed columns (a datetime) give
    what Connection.execute gives."""
    ids = [make_user(database, f"u{i}") for i in range(4)]
    listed = (
        select(ACCOUNTS.c.user_id, ACCOUNTS.c.created_at)
        .where(ACCOUNTS.c.user_id.in_(bindparam("ids", expanding=True)), ACCOUNTS.c.kind == "user")
        .order_by(ACCOUNTS.c.user_id)
    )
    raw = RawStatement(listed)
    with database.read() as session:
        conn = session.connection()
        for chosen in ([], ids[:1], ids[1:3], ids, ids[::-1]):
            got = raw.rows(conn, {"ids": chosen})
            assert got == [tuple(r) for r in conn.execute(listed, {"ids": chosen})]
            assert all(isinstance(r.created_at, datetime) for r in got)
        assert [r.user_id for r in raw.rows(conn, {"ids": ids})] == sorted(ids)


def test_padded_lists_select_the_same_rows_in_a_few_statement_forms(database: Database) -> None:
    """A list lengthened to a power of two (its last value repeated) selects what the list selects, and
    lists of 1 to 9 values then give the statement 5 forms (1, 2, 4, 8 and 16) instead of 9."""
    ids = [make_user(database, f"p{i}") for i in range(9)]
    assert padded([]) == []
    assert padded(ids[:3]) == [*ids[:3], ids[2]]
    assert padded(ids[:8]) == ids[:8]
    listed = select(ACCOUNTS.c.user_id).where(
        ACCOUNTS.c.user_id.in_(bindparam("ids", expanding=True)), ACCOUNTS.c.kind == "user"
    )
    raw = RawStatement(listed)
    with database.read() as session:
        conn = session.connection()
        for n in range(1, 10):
            got = sorted(r.user_id for r in raw.rows(conn, {"ids": padded(ids[:n])}))
            assert got == sorted(ids[:n])
    [compiled] = raw._compiled.values()
    assert sorted(compiled.expanded) == [(1,), (2,), (4,), (8,), (16,)]


@pytest.mark.parametrize(("extra", "long"), [(0, False), (60, False), (10, True)])
def test_percent_signs_repeated_parameters_and_many_parameters_bind_in_place(
    database: Database, extra: int, long: bool
) -> None:
    """A statement of more than 50 parameters or 4 KB runs on psycopg with PostgreSQL's numbered marks
    (psycopg would parse its named ones at every call): a literal ``%`` stays one, a parameter used twice
    gets its value in both places, and a name with a dash is found, as with a smaller statement's marks."""
    ids = [make_user(database, name) for name in ("pa", "pb", "qc", "pd")]
    padding = [bindparam(f"pad-{k}", type_=Integer) for k in range(extra)]
    filler = literal_column("'" + "x" * (4200 if long else 10) + "'")
    listed = (
        select(USERS.c.username, literal_column("'100%'").label("share"))
        .where(
            USERS.c.username.like(literal_column("'p%'")),
            USERS.c.username != filler,
            USERS.c.id >= bindparam("low", type_=Integer),
            USERS.c.id.notin_(padding) if padding else USERS.c.id > 0,
            USERS.c.id != bindparam("skip", type_=Integer),
            USERS.c.id <= bindparam("low", type_=Integer) + 2,
        )
        .order_by(USERS.c.username)
    )
    raw = RawStatement(listed)
    pads = {f"pad-{k}": -k for k in range(extra)}
    with database.read() as session:
        conn = session.connection()
        for low, skip, expected in ((ids[0], ids[1], ["pa"]), (ids[1], 0, ["pb", "pd"])):
            params = {"low": low, "skip": skip, **pads}
            rows = raw.rows(conn, params)
            assert [r.username for r in rows] == expected
            assert all(r.share == "100%" for r in rows)
            assert rows == [tuple(r) for r in conn.execute(listed, params)]
        numbered = any(c.numbered for c in raw._compiled.values())
        assert numbered == (conn.dialect.name == "postgresql" and (extra > 50 or long))


def test_executemany_converts_each_rows_values(database: Database) -> None:
    """Rows sharing one value object (a batch's timestamp) and rows with their own values are all
    stored as SQLAlchemy would store them."""
    ids = [make_user(database, f"m{i}") for i in range(4)]
    shared = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    own = datetime(2027, 6, 7, 8, 9, 10, tzinfo=UTC)
    when = [shared, own, shared, shared]
    read = select(ACCOUNTS.c.balance_micro, ACCOUNTS.c.created_at).where(
        ACCOUNTS.c.user_id == bindparam("u")
    )
    with database.write() as session:
        conn = session.connection()
        accounts = [_BY_USER.rows(conn, {"u": u})[0][0] for u in ids]
        _SET.executemany(
            conn,
            [
                {"acc": a, "bal": i, "at": at}
                for i, (a, at) in enumerate(zip(accounts, when, strict=True))
            ],
        )
    with database.read() as session:
        got = [tuple(session.connection().execute(read, {"u": u}).one()) for u in ids]
    assert [(bal, at.replace(tzinfo=UTC) if at.tzinfo is None else at) for bal, at in got] == [
        (i, at) for i, at in enumerate(when)
    ]


def test_statements_it_cannot_run_are_refused(database: Database) -> None:
    with database.read() as session, pytest.raises(ValueError, match="'u' is not"):
        _BY_USER.rows(session.connection(), {"user": 1})
    with database.write() as session, pytest.raises(ValueError, match="executemany"):
        RawStatement(
            ACCOUNTS.update()
            .where(ACCOUNTS.c.id.in_(bindparam("ids", expanding=True)))
            .values(balance_micro=0)
        ).executemany(session.connection(), [{"ids": [1]}])


def test_defaults_it_would_skip_and_rows_of_other_shapes_are_refused(database: Database) -> None:
    """SQLAlchemy computes column defaults at execution; a RawStatement cannot, so it refuses a statement
    that leaves such a column out instead of writing NULL. An executemany's rows must share their keys."""
    from coordinator.ledger.tables import TRANSACTIONS

    with database.write() as session:
        conn = session.connection()
        with pytest.raises(ValueError, match="needs every parameter"):
            RawStatement(TRANSACTIONS.insert()).rowcount(
                conn,
                {"kind": "grant", "created_at": utcnow()},  # memo has a default
            )
        with pytest.raises(ValueError, match="same keys"):
            _SET.executemany(
                conn,
                [
                    {"acc": 1, "bal": 1, "at": utcnow()},
                    {"acc": 1, "bal": 1, "at": utcnow(), "extra": 2},
                ],
            )


def test_returning_many_answers_each_row_in_order(database: Database) -> None:
    """One value per row, in the rows' order, and None where ON CONFLICT DO NOTHING skipped the row (a key
    already used); on PostgreSQL the rows go out as one pipeline."""
    from coordinator.ledger.service import _INSERT_TX, _Idempotency, _transaction_row
    from coordinator.ledger.tables import TRANSACTIONS

    now = utcnow()

    def row(key: str | None) -> dict[str, object]:
        idem = None if key is None else _Idempotency("test", key, f"fp-{key}")
        return _transaction_row("transfer", None, idem, f"memo {key}", now)

    keys = ["a", None, "b", "a", "c", None]  # the second "a" conflicts with the first
    with database.write() as session:
        conn = session.connection()
        insert = _INSERT_TX[conn.dialect.name]
        ids = insert.returning_many(conn, [row(k) for k in keys])
        assert ids[3] is None and all(isinstance(i, int) for n, i in enumerate(ids) if n != 3)
        memos = dict(conn.execute(select(TRANSACTIONS.c.id, TRANSACTIONS.c.memo)).all())
        assert [memos.get(i) for i in ids] == [
            "memo a", "memo None", "memo b", None, "memo c", "memo None"
        ]  # fmt: skip
        assert len(set(ids) - {None}) == 5
        assert insert.returning_many(conn, []) == []
