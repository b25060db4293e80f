"""Database engines and sessions: a SQLite file by default, PostgreSQL by URL.

Write transactions go through :meth:`Database.write`. On SQLite that takes a process-wide lock and opens the
transaction with ``BEGIN IMMEDIATE`` (SQLite allows one writer; taking the write lock up front avoids the
deadlock-prone read-to-write upgrade, and the in-process lock avoids SQLite's sleeping busy handler). On
PostgreSQL writes run concurrently and domain code serializes hot rows with ``SELECT ... FOR UPDATE``.

Small, frequent writes (transfers) go through :meth:`Database.write_grouped`: concurrent callers share one
transaction and one commit (group commit), which is what a disk sync per commit costs the most. Callers on
the event loop use :meth:`Database.write_grouped_async`, which groups them on the loop and hands each group
to a DB thread at once (one thread hand-off per group), optionally as one ``batch`` call.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlmodel import Session

logger = logging.getLogger(__name__)
T = TypeVar("T")
Prelock = Callable[[Session, list[Any]], None]
Batch = Callable[[Session, list[Any]], list[Any]]

GROUP_COMMIT_MAX = 64
"""Most writes one grouped transaction carries."""

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def _sqlite_engine(url: str, *, synchronous: str, immediate: bool) -> Engine:
    parsed = make_url(url)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=16, max_overflow=16
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)

    return engine


class Database:
    """Owns the engines; hands out sessions. Built once in the composition root, passed down."""

    def __init__(self, url: str, *, sqlite_synchronous: str = "FULL") -> None:
        self.url = url
        self.is_sqlite = make_url(url).get_backend_name() == "sqlite"
        if self.is_sqlite:
            self.engine = _sqlite_engine(url, synchronous=sqlite_synchronous, immediate=False)
            self._write_engine = _sqlite_engine(url, synchronous=sqlite_synchronous, immediate=True)
        else:
            self.engine = create_engine(url, pool_size=16, max_overflow=16, pool_pre_ping=True)
            self._write_engine = self.engine
        self._write_lock = threading.Lock() if self.is_sqlite else None
        self._group = _GroupCommit(self)
        self._loop_groups: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, _LoopGroupCommit
        ] = weakref.WeakKeyDictionary()

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for queries. Commits nothing."""
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One write transaction: committed when the block ends normally, rolled back on any exception."""
        lock = self._write_lock
        if lock is not None:
            lock.acquire()
        try:
            with Session(self._write_engine, expire_on_commit=False) as session:
                try:
                    yield session
                    session.commit()
                except BaseException:
                    session.rollback()
                    raise
        finally:
            if lock is not None:
                lock.release()

    def write_grouped(
        self,
        work: Callable[[Session], T],
        *,
        refusals: type[Exception],
        prelock: Prelock | None = None,
        lock_key: Any = None,
    ) -> T:
        """Run ``work(session)`` in a write transaction shared with other callers doing the same now.

        ``work`` must raise ``refusals`` (a domain refusal) only before it writes anything: a refused
        piece of work is answered with its error while the others in the group still commit. Any other
        exception rolls the group back, and each piece is then run again in its own transaction, so one
        failure never fails its neighbours. Blocking; thread-safe.

        ``prelock(session, lock_keys)`` runs first in a group, with the ``lock_key`` of every piece that
        named this prelock: it must lock every row those pieces will lock, in one ordered statement.
        Without it a group taking its row locks piece by piece could deadlock on PostgreSQL against a
        transaction that locks the same rows in ascending order."""
        return self._group.run(work, refusals, prelock, lock_key)

    async def write_grouped_async(
        self,
        work: Callable[[Session], T],
        executor: Executor,
        *,
        refusals: type[Exception],
        prelock: Prelock | None = None,
        lock_key: Any = None,
        batch: Batch | None = None,
        request: Any = None,
    ) -> T:
        """:meth:`write_grouped` for a caller on the event loop, with the same contract: concurrent
        callers on this loop share one transaction, run in ``executor`` with one thread hand-off per
        group rather than one per caller. A caller cancelled before its group starts is left out of it;
        one cancelled later still has its work committed (or refused) with the group.

        With ``batch``, the pieces of a group that name the same ``batch`` run as one call,
        ``batch(session, [request, ...])``, which returns each piece's outcome in order: its result, or
        its refusal (an instance of ``refusals``) - returned, not raised, and written nothing. A batch
        locks what it needs in one ordered statement, as a prelock does. Alone, or when a group fails and
        its pieces run again one by one, a piece runs ``work`` as usual."""
        loop = asyncio.get_running_loop()
        groups = self._loop_groups.get(loop)
        if groups is None:
            groups = self._loop_groups[loop] = _LoopGroupCommit(self, loop)
        return await groups.run(
            _Grouped(work, refusals, prelock, lock_key, batch, request), executor
        )

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (run at every start)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.attributes["connection_url"] = self.url
        with self._write_engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        logger.info("database schema is current", extra={"db": self.safe_url})

    @property
    def safe_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    def dispose(self) -> None:
        self.engine.dispose()
        if self._write_engine is not self.engine:
            self._write_engine.dispose()


@dataclass
class _Grouped(Generic[T]):
    work: Callable[[Session], T]
    refusals: type[Exception]
    prelock: Prelock | None = None
    lock_key: Any = None
    batch: Batch | None = None
    request: Any = None
    done: bool = False
    settled: bool = False
    """Its outcome is final: committed, refused, or failed alone."""
    result: Any = None
    error: BaseException | None = None


class _GroupCommit:
    """Leader/follower group commit: the first caller to find no group running becomes the leader and
    runs every waiting caller's work in one transaction; the others sleep until theirs is done. A caller
    arriving while a group runs joins the next one, so groups grow with load and cost nothing alone."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cond = threading.Condition()
        self._pending: list[_Grouped[Any]] = []
        self._leading = False

    def run(
        self,
        work: Callable[[Session], T],
        refusals: type[Exception],
        prelock: Prelock | None,
        lock_key: Any,
    ) -> T:
        item: _Grouped[T] = _Grouped(work, refusals, prelock, lock_key)
        with self._cond:
            self._pending.append(item)
            while not item.done and self._leading:
                self._cond.wait()
            if item.done:
                return self._outcome(item)
            self._leading = True
        try:
            while not item.done:
                with self._cond:
                    group = self._pending[:GROUP_COMMIT_MAX]
                    del self._pending[:GROUP_COMMIT_MAX]
                try:
                    self._run_group(group)
                finally:  # even when interrupted, nobody may wait for a group that will never run
                    with self._cond:
                        for grouped in group:
                            if not grouped.settled:
                                grouped.error = RuntimeError("the grouped write was interrupted")
                            grouped.done = True
                        self._cond.notify_all()
        finally:
            with self._cond:
                self._leading = False
                self._cond.notify_all()
        return self._outcome(item)

    @staticmethod
    def _outcome(item: _Grouped[T]) -> T:
        if item.error is not None:
            raise item.error
        return item.result  # type: ignore[no-any-return]

    def _run_group(self, group: list[_Grouped[Any]]) -> None:
        _run_group(self._db, group)


class _LoopGroupCommit:
    """Group commit for callers on one event loop: while a group runs in the executor, new callers wait
    in a list; when it ends, the next group takes everyone waiting. No thread waits for another."""

    def __init__(self, db: Database, loop: asyncio.AbstractEventLoop) -> None:
        self._db = db
        self._loop = loop
        self._pending: list[tuple[_Grouped[Any], asyncio.Future[Any]]] = []
        self._running = False

    async def run(self, item: _Grouped[T], executor: Executor) -> T:
        future: asyncio.Future[T] = self._loop.create_future()
        self._pending.append((item, future))
        if not self._running:
            self._launch(executor)
        return await future

    def _launch(self, executor: Executor) -> None:
        group: list[tuple[_Grouped[Any], asyncio.Future[Any]]] = []
        while self._pending and len(group) < GROUP_COMMIT_MAX:
            entry = self._pending.pop(0)
            if not entry[1].cancelled():
                group.append(entry)
        if not group:
            return
        self._running = True
        try:
            running = self._loop.run_in_executor(
                executor, _run_group, self._db, [g for g, _ in group]
            )
        except BaseException as exc:  # the executor is shut down: nobody may wait for this group
            self._running = False
            waiting, self._pending = [*group, *self._pending], []
            for _, future in waiting:
                if not future.done():
                    future.set_exception(exc)
            return
        running.add_done_callback(lambda done: self._finish(group, done, executor))

    def _finish(
        self,
        group: list[tuple[_Grouped[Any], asyncio.Future[Any]]],
        done: asyncio.Future[None],
        executor: Executor,
    ) -> None:
        self._running = False
        failure = done.exception() if not done.cancelled() else asyncio.CancelledError()
        for item, future in group:
            if future.done():
                continue
            if failure is not None and not item.settled:
                future.set_exception(RuntimeError("the grouped write was interrupted"))
            elif item.error is not None:
                future.set_exception(item.error)
            else:
                future.set_result(item.result)
        if self._pending:
            self._launch(executor)


def _run_group(db: Database, group: list[_Grouped[Any]]) -> None:
    """Run ``group`` in one write transaction (see :meth:`Database.write_grouped`), settling each piece:
    its result, its refusal, or - when the shared transaction fails - its outcome when run alone."""
    try:
        with db.write() as session:
            if len(group) > 1:
                keys: dict[Prelock, list[Any]] = {}
                for grouped in group:
                    if grouped.prelock is not None:
                        keys.setdefault(grouped.prelock, []).append(grouped.lock_key)
                for prelock, lock_keys in keys.items():
                    prelock(session, lock_keys)
            batches: dict[Batch, list[_Grouped[Any]]] = {}
            for grouped in group:
                if grouped.batch is not None and len(group) > 1:
                    batches.setdefault(grouped.batch, []).append(grouped)
                    continue
                try:
                    grouped.result = grouped.work(session)
                except grouped.refusals as exc:
                    grouped.error = exc
            for batch, pieces in batches.items():
                outcomes = batch(session, [grouped.request for grouped in pieces])
                if len(outcomes) != len(pieces):
                    raise RuntimeError("a batched write answered for the wrong number of pieces")
                for grouped, outcome in zip(pieces, outcomes, strict=True):
                    if isinstance(outcome, grouped.refusals):
                        grouped.error = outcome
                    else:
                        grouped.result = outcome
    except Exception as exc:
        if len(group) == 1:
            group[0].error = exc
            group[0].settled = True
            return
        logger.info("grouped write failed (%r); running its %d parts alone", exc, len(group))
    else:
        for grouped in group:
            grouped.settled = True
        return
    for grouped in group:
        grouped.result, grouped.error = None, None
        try:
            with db.write() as session:
                grouped.result = grouped.work(session)
        except Exception as exc:
            grouped.error = exc
        grouped.settled = True
