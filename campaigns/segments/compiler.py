"""Filter AST -> one SQLAlchemy boolean expression over `Contact`.

Contact fields compile to conditions on the contact row. Fields read from purchases
(purchases.*, rfm.*, lifecycle, loyalty, abc) are grouped: every maximal and/or/not
subtree made only of them becomes ONE `contact.id IN (SELECT ... FROM buyers WHERE ...)`,
so `rfm.m >= 4 and purchases.count(last=90d) = 0` scans purchases once. Contacts who
never bought are not in that relation; the compiler works out in Python whether the
subtree holds for them (count 0, total 0, lifecycle "prospect", no scores) and adds
`OR NOT EXISTS (their purchases)` when it does.

Comparisons are two-valued: a missing value (no email, no such attribute, no purchase
in the window) fails every comparison, and `not` turns that into a match.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, exists, func, not_, or_, select
from sqlalchemy.sql.expression import ColumnElement

from campaigns.audience.consent import consented_contacts, left_topic_contacts
from campaigns.config import Settings
from campaigns.segments import metrics
from campaigns.segments.fields import ATTRIBUTE, EVENT_FIELDS, FIELDS, OPERATORS, FieldSpec
from campaigns.segments.lexer import error
from campaigns.segments.literals import convert, interval, show
from campaigns.segments.parser import BoolOp, Compare, InSegment, Node, Not, Null
from campaigns.segments.sqlfuncs import (
    json_bool,
    json_has,
    json_key,
    json_number,
    json_text,
    parens,
)
from campaigns.store.models import Contact, CustomEvent, Purchase, Topic

Resolver = Callable[[str, int], ColumnElement[bool]]
_SHOWN = {"truth": "a bare field", "notin": "not in"}


def spec_of(node: Compare) -> FieldSpec:
    """The whitelisted field a comparison names, or an error at its column."""
    f = node.field
    if f.path[0] == "attributes":
        if len(f.path) != 2:
            raise error(f.col, f"'{f.name}': name one attribute, as in attributes.city")
        spec = ATTRIBUTE
    elif f.path[0] == "events":
        if len(f.path) != 3 or f.path[2] not in EVENT_FIELDS:
            raise error(f.col, f"'{f.name}': name an event and count or last_at, as in events.cart_abandoned.count(last=7d)")
        spec = EVENT_FIELDS[f.path[2]]
    else:
        found = FIELDS.get(f.name)
        if found is None:
            raise error(f.col, f"unknown field '{f.name}' (known: {', '.join(sorted(FIELDS))}, attributes.NAME)")
        spec = found
    if f.window is not None and not spec.windowed:
        raise error(f.col, f"'{f.name}' takes no (last=...) window; only purchases.* and events.NAME.count do")
    if node.op not in OPERATORS[spec.kind]:
        if node.op == "truth":
            raise error(f.col, f"'{f.name}' needs a comparison, as in {f.name} = ...")
        allowed = ", ".join(sorted(_SHOWN.get(o, o) for o in OPERATORS[spec.kind] if o != "truth"))
        raise error(node.col, f"'{_SHOWN.get(node.op, node.op)}' does not apply to {f.name} (use {allowed})")
    return spec


def _sql(x: Any, op: str, vals: list[Any]) -> Any:
    if op == "=":
        return x == vals[0]
    if op == "!=":
        return x != vals[0]
    if op == "<":
        return x < vals[0]
    if op == "<=":
        return x <= vals[0]
    if op == ">":
        return x > vals[0]
    if op == ">=":
        return x >= vals[0]
    if op == "between":
        return and_(x >= vals[0], x <= vals[1])
    if op == "in":
        return x.in_(vals)
    if op == "notin":
        return x.not_in(vals)
    raise AssertionError(op)


def _py(x: Any, op: str, vals: list[Any]) -> bool:
    if x is None:
        return False
    table: dict[str, Callable[[], bool]] = {
        "=": lambda: x == vals[0], "!=": lambda: x != vals[0], "<": lambda: x < vals[0],
        "<=": lambda: x <= vals[0], ">": lambda: x > vals[0], ">=": lambda: x >= vals[0],
        "between": lambda: vals[0] <= x <= vals[1], "in": lambda: x in vals, "notin": lambda: x not in vals,
    }
    return table[op]()


def _present(x: Any, cond: Any) -> ColumnElement[bool]:
    """Two-valued logic: a missing value fails the comparison (so `not` matches it)."""
    return and_(x.is_not(None), cond)


# in_segment() inlines the referenced filter, so 190 references to a segment of 190
# references make 36,100 copies of its SQL (minutes of CPU, megabytes of SQL text).
MAX_EXPANDED_CONDITIONS = 10_000
# ... and a chain of segments, each nesting the next, makes SQL deeper than the databases
# parse (SQLite's parser stack overflows near 40 levels of alternating and/or): the same 40
# levels the parser allows one filter, counted across every in_segment() it reaches.
MAX_NESTING = 40


GROUP = 32


def shallow(op: str, parts: list[Any]) -> ColumnElement[bool]:
    """and/or of `parts` whose SQL stays shallow: past GROUP parts, groups of GROUP in
    parentheses (SQLite parses `a OR b OR ...` as a chain as deep as it is long)."""
    join = and_ if op == "and" else or_
    while len(parts) > GROUP:
        parts = [parens(join(*parts[i:i + GROUP])) for i in range(0, len(parts), GROUP)]
    return join(*parts)


class ExpansionBudget:
    """Counts the conditions one filter expands to, across every in_segment() it reaches."""

    def __init__(self) -> None:
        self.used = 0
        self.depth = 0
        self.segments = 0  # in_segment() calls expanded on the way down to the current node

    def spend(self, col: int) -> None:
        """One more condition; an InputError (one line) past MAX_EXPANDED_CONDITIONS."""
        self.used += 1
        if self.used > MAX_EXPANDED_CONDITIONS:
            raise error(col, f"the filter expands to more than {MAX_EXPANDED_CONDITIONS:,} conditions through "
                        "in_segment() (the segment expansion cap); refer to fewer or smaller segments")

    def enter(self, col: int) -> None:
        """One level deeper; an InputError (one line) past MAX_NESTING."""
        self.depth += 1
        if self.depth <= MAX_NESTING:
            return
        if self.segments:
            raise error(col, f"the filter nests deeper than {MAX_NESTING} levels through in_segment() "
                        "(the segment nesting cap); refer to segments that nest less")
        raise error(col, f"the filter nests deeper than {MAX_NESTING} levels of and/or/not groups "  # its own groups
                    "(the nesting cap); write it with fewer nested groups")


class Compiler:
    """Compiles one parsed filter for a settings/time; `resolve` handles in_segment()."""

    def __init__(self, settings: Settings, at: datetime, resolve: Resolver | None = None,
                 budget: ExpansionBudget | None = None) -> None:
        self.settings = settings
        self.at = at
        self.resolve = resolve
        self.budget = budget or getattr(resolve, "budget", None) or ExpansionBudget()

    # -- structure ---------------------------------------------------------
    def compile(self, node: Node) -> ColumnElement[bool]:
        """The boolean expression over Contact for a node."""
        self.budget.spend(node.col)
        self.budget.enter(node.col)
        try:
            return self._compile(node)
        finally:
            self.budget.depth -= 1

    def _compile(self, node: Node) -> ColumnElement[bool]:
        if self._from_buyers(node):
            return self._block(node)
        if isinstance(node, Not):
            return not_(self.compile(node.operand))
        if isinstance(node, BoolOp):
            group = [n for n in node.operands if self._from_buyers(n)]
            parts = [self.compile(n) for n in node.operands if not self._from_buyers(n)]
            if group:
                parts.append(self._block(group[0] if len(group) == 1 else BoolOp(node.op, tuple(group), node.col)))
            return shallow(node.op, parts)
        if isinstance(node, InSegment):
            if self.resolve is None:
                raise error(node.col, "in_segment() needs the database; compile it through members_query")
            self.budget.segments += 1
            try:
                return self.resolve(node.name, node.col)
            finally:
                self.budget.segments -= 1
        return self._contact_atom(node, spec_of(node))

    def _from_buyers(self, node: Node) -> bool:
        if isinstance(node, Compare):
            return spec_of(node).source == "buyers"
        if isinstance(node, Not):
            return self._from_buyers(node.operand)
        if isinstance(node, BoolOp):
            return all(self._from_buyers(n) for n in node.operands)
        return False

    # -- the buyers relation --------------------------------------------------
    def _needs(self, node: Node) -> metrics.Needs:
        if isinstance(node, Not):
            return self._needs(node.operand)
        if isinstance(node, BoolOp):
            out = metrics.Needs()
            for n in node.operands:
                out = out | self._needs(n)
            return out
        assert isinstance(node, Compare)
        spec = spec_of(node)
        name = spec.column
        if name in metrics.BASE_COLUMNS:
            suffix = f"_{int(node.field.window.total_seconds())}" if node.field.window else ""
            return metrics.Needs(columns=frozenset({name + suffix}))
        columns = frozenset(metrics.READS[name])
        if name in ("r", "f", "m"):
            return metrics.Needs(columns, frozenset({name}))
        if name in ("score", "segment"):
            return metrics.Needs(columns, frozenset("rfm"))
        return metrics.Needs(columns, abc=name == "abc")

    def _block(self, node: Node) -> ColumnElement[bool]:
        b = metrics.buyers(self.at, self._needs(node))
        match = Contact.id.in_(select(b.c.contact_id).where(self._buyer_cond(node, b)))
        if self._holds_for_nonbuyer(node):
            never_bought = ~exists().where(Purchase.contact_id == Contact.id, Purchase.occurred_at <= self.at)
            return or_(match, never_bought)
        return match

    def _buyer_cond(self, node: Node, b: Any) -> ColumnElement[bool]:
        if isinstance(node, Not):
            return not_(self._buyer_cond(node.operand, b))
        if isinstance(node, BoolOp):
            parts = [self._buyer_cond(n, b) for n in node.operands]
            return shallow(node.op, parts)
        assert isinstance(node, Compare)
        spec = spec_of(node)
        column = self._buyer_column(spec, node, b)
        if spec.kind == "date":
            return _present(column, self._date_cond(column, node))
        return _sql(column, node.op, self._values(spec, node))

    def _buyer_column(self, spec: FieldSpec, node: Compare, b: Any) -> Any:
        name = spec.column
        if node.field.window is not None:
            return b.c[f"{name}_{int(node.field.window.total_seconds())}"]
        if name in ("orders", "total", "first_at", "last_at", "r", "f", "m", "abc"):
            return b.c[name]
        if name == "score":
            return metrics.rfm_score(b.c)
        if name == "segment":
            return metrics.rfm_segment(b.c)
        if name == "lifecycle":
            return metrics.lifecycle(b.c, self.settings, self.at)
        if name == "loyalty":
            return metrics.loyalty(b.c, self.settings, self.at)
        raise AssertionError(name)

    def _holds_for_nonbuyer(self, node: Node) -> bool:
        if isinstance(node, Not):
            return not self._holds_for_nonbuyer(node.operand)
        if isinstance(node, BoolOp):
            results = [self._holds_for_nonbuyer(n) for n in node.operands]
            return all(results) if node.op == "and" else any(results)
        assert isinstance(node, Compare)
        spec = spec_of(node)
        if spec.nonbuyer is None:
            return False
        return _py(spec.nonbuyer, node.op, self._values(spec, node))

    # -- literals ----------------------------------------------------------------
    def _values(self, spec: FieldSpec, node: Compare) -> list[Any]:
        return [convert(spec, node.field.name, lit) for lit in node.values]

    def _date_cond(self, x: Any, node: Compare) -> ColumnElement[bool]:
        name = node.field.name
        (s, e), *rest = [interval(lit, name, self.settings.timezone, self.at) for lit in node.values]
        if node.op == "between":
            return and_(x >= s, x < rest[0][1] if rest[0][1] != rest[0][0] else x <= rest[0][1])
        if s == e:  # an instant
            return _sql(x, node.op, [s])
        return {
            "=": lambda: and_(x >= s, x < e), "!=": lambda: or_(x < s, x >= e),
            "<": lambda: x < s, "<=": lambda: x < e, ">": lambda: x >= e, ">=": lambda: x >= s,
        }[node.op]()

    # -- contact fields ------------------------------------------------------------
    def _contact_atom(self, node: Compare, spec: FieldSpec) -> ColumnElement[bool]:
        if spec.source == "value":
            from campaigns.segments.clv import value_condition
            return value_condition(self.resolve, self.settings, self.at, node, self._values(spec, node))
        if spec.kind == "bool":
            wanted = True if node.op == "truth" else convert(spec, node.field.name, node.values[0])
            if node.op == "!=":
                wanted = not wanted
            consented = Contact.id.in_(
                consented_contacts(spec.column, self.settings.consent.double_opt_in, self.at))
            return consented if wanted else not_(consented)
        if spec.kind == "attribute":
            return self._attribute(node)
        if spec.source == "events":
            return self._event(node, spec)
        if spec.kind == "tags":
            tags = [json_has(Contact.tags, v) for v in self._values(spec, node)]
            return not_(or_(*tags)) if node.op == "notin" else or_(*tags)
        if spec.kind == "topics":
            topics = [self._in_topic(v) for v in self._values(spec, node)]
            return not_(or_(*topics)) if node.op == "notin" else or_(*topics)
        column = getattr(Contact, spec.column)
        if spec.kind == "date":
            return _present(column, self._date_cond(column, node))
        if any(isinstance(lit.value, Null) for lit in node.values):
            return self._null_test(node, [column])
        vals = self._values(spec, node)
        if node.op == "contains":
            return _present(column, func.lower(column).contains(vals[0].lower(), autoescape=True))
        return _present(column, _sql(column, node.op, vals))

    def _event(self, node: Compare, spec: FieldSpec) -> ColumnElement[bool]:
        """events.NAME.count(last=...) / events.NAME.last_at: one correlated look at the contact's events."""
        conds = [CustomEvent.contact_id == Contact.id, CustomEvent.name == node.field.path[1],
                 CustomEvent.occurred_at <= self.at]
        if node.field.window is not None:
            conds.append(CustomEvent.occurred_at > self.at - node.field.window)
        if spec.column == "count":
            count = select(func.count()).select_from(CustomEvent).where(*conds).correlate(Contact).scalar_subquery()
            return _sql(count, node.op, self._values(spec, node))
        last = select(func.max(CustomEvent.occurred_at)).where(*conds).correlate(Contact).scalar_subquery()
        if any(isinstance(lit.value, Null) for lit in node.values):
            return self._null_test(node, [last])
        return _present(last, self._date_cond(last, node))

    def _in_topic(self, name: str) -> ColumnElement[bool]:
        """In the topic named `name` as of the evaluation time: it exists and the contact has not
        left it (a topic that does not exist has nobody in it)."""
        topic_id = select(Topic.id).where(Topic.name == name).scalar_subquery()
        return and_(exists().where(Topic.name == name), Contact.id.not_in(left_topic_contacts(topic_id, self.at)))

    def _null_test(self, node: Compare, columns: list[Any]) -> ColumnElement[bool]:
        if node.op not in ("=", "!=") or len(node.values) != 1:
            bad = next(lit for lit in node.values if isinstance(lit.value, Null))
            raise error(bad.col, "null works only with = and != (as in name = null)")
        missing = and_(*[c.is_(None) for c in columns])
        return missing if node.op == "=" else not_(missing)

    def _attribute(self, node: Compare) -> ColumnElement[bool]:
        key = json_key(node.field.path[1])
        typed: dict[type, Any] = {str: json_text(Contact.attributes, key), Decimal: json_number(Contact.attributes, key),
                                  bool: json_bool(Contact.attributes, key)}
        if any(isinstance(lit.value, Null) for lit in node.values):
            return self._null_test(node, list(typed.values()))
        kinds: dict[type, list[Any]] = {}
        for lit in node.values:
            v = lit.value
            if not isinstance(v, (str, Decimal, bool)):
                raise error(lit.col, f"attributes compare with \"text\", numbers or true/false, not {show(v)}")
            if isinstance(v, bool) and node.op not in ("=", "!=", "in", "notin"):
                raise error(lit.col, f"true/false works only with = and != ({node.field.name})")
            if isinstance(v, Decimal):
                kinds.setdefault(Decimal, []).append(int(v) if v == v.to_integral_value() else float(v))
            else:
                kinds.setdefault(type(v), []).append(v)
        if node.op == "contains" and str not in kinds:
            raise error(node.values[0].col, "contains needs \"text\"")
        if node.op in ("in", "notin"):
            hits = or_(*[typed[t].in_(vals) for t, vals in kinds.items()])
            if node.op == "in":
                return hits
            present = or_(*[x.is_not(None) for x in typed.values()])
            return and_(present, not_(hits))
        if len(kinds) != 1:
            raise error(node.values[0].col, "both ends of between must be numbers, or both text")
        (t, vals), = kinds.items()
        x = typed[t]
        if node.op == "contains":
            return _present(x, func.lower(x).contains(str(vals[0]).lower(), autoescape=True))
        return _present(x, _sql(x, node.op, vals))

