"""Groups of short writes on SQLite (``Database.write_grouped_async(..., short=True)``): their statements
run on the event loop and only the commit in a DB thread. These tests pin down what that must not change:
results are committed, a failed commit rolls the group back and runs its pieces alone, another process's
write lock is never waited for on the loop, and an executor that is shut down leaves nothing locked."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from coordinator.clock import utcnow
from coordinator.db import Database
from coordinator.errors import HiveMindError
from coordinator.ledger import service as ledger
from coordinator.ledger.usecases import Ledger
from tests.ledger.helpers import CPT, audit, balance, make_user


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'c.db'}")
    db.migrate()
    with db.write() as session:  # a parent/child pair whose foreign key is checked only at commit
        session.execute(text("CREATE TABLE parent (id INTEGER PRIMARY KEY)"))
        session.execute(
            text(
                "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL "
                "REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)"
            )
        )
    yield db
    db.dispose()


def _children(db: Database) -> list[int]:
    with db.read() as session:
        return [row[0] for row in session.execute(text("SELECT id FROM child ORDER BY id"))]


def test_short_groups_work_on_the_loop_and_commit_in_a_thread(sqlite_db: Database) -> None:
    alice = make_user(sqlite_db, "alice", grant_micro=100 * CPT)
    bob = make_user(sqlite_db, "bob")
    facade = Ledger(sqlite_db, utcnow)
    where: dict[str, set[int]] = {"work": set(), "commit": set()}

    def on_commit(_conn: object) -> None:
        where["commit"].add(threading.get_ident())

    event.listen(sqlite_db._write_engine, "commit", on_commit)
    original = facade._transfer_batch

    def spying_batch(
        session: Session, requests: list[ledger.TransferRequest]
    ) -> list[ledger.TransferResult | HiveMindError]:
        where["work"].add(threading.get_ident())
        return original(session, requests)

    facade._transfer_batch = spying_batch  # type: ignore[method-assign]

    async def run() -> tuple[int, list[ledger.TransferResult]]:
        with ThreadPoolExecutor(2) as executor:
            results = await asyncio.gather(
                *(
                    facade.transfer_async(executor, ledger.TransferRequest(alice, "bob", CPT))
                    for _ in range(20)
                )
            )
        return threading.get_ident(), list(results)

    loop_thread, results = asyncio.run(run())
    assert len(results) == 20
    assert where["work"] == {loop_thread}
    assert where["commit"] and loop_thread not in where["commit"]
    assert balance(sqlite_db, alice) == 80 * CPT and balance(sqlite_db, bob) == 20 * CPT
    assert audit(sqlite_db) == []


def test_a_failed_commit_runs_each_piece_alone(sqlite_db: Database) -> None:
    """The group's commit fails (a deferred foreign key): nothing of the group stays, and each piece
    runs again in its own transaction, so only the bad one fails."""

    def child(child_id: int, parent_id: int):  # type: ignore[no-untyped-def]
        def work(session: Session) -> int:
            session.execute(
                text("INSERT INTO child (id, parent_id) VALUES (:c, :p)"),
                {"c": child_id, "p": parent_id},
            )
            return child_id

        return work

    with sqlite_db.write() as session:
        session.execute(text("INSERT INTO parent (id) VALUES (1)"))

    async def run() -> list[int | BaseException]:
        with ThreadPoolExecutor(2) as executor:
            return await asyncio.gather(
                *(
                    sqlite_db.write_grouped_async(
                        child(i, 1 if i != 3 else 99), executor, refusals=HiveMindError, short=True
                    )
                    for i in range(1, 6)
                ),
                return_exceptions=True,
            )

    outcomes = asyncio.run(run())
    assert [o for o in outcomes if isinstance(o, int)] == [1, 2, 4, 5]
    assert "FOREIGN KEY" in str(outcomes[2])
    assert _children(sqlite_db) == [1, 2, 4, 5]


def test_another_process_writing_does_not_stall_the_loop(
    sqlite_db: Database, tmp_path: Path
) -> None:
    """Another process holds SQLite's write lock: the group is not started on the loop (which would
    wait there for the lock) but handed whole to a DB thread; the loop keeps running meanwhile, and
    the write lands once the lock is released."""
    with sqlite_db.write() as session:
        session.execute(text("INSERT INTO parent (id) VALUES (1)"))
    other = subprocess.Popen(  # a second process: holds the write lock for a second
        [
            sys.executable, "-c",
            "import sqlite3, sys, time\n"
            "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True)\n"
            "time.sleep(1.0); c.execute('ROLLBACK')",
            str(tmp_path / "c.db"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert other.stdout is not None and other.stdout.readline().strip() == "locked"

    def work(session: Session) -> str:
        session.execute(text("INSERT INTO child (id, parent_id) VALUES (7, 1)"))
        return "written"

    async def run() -> tuple[str, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        counting = asyncio.create_task(ticker())
        with ThreadPoolExecutor(2) as executor:
            outcome = await sqlite_db.write_grouped_async(
                work, executor, refusals=HiveMindError, short=True
            )
        counting.cancel()
        return outcome, ticks

    started = time.monotonic()
    try:
        outcome, ticks = asyncio.run(run())
    finally:
        other.wait(30)
    assert outcome == "written" and _children(sqlite_db) == [7]
    assert time.monotonic() - started >= 0.5  # it did wait for the other process
    assert ticks >= 20  # ... in a thread: the loop ran its other tasks meanwhile


def test_a_commit_that_cannot_be_handed_off_leaves_nothing_written_or_locked(
    sqlite_db: Database,
) -> None:
    """The group's statements ran on the loop, then its commit could not be handed to the commit thread
    (shut down): the caller gets the error, the transaction is rolled back and the write lock is free."""
    with sqlite_db.write() as session:
        session.execute(text("INSERT INTO parent (id) VALUES (1)"))
    sqlite_db._committer().shutdown()

    def work(session: Session) -> None:
        session.execute(text("INSERT INTO child (id, parent_id) VALUES (8, 1)"))

    async def run() -> None:
        with ThreadPoolExecutor(1) as executor:
            await asyncio.wait_for(
                sqlite_db.write_grouped_async(work, executor, refusals=HiveMindError, short=True),
                10,
            )

    with pytest.raises(RuntimeError, match="shutdown"):
        asyncio.run(run())
    assert _children(sqlite_db) == []
    assert not sqlite_db._write_lock.locked()  # type: ignore[union-attr]
    with sqlite_db.write() as session:
        session.execute(text("INSERT INTO child (id, parent_id) VALUES (9, 1)"))
    assert _children(sqlite_db) == [9]


def test_a_commit_never_waits_behind_writers_that_wait_for_it(sqlite_db: Database) -> None:
    """The caller's DB pool is busy with a job that is about to write (so it will wait for the write
    lock) when a short group takes the lock on the loop: its commit runs on its own thread, so both
    writes land instead of each waiting for the other."""
    with sqlite_db.write() as session:
        session.execute(text("INSERT INTO parent (id) VALUES (1)"))
    in_pool = threading.Event()

    def pool_job() -> None:
        in_pool.set()
        time.sleep(0.3)  # the short group takes the lock meanwhile
        with sqlite_db.write() as session:
            session.execute(text("INSERT INTO child (id, parent_id) VALUES (21, 1)"))

    def work(session: Session) -> None:
        session.execute(text("INSERT INTO child (id, parent_id) VALUES (22, 1)"))

    async def run() -> None:
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(1) as executor:
            blocking = loop.run_in_executor(executor, pool_job)
            await loop.run_in_executor(None, in_pool.wait)
            await asyncio.wait_for(
                sqlite_db.write_grouped_async(work, executor, refusals=HiveMindError, short=True),
                10,
            )
            await asyncio.wait_for(blocking, 10)

    asyncio.run(run())
    assert _children(sqlite_db) == [21, 22]


def test_a_failure_before_the_work_starts_answers_each_caller(sqlite_db: Database) -> None:
    """Opening the loop's transaction fails with something other than a lock (here: once): the group
    goes to a DB thread whole, its callers get their answers, and later groups are not left waiting."""
    with sqlite_db.write() as session:
        session.execute(text("INSERT INTO parent (id) VALUES (1)"))
    real = sqlite_db._begin_write_nowait
    failures = [OperationalError("BEGIN IMMEDIATE", {}, sqlite3.OperationalError("disk I/O error"))]

    def flaky() -> Session | None:
        if failures:
            raise failures.pop()
        return real()

    sqlite_db._begin_write_nowait = flaky  # type: ignore[method-assign]

    def child(child_id: int) -> Callable[[Session], int]:
        def work(session: Session) -> int:
            session.execute(
                text("INSERT INTO child (id, parent_id) VALUES (:c, 1)"), {"c": child_id}
            )
            return child_id

        return work

    async def run() -> list[int]:
        with ThreadPoolExecutor(2) as executor:
            first = await asyncio.wait_for(
                sqlite_db.write_grouped_async(
                    child(31), executor, refusals=HiveMindError, short=True
                ),
                10,
            )
            second = await asyncio.wait_for(
                sqlite_db.write_grouped_async(
                    child(32), executor, refusals=HiveMindError, short=True
                ),
                10,
            )
        return [first, second]

    assert asyncio.run(run()) == [31, 32]
    assert not failures and _children(sqlite_db) == [31, 32]


def test_a_lone_batched_piece_whose_batch_fails_runs_its_work(database: Database) -> None:
    """A group of one still runs as a batch; when the batch fails, the piece runs alone with its own
    ``work`` (as a larger group's pieces do) instead of failing."""
    alice = make_user(database, "alice", grant_micro=10 * CPT)
    make_user(database, "bob")

    calls = {"batch": 0}

    def broken_batch(session: Session, requests: list[int]) -> list[object]:
        calls["batch"] += 1
        raise RuntimeError("batch broke")

    def work(session: Session) -> ledger.TransferResult:
        return ledger.transfer(session, alice, "bob", CPT, now=utcnow())

    async def run() -> ledger.TransferResult:
        with ThreadPoolExecutor(1) as executor:
            return await database.write_grouped_async(
                work, executor, refusals=HiveMindError, batch=broken_batch, request=0, short=True
            )

    result = asyncio.run(run())
    assert calls["batch"] == 1  # a group of one ran its batch first
    assert result.amount_micro == CPT and balance(database, alice) == 9 * CPT
    assert audit(database) == []


def test_callers_a_group_answers_reply_before_the_next_group_works(sqlite_db: Database) -> None:
    """When a group's commit ends, the callers it answered resume before the next group's statements run
    on the loop. Launched at once, the next group made them wait for its work, and it held only the
    callers that had arrived during the commit (8 clients: 2.4 transfers per group against 3.3, and
    ~740 transfers/s against ~900 in bench/ledger_bench.py)."""
    order: list[str] = []
    gate = threading.Event()
    worked: list[asyncio.Event] = []

    def hold_commit(_conn: object) -> None:
        if not gate.wait(10):
            raise AssertionError("the second caller never queued")

    event.listen(sqlite_db._write_engine, "commit", hold_commit)

    def work(name: str, parent_id: int) -> Callable[[Session], None]:
        def run(session: Session) -> None:
            order.append(f"work {name}")
            worked[0].set()  # short work runs on the loop
            session.execute(text("INSERT INTO parent (id) VALUES (:id)"), {"id": parent_id})

        return run

    async def caller(name: str, parent_id: int, executor: ThreadPoolExecutor) -> None:
        await sqlite_db.write_grouped_async(
            work(name, parent_id), executor, refusals=HiveMindError, short=True
        )
        order.append(f"answered {name}")

    async def run() -> None:
        worked.append(asyncio.Event())
        with ThreadPoolExecutor(1) as executor:
            first = asyncio.ensure_future(caller("a", 1, executor))
            await asyncio.wait_for(
                worked[0].wait(), 10
            )  # a's group has worked, waits in its commit
            second = asyncio.ensure_future(caller("b", 2, executor))
            for _ in range(3):  # b joins the waiting list: a group is running
                await asyncio.sleep(0)
            gate.set()
            await asyncio.wait_for(asyncio.gather(first, second), 10)

    try:
        asyncio.run(run())
    finally:
        event.remove(sqlite_db._write_engine, "commit", hold_commit)
    assert order == ["work a", "answered a", "work b", "answered b"]
    with sqlite_db.read() as session:
        assert [r[0] for r in session.execute(text("SELECT id FROM parent ORDER BY id"))] == [1, 2]
