"""Database engines and sessions: a SQLite file by default, PostgreSQL by URL.

Write transactions go through :meth:`Database.write`. On SQLite that takes a process-wide lock and opens the
transaction with ``BEGIN IMMEDIATE`` (SQLite allows one writer; taking the write lock up front avoids the
deadlock-prone read-to-write upgrade, and the in-process lock avoids SQLite's sleeping busy handler). On
PostgreSQL writes run concurrently and domain code serializes hot rows with ``SELECT ... FOR UPDATE``.

Small, frequent writes (transfers) go through :meth:`Database.write_grouped`: concurrent callers share one
transaction and one commit (group commit), which is what a disk sync per commit costs the most. Callers on
the event loop use :meth:`Database.write_grouped_async`, which groups them on the loop and hands each group
to a DB thread at once (one thread hand-off per group), optionally as one ``batch`` call. On SQLite a group
of ``short`` pieces runs its statements on the loop itself and hands only its commit to the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

logger = logging.getLogger(__name__)
T = TypeVar("T")
Prelock = Callable[[Session, list[Any]], None]
Batch = Callable[[Session, list[Any]], list[Any]]

GROUP_COMMIT_MAX = 64
"""Most writes one grouped transaction carries."""

SQLITE_BUSY_TIMEOUT_MS = 30_000
"""How long a SQLite statement waits for another process's lock before failing."""

_BEGIN_NOWAIT: contextvars.ContextVar[bool] = contextvars.ContextVar("begin_nowait", default=False)
"""Set while :meth:`Database._begin_write_nowait` opens its transaction: BEGIN then fails at once
instead of waiting for another process's write lock."""

_SQLITE_LOCKED = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def _sqlite_engine(url: str, *, synchronous: str, immediate: bool) -> Engine:
    parsed = make_url(url)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        pool_size=16,
        max_overflow=16,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.close()

    begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Straight to the driver: SQLAlchemy's own do_begin is a no-op on SQLite.
        raw = conn.connection.driver_connection
        if not _BEGIN_NOWAIT.get():
            raw.execute(begin)
            return
        raw.execute("PRAGMA busy_timeout=0")
        try:
            raw.execute(begin)
        finally:
            raw.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")

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
            # LIFO: the loop's groups write one at a time, so they keep reusing the connection that was
            # just returned, whose server backend is warm and on which psycopg has prepared the ledger's
            # statements (it prepares one after 5 uses on a connection); FIFO spread them over all 16.
            self.engine = create_engine(
                url, pool_size=16, max_overflow=16, pool_pre_ping=True, pool_use_lifo=True
            )
            self._write_engine = self.engine
        self._write_lock = threading.Lock() if self.is_sqlite else None
        self._commit_thread: ThreadPoolExecutor | None = None
        self._loop_writer: Connection | None = None
        """SQLite: the connection the event loop's groups write on (only while holding the write lock)."""
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

    def _begin_write_nowait(self) -> Session | None:
        """SQLite only: a session holding the write lock and an open write transaction, or None when
        that would mean waiting (another writer in this process or in another one). End it with
        :meth:`_end_write`."""
        lock = self._write_lock
        if lock is None or not lock.acquire(blocking=False):
            return None
        token = _BEGIN_NOWAIT.set(True)
        try:
            if self._loop_writer is None:  # kept open: a check-out costs more than a group's work
                self._loop_writer = self._write_engine.connect()
            session = Session(bind=self._loop_writer, expire_on_commit=False)
            session.connection()  # BEGIN IMMEDIATE, refused at once if another process is writing
        except (OperationalError, sqlite3.OperationalError) as exc:
            self._drop_loop_writer()
            lock.release()
            code = getattr(getattr(exc, "orig", exc), "sqlite_errorcode", None)
            if code is not None and code & 0xFF in _SQLITE_LOCKED:  # extended codes included
                return None
            raise
        except BaseException:
            self._drop_loop_writer()
            lock.release()
            raise
        finally:
            _BEGIN_NOWAIT.reset(token)
        return session

    def _drop_loop_writer(self) -> None:
        conn, self._loop_writer = self._loop_writer, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _end_write(self, session: Session, *, commit: bool) -> None:
        """Commit (or roll back) and close a session from :meth:`_begin_write_nowait`, releasing the
        write lock whatever happens. A failed commit is rolled back and raised."""
        try:
            try:
                if commit:
                    session.commit()
                else:
                    session.rollback()
            except BaseException:
                with contextlib.suppress(Exception):
                    session.rollback()
                # Load-bearing: after a failed COMMIT, SQLAlchemy's rollback() sends nothing while SQLite
                # may keep the transaction open; closing the connection returns it to the pool, whose
                # reset-on-return rolls back for real, before the write lock is released below.
                self._drop_loop_writer()
                raise
            finally:
                session.close()
        finally:
            assert self._write_lock is not None
            self._write_lock.release()

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
        short: bool = False,
    ) -> T:
        """:meth:`write_grouped` for a caller on the event loop, with the same contract: concurrent
        callers on this loop share one transaction, run in ``executor`` with one thread hand-off per
        group rather than one per caller. A caller cancelled before its group starts is left out of it;
        one cancelled later still has its work committed (or refused) with the group.

        With ``batch``, the pieces of a group that name the same ``batch`` run as one call,
        ``batch(session, [request, ...])``, which returns each piece's outcome in order: its result, or
        its refusal (an instance of ``refusals``) - returned, not raised, and written nothing. A batch
        locks what it needs in one ordered statement, as a prelock does (a group of one runs its batch
        too). When a group fails, its pieces run again one by one, each with its ``work``.

        ``short``: the work is a few statements of microseconds each; a group of such pieces may run its
        statements on the loop and only its commit in the executor (see :meth:`_LoopGroupCommit._start`)."""
        loop = asyncio.get_running_loop()
        groups = self._loop_groups.get(loop)
        if groups is None:
            groups = self._loop_groups[loop] = _LoopGroupCommit(self, loop)
        return await groups.run(
            _Grouped(work, refusals, prelock, lock_key, batch, request, short), executor
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

    def _committer(self) -> Executor:
        """The one thread that commits the loop's open groups. Its own: in the shared DB pool the commit
        could queue behind jobs waiting for the write lock it holds, and nothing would ever run it."""
        if self._commit_thread is None:
            self._commit_thread = ThreadPoolExecutor(1, thread_name_prefix="db-commit")
        return self._commit_thread

    def dispose(self) -> None:
        if self._commit_thread is not None:
            self._commit_thread.shutdown(wait=True)
        self._drop_loop_writer()
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
    short: bool = False
    """Its statements take microseconds (see :meth:`_LoopGroupCommit._start`)."""
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
    in a list; when it ends, the next group takes everyone waiting, one loop turn later, once the callers
    it answered have resumed (and sent their replies). No thread waits for another."""

    def __init__(self, db: Database, loop: asyncio.AbstractEventLoop) -> None:
        self._db = db
        self._loop = loop
        self._pending: list[tuple[_Grouped[Any], asyncio.Future[Any]]] = []
        self._running = False

    async def run(self, item: _Grouped[T], executor: Executor) -> T:
        future: asyncio.Future[T] = self._loop.create_future()
        self._pending.append((item, future))
        if not self._running:  # start a group once the loop has taken in what has already arrived
            self._running = True
            self._loop.call_soon(self._launch, executor)
        return await future

    def _launch(self, executor: Executor) -> None:
        group: list[tuple[_Grouped[Any], asyncio.Future[Any]]] = []
        while self._pending and len(group) < GROUP_COMMIT_MAX:
            entry = self._pending.pop(0)
            if not entry[1].cancelled():
                group.append(entry)
        if not group:
            self._running = False
            return
        self._running = True
        job: Callable[[], None] | None = None
        try:
            job = self._start(group)
            target = self._db._committer() if isinstance(job, _OpenGroup) else executor
            running = self._loop.run_in_executor(target, job)
        except BaseException as exc:  # e.g. a shut-down executor: nobody may wait for this group
            if isinstance(job, _OpenGroup):
                with contextlib.suppress(Exception):
                    job.abandon()
            self._running = False
            waiting, self._pending = [*group, *self._pending], []
            for _, future in waiting:
                if not future.done():
                    future.set_exception(exc)
            return
        running.add_done_callback(lambda done: self._finish(group, done, executor, job))

    def _start(self, group: list[tuple[_Grouped[Any], asyncio.Future[Any]]]) -> Callable[[], None]:
        """What the DB thread has to do for ``group``.

        A group of ``short`` pieces on SQLite, when the write lock is free, does its work here on the loop
        and leaves only the commit, which waits for the disk, to the thread: such statements take
        microseconds, and in a DB thread each of them waited for the loop to let go of the GIL (a
        transfer group took 3 ms of wall time for 0.5 ms of work). Any other group - PostgreSQL, a piece
        with longer statements (whose C-level work overlaps the loop's in a thread), or a write lock held
        by another writer (never waited for on the loop) - goes to the thread whole."""
        items = [g for g, _ in group]
        db = self._db
        whole = functools.partial(_run_group, db, items)
        if not all(item.short for item in items):
            return whole
        try:
            session = db._begin_write_nowait()
        except Exception:  # not a lock: let the thread meet it again and answer each piece with it
            return whole
        if session is None:
            return whole
        try:
            _work_group(session, items)
        except BaseException as exc:
            with contextlib.suppress(Exception):
                db._end_write(session, commit=False)
            if not isinstance(exc, Exception):
                raise
            return functools.partial(_group_failed, db, items, exc)
        return _OpenGroup(db, session, items)

    def _finish(
        self,
        group: list[tuple[_Grouped[Any], asyncio.Future[Any]]],
        done: asyncio.Future[None],
        executor: Executor,
        job: Callable[[], None] | None = None,
    ) -> None:
        self._running = False
        if done.cancelled() and isinstance(job, _OpenGroup) and not job.started:
            with contextlib.suppress(Exception):
                job.abandon()  # it will never run: roll back and free the write lock
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
        if self._pending:  # next loop turn: the callers just answered send their replies first
            self._running = True
            self._loop.call_soon(self._launch, executor)


class _OpenGroup:
    """A group whose work is done in an open write transaction (see :meth:`_LoopGroupCommit._start`):
    calling it commits and settles the group in the DB thread; a failed commit (rolled back) hands the
    pieces to their own transactions, as a failed group always does."""

    def __init__(self, db: Database, session: Session, group: list[_Grouped[Any]]) -> None:
        self.db, self.session, self.group = db, session, group
        self.started = False

    def __call__(self) -> None:
        self.started = True
        try:
            self.db._end_write(self.session, commit=True)
        except Exception as exc:
            _group_failed(self.db, self.group, exc)
        else:
            _settle(self.group)

    def abandon(self) -> None:
        self.db._end_write(self.session, commit=False)


def _run_group(db: Database, group: list[_Grouped[Any]]) -> None:
    """Run ``group`` in one write transaction (see :meth:`Database.write_grouped`), settling each piece:
    its result, its refusal, or - when the shared transaction fails - its outcome when run alone."""
    try:
        with db.write() as session:
            _work_group(session, group)
    except Exception as exc:
        _group_failed(db, group, exc)
    else:
        _settle(group)


def _work_group(session: Session, group: list[_Grouped[Any]]) -> None:
    """Every piece's work in ``session``: results and refusals are kept on the pieces (not final until
    the transaction commits); any other failure is raised."""
    if len(group) > 1:
        keys: dict[Prelock, list[Any]] = {}
        for grouped in group:
            if grouped.prelock is not None:
                keys.setdefault(grouped.prelock, []).append(grouped.lock_key)
        for prelock, lock_keys in keys.items():
            prelock(session, lock_keys)
    batches: dict[Batch, list[_Grouped[Any]]] = {}
    for grouped in group:
        if grouped.batch is not None:
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


def _settle(group: list[_Grouped[Any]]) -> None:
    for grouped in group:
        grouped.settled = True


def _group_failed(db: Database, group: list[_Grouped[Any]], exc: Exception) -> None:
    """The shared transaction failed (and rolled back): a lone piece of plain work fails with ``exc``;
    the pieces of a larger group or a batch run again, each in its own transaction and with its own
    ``work``, so one bad piece fails only itself."""
    if len(group) == 1 and group[0].batch is None:
        group[0].result, group[0].error = None, exc
        group[0].settled = True
        return
    logger.info("grouped write failed (%r); running its %d parts alone", exc, len(group))
    _run_alone(db, group)


def _run_alone(db: Database, group: list[_Grouped[Any]]) -> None:
    for grouped in group:
        grouped.result, grouped.error = None, None
        try:
            with db.write() as session:
                grouped.result = grouped.work(session)
        except Exception as exc:
            grouped.error = exc
        grouped.settled = True
