"""The schema the migrations build is the one the models describe, and the dispatcher's per-poll and
per-report statements find their rows by key on SQLite (whose planner has no statistics to go by)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from coordinator.db import Database
from coordinator.models import metadata
from coordinator.rawsql import RawStatement, _new_cursor
from coordinator.scheduling import service as dispatch


def test_the_migrations_build_the_models_schema(database: Database) -> None:
    with database.engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
    assert differences == []


STATE_INDEXES = ("ix_tasks_state", "ix_jobs_state")
"""Indexes on a state column alone: looking a statement's rows up through one walks every row in it."""


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("_TASKS_RUNNING", {"ids": ["t1", "t2", "t3", "t4"]}),
        ("_JOBS_RUNNING", {"ids": ["j1", "j2"]}),
        ("_TASKS_RAISED", {"ids": ["t1", "t2"]}),
        ("_LOCK_TASKS", {"ids": ["t1", "t2", "t3", "t4"]}),
        ("_LOCK_LEASES", {"ids": ["l1", "l2"]}),
        ("_LOCK_NODES", {"ids": ["n1", "n2"]}),
        ("_REPORTED_OF", {"tasks": ["t1"], "state": "reported", "ids": ["l1"]}),
    ],
)
def test_dispatch_statements_look_rows_up_by_key(
    tmp_path: Path, name: str, params: dict[str, object]
) -> None:
    """A plan through a state index (or a table scan) walks every queued task or lease: with 10,000
    queued tasks that made each poll's update cost 0.8 ms."""
    db = Database(f"sqlite:///{tmp_path}/plans-{uuid.uuid4().hex}.db")
    db.migrate()
    try:
        statement: RawStatement = getattr(dispatch, name)
        with db.write() as session:
            plan = _plan(session.connection(), statement, params)
        assert plan, name
        for step in plan:
            assert not step.startswith("SCAN"), (name, plan)
            assert not any(index in step for index in STATE_INDEXES), (name, plan)
    finally:
        db.dispose()


def _plan(
    conn: Connection,
    statement: RawStatement,
    params: dict[str, object],
    *,
    avoid_scans: bool = False,
) -> list[str]:
    """The plan of ``statement`` with ``params``, one step per line: SQLite's EXPLAIN QUERY PLAN details,
    or PostgreSQL's EXPLAIN lines. ``avoid_scans``: PostgreSQL plans with table scans avoided wherever
    there is another way (whether an index path exists at all, whatever the table's size)."""
    prepared = statement._prepare(conn, params)
    assert prepared is not None
    compiled, sql, values = prepared
    cursor = _new_cursor(
        conn, compiled
    )  # the statement's own kind of cursor, for its kind of marks
    try:
        if conn.dialect.name == "sqlite":
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}", values)
            return [str(row[-1]) for row in cursor.fetchall()]
        if avoid_scans:
            cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", values)
        return [str(row[0]) for row in cursor.fetchall()]
    finally:
        cursor.close()


def test_idempotency_lookups_search_the_index_by_scope_and_key(database: Database) -> None:
    """On both databases, with statistics that predate the table's growth (PostgreSQL's first
    autoanalyze comes a minute in), each (scope, key) is found by an index search on both columns - not
    by scope alone with every transaction of that scope filtered, which is what the lookup as
    ``scope IN (...) AND key IN (...)`` got on PostgreSQL: a hot sender's whole history per batch."""
    from coordinator.clock import utcnow
    from coordinator.ledger import service as ledger
    from tests.ledger.helpers import CPT, make_user

    alice = make_user(database, "alice", grant_micro=10**6 * CPT)
    make_user(database, "bob")
    for n in range(40):  # 400 keyed transfers out of one account: one scope
        with database.write() as session:
            requests = [ledger.TransferRequest(alice, "bob", 1, f"k{n}-{i}") for i in range(10)]
            ledger.transfer_many(session, requests, now=utcnow())
    pairs = [(f"user:{alice}", "k3-1"), (f"user:{alice}", "absent"), (f"user:{alice}", "k7-9")]
    with database.write() as session:
        conn = session.connection()
        assert ledger._used_pairs(conn, pairs) == {pairs[0], pairs[2]}
        params = ledger._numbered("c", [c for c, _ in pairs]) | ledger._numbered(
            "k", [k for _, k in pairs]
        )
        plan = _plan(conn, ledger._key_pairs(len(pairs)), params)
        if conn.dialect.name == "sqlite":
            searches = [p for p in plan if p.startswith("SEARCH")]
            assert len(searches) == len(pairs), plan
            assert all("idempotency_scope=? AND idempotency_key=?" in p for p in searches), plan
            assert not any(p.startswith("SCAN ledger_transactions") for p in plan), plan
        else:
            conditions = [p.strip() for p in plan if "Index Cond" in p]
            assert len(conditions) == len(pairs), plan
            assert all("idempotency_scope" in c and "idempotency_key" in c for c in conditions), (
                plan
            )
            assert not any("Filter" in p for p in plan), plan


def test_a_transfer_batch_locks_its_wallets_through_indexes(database: Database) -> None:
    """The batch's wallet lock finds the senders by id and the recipients by username through an index
    each, on both databases. PostgreSQL is told to avoid table scans wherever it has another way, so a
    statement shape that leaves it none fails here at any table size: the recipients as a subquery ORed
    on the accounts side was a hashed subplan filtering every account (a table scan, or with scans
    off, a walk of the whole index): 1.3 ms per batch at 1,000 accounts, and growing with them."""
    from coordinator.ledger import service as ledger
    from tests.ledger.helpers import CPT, make_user

    alice = make_user(database, "alice", grant_micro=10 * CPT)
    ids = {name: make_user(database, name) for name in (f"bob{n}" for n in range(30))}
    statement = ledger._lock_batch_wallets(1, 3)
    params = ledger._numbered("s", [alice]) | ledger._numbered("r", ["bob1", "bob7", "nobody"])
    with database.write() as session:
        conn = session.connection()
        rows = statement.rows(conn, params)
        plan = _plan(conn, statement, params, avoid_scans=True)
    if database.is_sqlite:
        assert not any(p.startswith("SCAN") for p in plan), plan
    else:
        assert not any("Seq Scan" in p for p in plan), plan
        assert not any("Filter" in p for p in plan), plan  # a walk of a whole index, filtered
    by_user = {int(user_id): str(username) for _acc, user_id, _balance, username in rows}
    assert by_user == {alice: "alice", ids["bob1"]: "bob1", ids["bob7"]: "bob7"}
    account_ids = [int(acc) for acc, *_ in rows]
    assert account_ids == sorted(account_ids)  # locked in one order, as every prelock does
