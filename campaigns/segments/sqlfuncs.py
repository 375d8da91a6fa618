"""Small SQL constructs that differ between SQLite and PostgreSQL, compiled per dialect.

Every user-supplied value (attribute name, tag, literal) travels as a bound parameter;
the per-dialect SQL text below is fixed.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, Float, Integer, String
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement


class epoch(FunctionElement[int]):
    """Whole seconds since 1970 of a UTC timestamp column (exact on both databases)."""

    type = Integer()
    inherit_cache = True
    name = "epoch"


@compiles(epoch, "sqlite")
def _epoch_sqlite(element: epoch, compiler: Any, **kw: Any) -> str:
    # SQLite stores our UTC timestamps as naive ISO text; julianday() would lose exactness
    # to floating point, strftime('%s') is exact to the second.
    return f"CAST(strftime('%s', {compiler.process(element.clauses, **kw)}) AS INTEGER)"


@compiles(epoch)
def _epoch_default(element: epoch, compiler: Any, **kw: Any) -> str:
    return f"CAST(FLOOR(EXTRACT(EPOCH FROM {compiler.process(element.clauses, **kw)})) AS BIGINT)"


class json_text(FunctionElement[str]):
    """attributes.KEY as text when the JSON value is a string, else NULL."""

    type = String()
    inherit_cache = True
    name = "json_text"


class json_number(FunctionElement[float]):
    """attributes.KEY as a number when the JSON value is a number, else NULL."""

    type = Float()
    inherit_cache = True
    name = "json_number"


class json_bool(FunctionElement[bool]):
    """attributes.KEY as a boolean when the JSON value is true/false, else NULL."""

    type = Boolean()
    inherit_cache = True
    name = "json_bool"


class json_has(FunctionElement[bool]):
    """True when the JSON array column holds the given string."""

    type = Boolean()
    inherit_cache = True
    name = "json_has"


def _args(element: FunctionElement[Any], compiler: Any, **kw: Any) -> list[str]:
    return [compiler.process(c, **kw) for c in element.clauses]


@compiles(json_text, "sqlite")
def _text_sqlite(element: json_text, compiler: Any, **kw: Any) -> str:
    col, path = _args(element, compiler, **kw)
    return f"(CASE WHEN json_type({col}, {path}) = 'text' THEN json_extract({col}, {path}) END)"


@compiles(json_text)
def _text_pg(element: json_text, compiler: Any, **kw: Any) -> str:
    col, key = _args(element, compiler, **kw)
    return f"(CASE WHEN json_typeof(({col}) -> {key}) = 'string' THEN ({col}) ->> {key} END)"


@compiles(json_number, "sqlite")
def _number_sqlite(element: json_number, compiler: Any, **kw: Any) -> str:
    col, path = _args(element, compiler, **kw)
    return f"(CASE WHEN json_type({col}, {path}) IN ('integer', 'real') THEN json_extract({col}, {path}) END)"


@compiles(json_number)
def _number_pg(element: json_number, compiler: Any, **kw: Any) -> str:
    col, key = _args(element, compiler, **kw)
    return (f"(CASE WHEN json_typeof(({col}) -> {key}) = 'number' "
            f"THEN CAST(({col}) ->> {key} AS NUMERIC) END)")


@compiles(json_bool, "sqlite")
def _bool_sqlite(element: json_bool, compiler: Any, **kw: Any) -> str:
    col, path = _args(element, compiler, **kw)
    return (f"(CASE json_type({col}, {path}) WHEN 'true' THEN 1 WHEN 'false' THEN 0 END)")


@compiles(json_bool)
def _bool_pg(element: json_bool, compiler: Any, **kw: Any) -> str:
    col, key = _args(element, compiler, **kw)
    return f"(CASE WHEN json_typeof(({col}) -> {key}) = 'boolean' THEN CAST(({col}) ->> {key} AS BOOLEAN) END)"


@compiles(json_has, "sqlite")
def _has_sqlite(element: json_has, compiler: Any, **kw: Any) -> str:
    col, value = _args(element, compiler, **kw)
    return (f"(json_type({col}) = 'array' AND EXISTS "
            f"(SELECT 1 FROM json_each({col}) AS _tag WHERE _tag.type = 'text' AND _tag.value = {value}))")


@compiles(json_has)
def _has_pg(element: json_has, compiler: Any, **kw: Any) -> str:
    col, value = _args(element, compiler, **kw)
    # jsonb's `?` tests a top-level array element (or key) equal to the string.
    return f"(json_typeof({col}) = 'array' AND CAST({col} AS JSONB) ? {value})"


class json_key(FunctionElement[str]):
    """The key argument: `$."name"` on SQLite, `name` on PostgreSQL, always a bound value."""

    type = String()
    inherit_cache = True
    name = "json_key"


@compiles(json_key, "sqlite")
def _key_sqlite(element: json_key, compiler: Any, **kw: Any) -> str:
    (arg,) = _args(element, compiler, **kw)
    return f"('$.\"' || {arg} || '\"')"


@compiles(json_key)
def _key_pg(element: json_key, compiler: Any, **kw: Any) -> str:
    (arg,) = _args(element, compiler, **kw)
    return f"CAST({arg} AS TEXT)"


class parens(FunctionElement[bool]):
    """A boolean expression in parentheses that SQLAlchemy will not flatten into the and/or
    around it. `or_(or_(a, b), c)` renders `a OR b OR c`, which SQLite parses as a chain as
    deep as it is long (and refuses past 1,000); a `Grouping` is flattened too (it proxies
    `.operator`). Used to keep in_segment() expansions and long lists shallow."""

    type = Boolean()
    inherit_cache = True
    name = "parens"


@compiles(parens)
def _parens(element: parens, compiler: Any, **kw: Any) -> str:
    return f"({compiler.process(element.clauses, **kw)})"
