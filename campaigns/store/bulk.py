"""Many rows into one table in one statement, each distinct value bound once.

SQLAlchemy's executemany binds every parameter of every row through its column type (a
timestamp: a time-zone check, a conversion and a format, for each of 200,000 rows, though
a planned firing's rows share three timestamps). Here the statement is compiled once, each
column's bind processor is looked up once, and a value already converted in this call is
not converted again. The SQL and the conversions are the dialect's own, so what is stored
is what `insert(table)` would store.

On SQLite (3.38 and later) a chunk whose columns are mostly the same in every row (a
planned firing's deliveries, an import's consent rows) goes in as ONE statement, not an
executemany: a column whose value is the same in every row is bound once, and the others travel as one
JSON array of rows that `json_each` unpacks (`INSERT ... SELECT ?, value->>0, ... FROM
json_each(?)`). Binding 23 parameters per row was half of an executemany's time; the
JSON text is made and read in C (200,000 planned rows: 2.1 -> 0.9 s for the inserts in a
bare comparison). JSON carries integers, text and NULL exactly; a chunk with anything
else in a varying column (a float, bytes, an integer beyond 64 bits, text holding NUL,
which `->>` would cut short) takes the executemany, so what is stored never differs.
Rows that mostly differ (contacts) take the executemany too: there SQLite's taking each
value out of the JSON costs more than binding it.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Table, bindparam, func, insert, literal_column, select
from sqlalchemy.orm import Session

POSITIONAL = ("qmark", "numeric", "format")
_JSON_ROWS = sqlite3.sqlite_version_info >= (3, 38, 0)  # `->>` and JSON built in
_EXACT_IN_JSON = frozenset({int, str, type(None)})
_INT64 = (-(2**63), 2**63 - 1)
_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")  # json.dumps's escape of NUL, not an escaped backslash then "u0000"


def _holds_nul(text: str) -> bool:
    """Whether JSON text from json.dumps holds a NUL character (SQLite's JSON functions end
    a text value there)."""
    return "\\u0000" in text and _NUL.search(text) is not None


def insert_rows(conn: Connection, table: Table, rows: Sequence[dict[str, Any]],
                returning: Sequence[str] = ()) -> list[tuple[Any, ...]] | None:
    """INSERT `rows` (dicts with the same keys) into `table` in one driver executemany.

    `returning`: column names whose values the new rows got (their ids), as tuples in no
    particular order, on SQLite; None where they cannot be told apart (PostgreSQL's
    executemany), and the caller looks them up."""
    if not rows:
        return [] if returning else None
    keys = list(rows[0])
    # Column by column, in C loops (itemgetter, zip, map): 200,000 rows cost no Python call per value.
    get = itemgetter(*keys)
    values = list(map(get, rows)) if len(keys) > 1 else [(v,) for v in map(get, rows)]
    return insert_columns(conn, table, dict(zip(keys, zip(*values, strict=True), strict=True)), returning)


def insert_columns(conn: Connection, table: Table, columns: dict[str, Sequence[Any]],
                   returning: Sequence[str] = ()) -> list[tuple[Any, ...]] | None:
    """`insert_rows` for rows given column by column (each the same length): a caller that
    makes its rows that way (a planned firing) skips making 200,000 dicts only to take them apart."""
    keys = list(columns)
    if not keys or not len(columns[keys[0]]):
        return [] if returning else None
    dialect = conn.dialect
    defaulted = [c.key for c in table.c if c.default is not None and c.key not in keys]
    if defaulted:  # a default is evaluated per execution, which a driver executemany does not do
        raise ValueError(f"bulk insert into {table.name}: give {', '.join(defaulted)} (they have defaults)")
    compiled = insert(table).compile(dialect=dialect, column_keys=keys)
    positional = dialect.paramstyle in POSITIONAL
    names = list(compiled.positiontup or []) if positional else keys
    ordered: list[Any] = [columns[name] for name in names]
    for i, name in enumerate(names):
        if (process := table.c[name].type.dialect_impl(dialect).bind_processor(dialect)) is not None:
            ordered[i] = _converter(process)(ordered[i])
    if (dialect.name == "sqlite" and _JSON_ROWS and positional and _mostly_fixed(ordered)
            and (done := _one_statement(conn, table, names, ordered, returning)) is not None):
        return done if returning else None
    values = list(zip(*ordered, strict=True))
    params: list[Any] = values if positional else [dict(zip(names, v, strict=True)) for v in values]
    if returning and dialect.name == "sqlite":
        return _executemany_returning(conn, table, compiled.string, params, returning)
    conn.exec_driver_sql(compiled.string, params)
    return None


def among(dialect: str, column: Any, values: Sequence[Any]) -> Any:
    """`column IN values` for a long list of text values. On SQLite the list travels as
    ONE JSON parameter that `json_each` unpacks (an import's lookup of 2,000 keys a chunk:
    half the time of binding 2,000 parameters); elsewhere the ordinary IN."""
    if dialect != "sqlite" or not _JSON_ROWS or not all(type(v) is str for v in values):
        return column.in_(values)
    listed = json.dumps(list(values), ensure_ascii=False)
    if _holds_nul(listed):  # `value` would end the text at a NUL: never a match, but keep it exact
        return column.in_(values)
    return column.in_(select(literal_column("value")).select_from(func.json_each(bindparam(None, listed))))


def _mostly_fixed(columns: list[Sequence[Any]]) -> bool:
    """Whether at most half the columns vary from row to row: then the one JSON statement
    wins (it binds each fixed value once); rows that are mostly different values (a contact:
    its ids, addresses, hashes, name and attributes) bind faster as an executemany than
    SQLite takes each apart from JSON (100,000 contacts: 1.3-1.7 s against 2.0-2.3)."""
    varying = sum(1 for column in columns if column.count(column[0]) != len(column))
    return varying * 2 <= len(columns)


def _executemany_returning(conn: Connection, table: Table, sql: str, params: list[Any],
                           returning: Sequence[str]) -> list[tuple[Any, ...]] | None:
    """An executemany on SQLite, and the `returning` columns of the rows it added: those
    whose integer key is above the largest before it. This transaction holds SQLite's write
    lock from the insert to its end, and read the largest key in the same snapshot (a
    writer committing in between makes the insert fail, in WAL mode and in rollback mode
    alike), so every such row is one of these. None when the key is not one integer column,
    or the count differs (a table at SQLite's largest rowid reuses free ones): the caller
    looks them up."""
    key = list(table.primary_key.columns)
    if len(key) != 1 or key[0].type.python_type is not int:
        conn.exec_driver_sql(sql, params)
        return None
    prep = conn.dialect.identifier_preparer
    name, column = prep.format_table(table), prep.format_column(key[0])
    before = conn.exec_driver_sql(f"SELECT max({column}) FROM {name}").scalar()
    conn.exec_driver_sql(sql, params)
    picks = ", ".join(prep.format_column(table.c[n]) for n in returning)
    sql, args = (f"SELECT {picks} FROM {name} WHERE {column} > ?", (before,)) if before is not None \
        else (f"SELECT {picks} FROM {name}", ())
    dialect = conn.dialect
    if all(table.c[n].type.dialect_impl(dialect).result_processor(dialect, None) is None for n in returning):
        # The driver's own tuples are the values (integers, text): SQLAlchemy's result rows
        # cost a tenth of a contacts import's main process.
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            added = cursor.execute(sql, args).fetchall()
        finally:
            cursor.close()
    else:
        added = [tuple(r) for r in conn.exec_driver_sql(sql, args)]
    return added if len(added) == len(params) else None


def _one_statement(conn: Connection, table: Table, names: list[str], columns: list[Any],
                   returning: Sequence[str] = ()) -> list[tuple[Any, ...]] | None:
    """The rows as one INSERT ... SELECT over json_each (SQLite), with the `returning`
    columns of the new rows; None (nothing written) when a varying column holds a value JSON
    would not carry exactly."""
    fixed: list[Any] = []
    varying: list[Sequence[Any]] = []
    picks: list[str] = []
    for column in columns:
        kinds = set(map(type, column))
        if len(kinds) == 1 and column.count(column[0]) == len(column):
            fixed.append(column[0])  # the same in every row: bound once, as the executemany binds it
            picks.append("?")
            continue
        if not kinds <= _EXACT_IN_JSON | {bool}:
            return None
        if int in kinds:
            ints = [v for v in column if type(v) is int]
            if min(ints) < _INT64[0] or max(ints) > _INT64[1]:
                return None
        picks.append(f"value->>{len(varying)}")
        varying.append(column)
    rows = list(zip(*varying, strict=True)) if varying else [0] * len(columns[0])
    text = json.dumps(rows, ensure_ascii=False, separators=(",", ":"))
    if _holds_nul(text):  # `->>` would end the text at a NUL
        return None
    prep = conn.dialect.identifier_preparer
    sql = (f"INSERT INTO {prep.format_table(table)} ({', '.join(prep.format_column(table.c[n]) for n in names)}) "
           f"SELECT {', '.join(picks)} FROM json_each(?)")
    if returning:
        sql += f" RETURNING {', '.join(prep.format_column(table.c[n]) for n in returning)}"
        return [tuple(r) for r in conn.exec_driver_sql(sql, (*fixed, text))]
    conn.exec_driver_sql(sql, (*fixed, text))
    return []


BULK_CACHE_KIB = 32768  # SQLite's page cache during an import; the default is 2,000 KiB


@contextmanager
def bulk_cache(session: Session) -> Iterator[None]:
    """On SQLite, a page cache of BULK_CACHE_KIB for the session's connection while a bulk
    write runs, the connection's own size restored after (SQLite frees the pages above it).

    A contact's email and phone hashes are HMACs, so each new row lands at a random place
    in those indexes; once they outgrow the default 2 MB cache, most inserts read and spill
    pages (200,000 rows into such indexes: 20.5 us a row against 9.9 with 64 MB; for an
    import of 100,000 contacts, about 10% of the whole, for some 35 MB more at the peak).
    The cache only grows as pages are touched: a small import stays small."""
    conn = session.connection()
    if conn.dialect.name != "sqlite":
        yield
        return
    before = int(conn.exec_driver_sql("PRAGMA cache_size").scalar_one())
    conn.exec_driver_sql(f"PRAGMA cache_size=-{BULK_CACHE_KIB}")
    try:
        yield
    except BaseException:
        # The import failed or was interrupted: a Ctrl-C inside a statement invalidates the
        # connection, and restoring the cache there would raise anew and hide why it stopped
        # (the connection is then discarded, its cache with it).
        with suppress(Exception):
            conn.exec_driver_sql(f"PRAGMA cache_size={before}")
        raise
    conn.exec_driver_sql(f"PRAGMA cache_size={before}")


def _converter(process: Callable[[Any], Any]) -> Callable[[Sequence[Any]], list[Any]]:
    """`process` over a column, each distinct (hashable) value converted once."""

    def convert(column: Sequence[Any]) -> list[Any]:
        try:
            seen = {value: process(value) for value in set(column)}
        except TypeError:  # an unhashable value (a JSON one): each object converted once
            return _by_object(process, column)
        return list(map(seen.__getitem__, column))

    return convert


def _by_object(process: Callable[[Any], Any], column: Sequence[Any]) -> list[Any]:
    """`process` over a column of unhashable values, converting each object once (rows that
    share one list, like an import's empty tags, cost one conversion; the column holds them
    alive, so an id is not reused meanwhile)."""
    done: dict[int, Any] = {}
    out = []
    for value in column:
        key = id(value)
        if key not in done:
            done[key] = process(value)
        out.append(done[key])
    return out
