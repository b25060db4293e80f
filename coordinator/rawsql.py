"""The hottest statements, run on the driver's own connection.

SQLAlchemy Core costs tens of microseconds of Python per ``Connection.execute`` (events, the compiled
cache lookup, the execution context, the result wrapper), which is most of what a ledger transfer or a
dispatcher report costs once commits are grouped. A :class:`RawStatement` compiles its Core statement
once per dialect and set of parameter names, keeps the SQL text, the order of its parameters and their
type conversions, and runs it on the DBAPI connection underneath the session, inside the session's
transaction. The statement is still written once, in Core, and SQLAlchemy still decides its SQL, how
each value is bound and how each selected column is read; only the per-call machinery is skipped.

Expanding (``IN``-list) parameters are expanded here, once per list length, as SQLAlchemy does; an empty
list is left to SQLAlchemy itself (it renders an empty-set expression). Selected columns are converted by
their types' result processors (JSON text to objects, SQLite's datetime text to datetimes); the columns
of ``RETURNING`` are not, so return only columns the driver already gives as wanted (integer ids).

psycopg parses a statement's ``%(name)s`` marks again at every call once it has more than 50 parameters
or 4,096 bytes of SQL (it caches the parse only below that). Such a statement - the ledger's multi-row inserts and updates - is
rewritten here once to PostgreSQL's own ``$1, $2, …`` and run on a ``RawCursor`` with its values in order,
which psycopg sends as they are. Smaller statements keep the named marks: psycopg's cached parse costs less
than building the ordered values (measured in docs/PERFORMANCE.md).
"""

from __future__ import annotations

import re
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler

Processor = Callable[[Any], Any]
V = TypeVar("V")


@dataclass(slots=True)
class _Compiled:
    sql: str
    positions: tuple[str, ...] | None
    """Parameter names in order, for positional parameters (SQLite's ``?``, PostgreSQL's ``$n``); None
    for a mapping (``%(name)s``)."""
    numbered: bool
    """The SQL has PostgreSQL's ``$n`` marks, run on psycopg's ``RawCursor``."""
    processors: dict[str, Processor]
    constants: dict[str, Any]
    """Values written into the statement (``.values(state="x")``, ``col == "x"``), by parameter name."""
    expanding: tuple[str, ...]
    results: tuple[Processor | None, ...] | None
    """One result processor (or None) per selected column, found at the first fetch (some need the
    driver's type code from the cursor); empty when no column needs one."""
    row_type: Any
    expanded: dict[tuple[int, ...], tuple[str, tuple[tuple[str, int], ...] | None]] = field(
        default_factory=dict
    )
    """SQL and positions per tuple of list lengths (positions name (parameter, list index or -1))."""


def padded(values: list[V]) -> list[V]:
    """``values`` lengthened to a power of two by repeating the last one. An expanding parameter gives a
    statement one form per list length, each expanded, kept and prepared by the driver on its own; lists
    whose lengths vary with the load (a group's ids) then take a handful of forms instead of hundreds.
    Only for statements a repeated value cannot change (``IN`` lists, probes whose rows go into a set)."""
    if not values:
        return values
    return values + [values[-1]] * ((1 << (len(values) - 1).bit_length()) - len(values))


class RawStatement:
    """A Core statement run on the DBAPI connection; see the module's docstring."""

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._compiled: dict[tuple[Dialect, frozenset[str]], _Compiled] = {}

    def _compile(self, dialect: Dialect, keys: frozenset[str]) -> _Compiled:
        # column_keys: an INSERT or UPDATE names only the columns given, as Connection.execute does.
        compiled = cast(
            SQLCompiler,
            cast(ClauseElement, self.statement).compile(dialect=dialect, column_keys=sorted(keys)),
        )
        if compiled.literal_execute_params:
            raise ValueError("a RawStatement cannot have literal-execute parameters")
        if dialect.paramstyle not in ("qmark", "pyformat"):
            raise ValueError(f"a RawStatement does not know the {dialect.paramstyle!r} paramstyle")
        defaulted = [
            c.key
            for c in (*compiled.insert_prefetch, *compiled.update_prefetch)
            if c.key not in keys
        ]
        if defaulted:  # a column default or onupdate SQLAlchemy would compute at execution
            raise ValueError(f"a RawStatement needs every parameter given; {defaulted} are not")
        expanding = tuple(compiled.bind_names[b] for b in compiled.post_compile_params)
        processors: dict[str, Processor] = {}
        constants: dict[str, Any] = {}
        for bind in compiled.binds.values():
            name = compiled.bind_names[bind]
            if name not in keys:
                if bind.callable is not None or (bind.required and bind.value is None):
                    # a default SQLAlchemy would compute, or a parameter the caller forgot
                    raise ValueError(f"a RawStatement needs every parameter given; {name!r} is not")
                constants[name] = bind.value
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                processors[name] = processor
        row_type: Any = tuple
        selected = getattr(self.statement, "selected_columns", None)
        if selected is not None:
            row_type = _row_type([str(c.key) for c in selected])
        sql = str(compiled)
        positions = None if compiled.positiontup is None else tuple(compiled.positiontup)
        numbered = (
            dialect.driver == "psycopg"
            and dialect.paramstyle == "pyformat"
            and not expanding
            and (
                len(compiled.binds) > _PSYCOPG_CACHED_PARAMS
                or len(sql.encode()) > _PSYCOPG_CACHED_LENGTH
            )
        )
        if numbered:
            sql, positions = _numbered(sql)
        return _Compiled(
            sql=sql,
            positions=positions,
            numbered=numbered,
            processors=processors,
            constants=constants,
            expanding=expanding,
            results=None,
            row_type=row_type,
        )

    def _compiled_for(self, dialect: Dialect, keys: frozenset[str]) -> _Compiled:
        compiled = self._compiled.get((dialect, keys))
        if compiled is None:
            compiled = self._compiled[(dialect, keys)] = self._compile(dialect, keys)
        return compiled

    def _prepare(
        self, conn: Connection, params: Mapping[str, Any]
    ) -> tuple[_Compiled, str, Any] | None:
        """The compiled form, the SQL and the driver's parameters; None when an expanding list is empty."""
        compiled = self._compiled_for(conn.dialect, frozenset(params))
        values = dict(params)
        if compiled.constants:
            values.update(compiled.constants)
        for name, processor in compiled.processors.items():
            value = values[name]
            values[name] = (
                [processor(v) for v in value] if name in compiled.expanding else processor(value)
            )
        if not compiled.expanding:
            if compiled.positions is None:
                return compiled, compiled.sql, values
            return compiled, compiled.sql, tuple(values[n] for n in compiled.positions)
        lengths = tuple(len(values[name]) for name in compiled.expanding)
        if 0 in lengths:
            return None
        form = compiled.expanded.get(lengths)
        if form is None:
            form = compiled.expanded[lengths] = _expand(compiled, lengths)
        sql, positions = form
        if positions is None:
            for name in compiled.expanding:
                for i, value in enumerate(values.pop(name)):
                    values[f"{name}_{i + 1}"] = value
            return compiled, sql, values
        return compiled, sql, tuple(values[n] if i < 0 else values[n][i] for n, i in positions)

    def _cursor(self, conn: Connection, compiled: _Compiled, sql: str, values: Any) -> Any:
        cursor = _new_cursor(conn, compiled)
        try:
            cursor.execute(sql, values)
        except BaseException:
            cursor.close()
            raise
        return cursor

    def rows(self, conn: Connection, params: Mapping[str, Any]) -> list[Any]:
        """Every row, as a named tuple of the selected columns (plain tuples for RETURNING)."""
        prepared = self._prepare(conn, params)
        if prepared is None:
            return list(conn.execute(self.statement, params).all())
        compiled, sql, values = prepared
        cursor = self._cursor(conn, compiled, sql, values)
        try:
            fetched = cursor.fetchall()
            if compiled.results is None:
                compiled.results = self._result_processors(conn.dialect, cursor.description)
        finally:
            cursor.close()
        make = compiled.row_type
        results = compiled.results
        if not results:
            return fetched if make is tuple else [make._make(r) for r in fetched]
        return [
            make._make(v if p is None else p(v) for p, v in zip(results, r, strict=True))
            for r in fetched
        ]

    def _result_processors(
        self, dialect: Dialect, description: Sequence[Any] | None
    ) -> tuple[Processor | None, ...]:
        selected = getattr(self.statement, "selected_columns", None)
        if selected is None or description is None:
            return ()
        found = tuple(
            c.type.dialect_impl(dialect).result_processor(dialect, d[1])
            for c, d in zip(selected, description, strict=True)
        )
        return found if any(p is not None for p in found) else ()

    def scalar(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """The first column of the first row, or None."""
        rows = self.rows(conn, params)
        return rows[0][0] if rows else None

    def rowcount(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Run a statement that returns no rows; the number of rows it changed."""
        prepared = self._prepare(conn, params)
        if prepared is None:
            return int(conn.execute(self.statement, params).rowcount)
        compiled, sql, values = prepared
        cursor = self._cursor(conn, compiled, sql, values)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def executemany(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run once per row (each row with the same keys, no expanding lists), with the driver's
        ``executemany``."""
        if not rows:
            return
        compiled, bound = self._bind_many(conn, rows)
        cursor = _new_cursor(conn, compiled)
        try:
            cursor.executemany(compiled.sql, bound)
        finally:
            cursor.close()

    def returning_many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        """Run once per row, as :meth:`executemany`, and return each run's first ``RETURNING`` value in
        order (None for a run that returned no row, e.g. ``ON CONFLICT DO NOTHING``).

        On psycopg the runs go out as one pipeline (``executemany(..., returning=True)``): one round trip
        to the server instead of one per row, and the results come back per statement, so in order. Other
        drivers run one statement per row (SQLite's multi-row ``RETURNING`` does not promise an order)."""
        if not rows:
            return []
        if conn.dialect.driver != "psycopg":
            found = []
            for row in rows:
                returned = self.rows(conn, row)
                found.append(returned[0][0] if returned else None)
            return found
        compiled, bound = self._bind_many(conn, rows)
        cursor = _new_cursor(conn, compiled)
        try:
            cursor.executemany(compiled.sql, bound, returning=True)
            values: list[Any] = []
            while True:
                first = cursor.fetchone()
                values.append(first[0] if first is not None else None)
                if not cursor.nextset():
                    break
        finally:
            cursor.close()
        if len(values) != len(rows):  # pragma: no cover - the driver answers once per statement
            raise RuntimeError("the driver returned a result for the wrong number of statements")
        return values

    def _bind_many(
        self, conn: Connection, rows: Sequence[Mapping[str, Any]]
    ) -> tuple[_Compiled, list[Any]]:
        """The compiled form and every row's driver parameters, for the driver's ``executemany``."""
        keys = frozenset(rows[0])
        compiled = self._compiled_for(conn.dialect, keys)
        if compiled.expanding:
            raise ValueError("a RawStatement runs executemany only without expanding parameters")
        # Rows of a batch often share a value (the batch's timestamp): each processor remembers its
        # last input and output, so a shared value is converted once per call, not once per row.
        last: dict[str, tuple[Any, Any]] = {}
        processors = compiled.processors.items()
        positions = compiled.positions
        bound: list[Any] = []
        for row in rows:
            if row.keys() != keys:
                raise ValueError("every row of a RawStatement executemany needs the same keys")
            values = {**row, **compiled.constants}
            for name, processor in processors:
                value = values[name]
                seen = last.get(name)
                if seen is not None and seen[0] is value:
                    values[name] = seen[1]
                else:
                    values[name] = converted = processor(value)
                    last[name] = (value, converted)
            bound.append(values if positions is None else tuple(values[n] for n in positions))
        return compiled, bound


def _row_type(names: list[str]) -> Any:
    """A named tuple class for rows of these columns (names that are not identifiers are renamed)."""
    return namedtuple("Row", names, rename=True)


def _new_cursor(conn: Connection, compiled: _Compiled) -> Any:
    dbapi_connection: Any = conn.connection.dbapi_connection
    if compiled.numbered:
        from psycopg import RawCursor

        return RawCursor(dbapi_connection)
    return dbapi_connection.cursor()


# psycopg caches its parse of a statement's marks only up to this many parameters and bytes of SQL
# (psycopg._queries.MAX_CACHED_STATEMENT_PARAMS and MAX_CACHED_STATEMENT_LENGTH).
_PSYCOPG_CACHED_PARAMS = 50
_PSYCOPG_CACHED_LENGTH = 4096
_PYFORMAT_MARK = re.compile(
    r"%\(([^)]+)\)s|%%"
)  # a name is anything up to ")", as psycopg reads it


def _numbered(sql: str) -> tuple[str, tuple[str, ...]]:
    """``sql`` with PostgreSQL's ``$1, $2, …`` for its pyformat marks (and ``%%`` back to ``%``), and the
    parameter each ``$n`` takes."""
    order: list[str] = []

    def mark(match: re.Match[str]) -> str:
        if match.group(1) is None:
            return "%"
        order.append(match.group(1))
        return f"${len(order)}"

    return _PYFORMAT_MARK.sub(mark, sql), tuple(order)


def _expand(
    compiled: _Compiled, lengths: tuple[int, ...]
) -> tuple[str, tuple[tuple[str, int], ...] | None]:
    sql = compiled.sql
    sizes = dict(zip(compiled.expanding, lengths, strict=True))
    for name, n in sizes.items():
        if compiled.positions is None:
            marks = ", ".join(f"%({name}_{i + 1})s" for i in range(n))
        else:
            marks = ", ".join("?" * n)
        sql = sql.replace(f"__[POSTCOMPILE_{name}]", marks)
    if compiled.positions is None:
        return sql, None
    positions: list[tuple[str, int]] = []
    for name in compiled.positions:
        if name in sizes:
            positions.extend((name, i) for i in range(sizes[name]))
        else:
            positions.append((name, -1))
    return sql, tuple(positions)
