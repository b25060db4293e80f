"""The hottest statements, run on the driver's own connection.

SQLAlchemy Core costs tens of microseconds of Python per ``Connection.execute`` (events, the compiled
cache lookup, the execution context, the result wrapper), which is most of what a ledger transfer costs
once commits are grouped. A :class:`RawStatement` compiles its Core statement once per dialect, keeps
the SQL text, the order of its parameters and their type conversions, and runs it on the DBAPI
connection underneath the session, inside the session's transaction. The statement is still written
once, in Core, and SQLAlchemy still decides its SQL and how each value is bound; only the per-call
machinery is skipped.

Limits: no expanding (``IN``-list) parameters and no result processing: rows come back as the driver's
tuples, so select only columns whose driver values are already what the caller wants (integers, text).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    positions: tuple[str, ...] | None
    """Parameter names in order, for drivers with positional parameters (SQLite's ``?``); None for
    drivers that take a mapping (psycopg's ``%(name)s``)."""
    processors: tuple[tuple[str, Callable[[Any], Any]], ...]


class RawStatement:
    """A Core statement run on the DBAPI connection; see the module's docstring."""

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._compiled: dict[tuple[Dialect, frozenset[str]], _Compiled] = {}

    def _compile(self, dialect: Dialect, keys: frozenset[str]) -> _Compiled:
        # column_keys: an INSERT or UPDATE names only the columns given, as Connection.execute does.
        compiled = cast(
            SQLCompiler, self.statement.compile(dialect=dialect, column_keys=sorted(keys))
        )
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise ValueError("a RawStatement cannot have expanding or literal-execute parameters")
        processors = []
        for bind in compiled.binds.values():
            name = compiled.bind_names[bind]
            if name not in keys:  # a default SQLAlchemy would compute, or an anonymous literal
                raise ValueError(f"a RawStatement needs every parameter given; {name!r} is not")
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                processors.append((name, processor))
        positions = compiled.positiontup
        return _Compiled(
            sql=str(compiled),
            positions=None if positions is None else tuple(positions),
            processors=tuple(processors),
        )

    def execute(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """Run on ``conn``'s driver connection, in its transaction; returns the driver's cursor, which the
        caller reads and closes (or use :meth:`rows`, :meth:`scalar`, :meth:`rowcount`)."""
        key = (conn.dialect, frozenset(params))
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = self._compile(*key)
        if compiled.processors:
            values = dict(params)
            for name, processor in compiled.processors:
                if name in values:
                    values[name] = processor(values[name])
        else:
            values = params  # type: ignore[assignment]
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            if compiled.positions is None:
                cursor.execute(compiled.sql, values)
            else:
                cursor.execute(compiled.sql, tuple(values[name] for name in compiled.positions))
        except BaseException:
            cursor.close()
            raise
        return cursor

    def executemany(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run once per row (each row with the same keys), with the driver's ``executemany``."""
        if not rows:
            return
        key = (conn.dialect, frozenset(rows[0]))
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = self._compile(*key)
        processors = compiled.processors
        values: list[Any] = []
        for row in rows:
            if processors:
                row = dict(row)
                for name, processor in processors:
                    if name in row:
                        row[name] = processor(row[name])
            if compiled.positions is None:
                values.append(row)
            else:
                values.append(tuple(row[name] for name in compiled.positions))
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(compiled.sql, values)
        finally:
            cursor.close()

    def rows(self, conn: Connection, params: Mapping[str, Any]) -> Sequence[tuple[Any, ...]]:
        cursor = self.execute(conn, params)
        try:
            return cursor.fetchall()  # type: ignore[no-any-return]
        finally:
            cursor.close()

    def scalar(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        cursor = self.execute(conn, params)
        try:
            row = cursor.fetchone()
            return None if row is None else row[0]
        finally:
            cursor.close()

    def rowcount(self, conn: Connection, params: Mapping[str, Any]) -> int:
        cursor = self.execute(conn, params)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()
