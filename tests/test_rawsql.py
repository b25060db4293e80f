"""RawStatement runs Core statements on the driver connection: the same SQL and value conversions as
SQLAlchemy, inside the session's transaction, on both databases; statements it cannot run are refused."""

from __future__ import annotations

import pytest
from sqlalchemy import bindparam, select

from coordinator.clock import utcnow
from coordinator.db import Database
from coordinator.ledger.tables import ACCOUNTS
from coordinator.rawsql import RawStatement
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


def test_statements_it_cannot_run_are_refused(database: Database) -> None:
    expanding = RawStatement(
        select(ACCOUNTS.c.id).where(ACCOUNTS.c.id.in_(bindparam("ids", expanding=True)))
    )
    with database.read() as session, pytest.raises(ValueError, match="expanding"):
        expanding.rows(session.connection(), {"ids": [1, 2]})
    with database.read() as session, pytest.raises(ValueError, match="'u' is not"):
        _BY_USER.rows(session.connection(), {"user": 1})
