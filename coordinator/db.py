"""Database engines and sessions: a SQLite file by default, PostgreSQL by URL.

Write transactions go through :meth:`Database.write`. On SQLite that takes a process-wide lock and opens the
transaction with ``BEGIN IMMEDIATE`` (SQLite allows one writer; taking the write lock up front avoids the
deadlock-prone read-to-write upgrade, and the in-process lock avoids SQLite's sleeping busy handler). On
PostgreSQL writes run concurrently and domain code serializes hot rows with ``SELECT ... FOR UPDATE``.

Small, frequent writes (transfers) go through :meth:`Database.write_grouped`: concurrent callers share one
transaction and one commit (group commit), which is what a disk sync per commit costs the most.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
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
        try:
            with self._db.write() as session:
                if len(group) > 1:
                    keys: dict[Prelock, list[Any]] = {}
                    for grouped in group:
                        if grouped.prelock is not None:
                            keys.setdefault(grouped.prelock, []).append(grouped.lock_key)
                    for prelock, lock_keys in keys.items():
                        prelock(session, lock_keys)
                for grouped in group:
                    try:
                        grouped.result = grouped.work(session)
                    except grouped.refusals as exc:
                        grouped.error = exc
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
                with self._db.write() as session:
                    grouped.result = grouped.work(session)
            except Exception as exc:
                grouped.error = exc
            grouped.settled = True
