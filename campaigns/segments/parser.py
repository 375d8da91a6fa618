"""The filter language: a recursive-descent parser from tokens to a small AST.

Nothing here touches SQL. Every error names the 1-based column where the input went
wrong, so a marketer can find it in a long filter.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from campaigns.errors import InputError
from campaigns.segments.lexer import KEYWORDS, Token, error, tokenize, unquote

MAX_DEPTH = 40  # nesting of parentheses / not; keeps recursion far from Python's limit
MAX_LIST = 1000
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


# -- AST -------------------------------------------------------------------

@dataclass(frozen=True)
class RelativeDate:
    """`30d ago`: resolved against the evaluation time, not the parse time."""

    delta: timedelta


@dataclass(frozen=True)
class DateLit:
    """An absolute date or date-time as typed; read in the configured time zone."""

    text: str


@dataclass(frozen=True)
class Null:
    """The `null` literal: `= null` is IS NULL."""


Value = str | Decimal | bool | DateLit | RelativeDate | Null


@dataclass(frozen=True)
class Lit:
    value: Value
    col: int


@dataclass(frozen=True)
class Field:
    """`rfm.r`, `attributes.city`, `purchases.count(last=90d)`."""

    path: tuple[str, ...]
    window: timedelta | None
    col: int

    @property
    def name(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class Compare:
    field: Field
    op: str  # = != < <= > >= in notin contains between truth
    values: tuple[Lit, ...]
    col: int


@dataclass(frozen=True)
class InSegment:
    name: str
    col: int


@dataclass(frozen=True)
class Not:
    operand: Node
    col: int


@dataclass(frozen=True)
class BoolOp:
    op: str  # and | or
    operands: tuple[Node, ...]
    col: int


Node = Compare | InSegment | Not | BoolOp


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def _is(self, kind: str, text: str | None = None) -> bool:
        t = self.tok
        if t.kind != kind:
            return False
        return text is None or (t.text.lower() == text if kind == "ident" else t.text == text)

    def _kw(self, word: str) -> bool:
        return self._is("ident", word)

    def _take(self) -> Token:
        t = self.tok
        self.i += 1
        return t

    def _expect(self, kind: str, text: str, what: str) -> Token:
        if not self._is(kind, text):
            raise error(self.tok.col, f"expected {what}, found {_describe(self.tok)}")
        return self._take()

    def parse(self) -> Node:
        if self.tok.kind == "end":
            raise error(1, "the filter is empty")
        node = self._or()
        if self.tok.kind != "end":
            raise error(self.tok.col, f"expected 'and', 'or' or the end, found {_describe(self.tok)}")
        return node

    def _nest(self, col: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise error(col, f"the filter nests deeper than {MAX_DEPTH} levels")

    def _or(self) -> Node:
        col = self.tok.col
        parts = [self._and()]
        while self._kw("or"):
            self._take()
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else BoolOp("or", tuple(parts), col)

    def _and(self) -> Node:
        col = self.tok.col
        parts = [self._not()]
        while self._kw("and"):
            self._take()
            parts.append(self._not())
        return parts[0] if len(parts) == 1 else BoolOp("and", tuple(parts), col)

    def _not(self) -> Node:
        if self._kw("not"):
            t = self._take()
            self._nest(t.col)
            node = Not(self._not(), t.col)
            self.depth -= 1
            return node
        return self._primary()

    def _primary(self) -> Node:
        t = self.tok
        if self._is("punct", "("):
            self._take()
            self._nest(t.col)
            node = self._or()
            self.depth -= 1
            self._expect("punct", ")", "')'")
            return node
        if t.kind != "ident" or t.text.lower() in KEYWORDS:
            raise error(t.col, f"expected a field, '(' or 'not', found {_describe(t)}")
        if t.text.lower() == "in_segment":
            self._take()
            self._expect("punct", "(", "'(' after in_segment")
            name = self.tok
            if name.kind != "string":
                raise error(name.col, f"in_segment needs a quoted segment name, found {_describe(name)}")
            self._take()
            self._expect("punct", ")", "')'")
            return InSegment(unquote(name), t.col)
        field = self._field()
        return self._predicate(field)

    def _field(self) -> Field:
        first = self._take()
        path = [first.text.lower()]
        while self._is("punct", "."):
            self._take()
            part = self.tok
            if part.kind != "ident":
                raise error(part.col, f"expected a name after '.', found {_describe(part)}")
            self._take()
            # attribute names keep their case: they are the contact's own keys
            # attribute and event names keep their case: they are the contact's / the shop's own keys
            keep = path[0] == "attributes" or (path[0] == "events" and len(path) == 1)
            path.append(part.text if keep else part.text.lower())
        window = None
        if self._is("punct", "("):
            self._take()
            key = self._expect("ident", "last", "'last=' (as in purchases.count(last=90d))")
            self._expect("op", "=", "'=' after 'last'")
            dur = self.tok
            if dur.kind != "duration":
                raise error(dur.col, f"expected a duration like 90d after 'last=', found {_describe(dur)}")
            self._take()
            window = _duration(dur)
            if window.total_seconds() <= 0:
                raise error(dur.col, "the window must be longer than zero")
            self._expect("punct", ")", "')'")
            del key
        return Field(tuple(path), window, first.col)

    def _predicate(self, field: Field) -> Node:
        t = self.tok
        if t.kind == "op":
            self._take()
            return Compare(field, t.text, (self._value(),), t.col)
        if self._kw("in"):
            self._take()
            return Compare(field, "in", self._list(), t.col)
        if self._kw("not"):
            self._take()
            if not self._kw("in"):
                raise error(self.tok.col, f"expected 'in' after 'not', found {_describe(self.tok)}")
            self._take()
            return Compare(field, "notin", self._list(), t.col)
        if self._kw("contains"):
            self._take()
            return Compare(field, "contains", (self._value(),), t.col)
        if self._kw("between"):
            self._take()
            low = self._value()
            self._expect("ident", "and", "'and' in 'between ... and ...'")
            return Compare(field, "between", (low, self._value()), t.col)
        # A bare field is a truth test (consent.sms); the compiler checks it is boolean.
        return Compare(field, "truth", (), field.col)

    def _list(self) -> tuple[Lit, ...]:
        self._expect("punct", "[", "'[' to start a list")
        items = [self._value()]
        while self._is("punct", ","):
            self._take()
            items.append(self._value())
            if len(items) > MAX_LIST:
                raise error(self.tok.col, f"a list may hold at most {MAX_LIST} values")
        self._expect("punct", "]", "',' or ']'")
        return tuple(items)

    def _value(self) -> Lit:
        t = self.tok
        if t.kind == "string":
            self._take()
            return Lit(unquote(t), t.col)
        if t.kind == "number":
            self._take()
            try:
                return Lit(Decimal(t.text), t.col)
            except InvalidOperation:  # pragma: no cover - the regex admits only numbers
                raise error(t.col, f"'{t.text}' is not a number") from None
        if t.kind == "date":
            self._take()
            return Lit(DateLit(t.text), t.col)
        if t.kind == "duration":
            self._take()
            if not self._kw("ago"):
                raise error(self.tok.col, f"expected 'ago' after '{t.text}' (as in 30d ago)")
            self._take()
            return Lit(RelativeDate(_duration(t)), t.col)
        if t.kind == "ident" and t.text.lower() in ("true", "false"):
            self._take()
            return Lit(t.text.lower() == "true", t.col)
        if t.kind == "ident" and t.text.lower() == "null":
            self._take()
            return Lit(Null(), t.col)
        raise error(t.col, f"expected a value (\"text\", a number, a date like 2026-01-31 or 30d ago), found {_describe(t)}")


def _duration(tok: Token) -> timedelta:
    seconds = int(tok.text[:-1]) * _UNITS[tok.text[-1]]
    if seconds > 100 * 365 * 86400:
        raise error(tok.col, f"'{tok.text}' is longer than a century")
    return timedelta(seconds=seconds)


def _describe(tok: Token) -> str:
    if tok.kind == "end":
        return "the end of the filter"
    shown = tok.text if len(tok.text) <= 30 else tok.text[:27] + "..."
    return f"'{shown}'"


def parse(text: str) -> Node:
    """Parse a filter into its AST; InputError ('column N: ...') on the first problem."""
    if not isinstance(text, str):
        raise InputError("the filter must be text")
    return _Parser(text).parse()


def segment_references(node: Node) -> set[str]:
    """Names of the segments a parsed filter refers to with in_segment()."""
    if isinstance(node, InSegment):
        return {node.name}
    if isinstance(node, Not):
        return segment_references(node.operand)
    if isinstance(node, BoolOp):
        return set().union(*(segment_references(n) for n in node.operands))
    return set()
