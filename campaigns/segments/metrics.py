"""The buyers relation: one row per contact who bought (as of `at`), with every figure
segments and profiles read. Built on demand with only the columns a filter needs, so a
filter over order counts does not pay for RFM window functions.

Rules (docs/segments.md explains them to marketers):
- lifecycle: new when the first purchase is at most `new_days` old; lapsed when silent
  longer than `lapsed_days`; at risk when silent longer than `at_risk_multiplier` times
  the contact's usual interval between orders (at least one day), or, with fewer than
  `min_purchases_for_interval` orders, longer than `at_risk_days`; otherwise active.
- loyalty: over the `[loyalty] period` before the date (default 365 days), frequent when
  the period's orders > the frequency cut-off, high value when the period's spend > the
  monetary cut-off; cut-offs are the medians over the buyers who bought in the period
  unless configured. A buyer silent for the whole period is a stranger.
- CLV and P(alive) are not SQL: they come from fitted models (clv.py).
- ABC: A when the buyers who spent more than this one bring under 80% of all revenue,
  B under 95%, C the rest (equal spenders share a class, as equal values share RFM scores).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Subquery, and_, case, func, literal, select
from sqlalchemy.sql.expression import ColumnElement

from campaigns.config import Settings
from campaigns.segments.rfm import quintile, score_row, segment_case
from campaigns.segments.sqlfuncs import epoch
from campaigns.store.models import Purchase
from campaigns.timespec import parse_duration

DAY = 86400.0
YEAR = 365.0 * DAY
ABC_CUTS = (0.8, 0.95)
PROSPECT = "prospect"  # the lifecycle stage of a contact who never bought
LIFECYCLE_STAGES = (PROSPECT, "new", "active", "at_risk", "lapsed")
LOYALTY_KINDS = ("true_friend", "butterfly", "barnacle", "stranger")
ABC_CLASSES = ("A", "B", "C")


BASE_COLUMNS = ("orders", "total", "first_at", "last_at")
# what each derived figure reads from the per-buyer aggregates
READS = {
    # a score sorts by its value and breaks ties by the other two figures (rfm.SORT_KEYS)
    "r": ("last_at", "orders", "total"), "f": ("last_at", "orders", "total"), "m": ("last_at", "orders", "total"),
    "score": ("last_at", "orders", "total"), "segment": ("last_at", "orders", "total"),
    "lifecycle": ("orders", "first_at", "last_at"), "loyalty": ("orders", "total"),
    "abc": ("total",),
}


@dataclass(frozen=True)
class Needs:
    """Which parts of the buyers relation a filter or report reads (unread parts cost nothing)."""

    # aggregate columns: orders, total, first_at, last_at, or windowed ones such as orders_7776000
    columns: frozenset[str] = field(default_factory=frozenset)
    scores: frozenset[str] = field(default_factory=frozenset)  # of "r", "f", "m"
    abc: bool = False
    ranks: bool = False  # raw ranks of orders and total and the buyer count (for medians)

    def __or__(self, other: Needs) -> Needs:
        return Needs(self.columns | other.columns, self.scores | other.scores, self.abc or other.abc,
                     self.ranks or other.ranks)


EVERYTHING = Needs(frozenset(BASE_COLUMNS), frozenset("rfm"), True)


def _aggregate(name: str, at: datetime) -> Any:
    p = Purchase
    base, _, seconds = name.rpartition("_") if name[-1].isdigit() else (name, "", "")
    inside = p.occurred_at > at - timedelta(seconds=int(seconds)) if seconds else None
    value: Any
    if base == "orders":
        value = func.count() if inside is None else func.sum(case((inside, 1), else_=0))
    elif base == "total":
        value = func.sum(p.amount_cents if inside is None else case((inside, p.amount_cents), else_=0))
    elif base in ("first_at", "last_at"):
        agg = func.min if base == "first_at" else func.max
        value = agg(p.occurred_at if inside is None else case((inside, p.occurred_at)))
    else:
        raise AssertionError(name)
    return value.label(name)


def _base(at: datetime, columns: frozenset[str]) -> Subquery:
    cols = [Purchase.contact_id] + [_aggregate(name, at) for name in sorted(columns)]
    return select(*cols).where(Purchase.occurred_at <= at).group_by(Purchase.contact_id).subquery("buyers")


def buyers(at: datetime, needs: Needs) -> Subquery:
    """SQL relation: per buyer the needed aggregates (orders, total, first_at, last_at,
    windowed ones), r/f/m quintiles and the ABC class."""
    columns = set(needs.columns)
    for score in needs.scores:
        columns.update(READS[score])
    if needs.abc:
        columns.update(READS["abc"])
    base = _base(at, frozenset(columns))
    if needs.ranks:
        columns.update(("orders", "total"))
        base = _base(at, frozenset(columns))
    if not (needs.scores or needs.abc or needs.ranks):
        return base
    cols: list[Any] = list(base.c)
    # each score is one sort of the buyers, so compute only those asked for
    for score in ("r", "f", "m"):
        if score in needs.scores:
            cols.append(quintile(base.c, score).label(score))
    if needs.abc:
        # Revenue of buyers who spent strictly more = all revenue - revenue of those who spent
        # at most as much (the default frame includes ties), so equal spenders share a class.
        grand = func.sum(base.c.total).over()
        above = (grand - func.sum(base.c.total).over(order_by=base.c.total)) * 1.0
        cols.append(case(
            (above < grand * ABC_CUTS[0], "A"), (above < grand * ABC_CUTS[1], "B"), else_="C").label("abc"))
    if needs.ranks:
        # same windows as the scores: the database sorts once for both
        cols += [func.rank().over(order_by=base.c.orders).label("rank_orders"),
                 func.rank().over(order_by=base.c.total).label("rank_total"), func.count().over().label("n")]
        cols += [score_row(base.c, score).label(f"row_{score}") for score in ("r", "f", "m")]
    return select(*cols).subquery("scored")


def rfm_score(c: Any) -> ColumnElement[int]:
    """SQL: the three scores as one number (545)."""
    return c.r * 100 + c.f * 10 + c.m


def rfm_segment(c: Any) -> ColumnElement[str]:
    """SQL: the named RFM segment of a scored row."""
    return segment_case(c.r, c.f, c.m)


def lifecycle(c: Any, settings: Settings, at: datetime) -> ColumnElement[str]:
    """SQL: the lifecycle stage of a buyer row (prospects are not in the relation)."""
    lc = settings.lifecycle
    min_n = max(lc.min_purchases_for_interval, 2)  # an interval needs two orders
    silent = literal(int(at.timestamp() // 1)) - epoch(c.last_at)
    span = epoch(c.last_at) - epoch(c.first_at)
    gaps = c.orders - 1
    floor_span = gaps * DAY  # the usual interval is at least one day
    usual_span = case((span > floor_span, span), else_=floor_span)
    return case(
        (c.first_at >= at - timedelta(days=lc.new_days), "new"),
        (c.last_at < at - timedelta(days=lc.lapsed_days), "lapsed"),
        (and_(c.orders >= min_n, silent * gaps > lc.at_risk_multiplier * usual_span), "at_risk"),
        (and_(c.orders < min_n, c.last_at < at - timedelta(days=lc.at_risk_days)), "at_risk"),
        else_="active",
    )


def period_seconds(settings: Settings) -> int:
    """The loyalty period in seconds."""
    return int(parse_duration(settings.loyalty.period).total_seconds())


def median_of(column: str, at: datetime) -> ColumnElement[float]:
    """SQL scalar: the median of a buyers-relation column over the buyers whose value is above 0."""
    base = _base(at, frozenset({column}))
    present = select(base.c[column].label("v")).where(base.c[column] > 0).subquery("present")
    ranked = select(
        present.c.v,
        func.row_number().over(order_by=present.c.v).label("rn"),
        func.count().over().label("n"),
    ).subquery("ranked")
    middle = ranked.c.rn.in_([(ranked.c.n + 1) // 2, (ranked.c.n + 2) // 2])
    return select(func.avg(ranked.c.v * 1.0)).where(middle).scalar_subquery()


def loyalty_cutoffs(settings: Settings, at: datetime) -> tuple[Any, Any]:
    """SQL (or constants): the frequency and monetary (cents) cut-offs of the loyalty matrix."""
    cfg, secs = settings.loyalty, period_seconds(settings)
    freq: Any = literal(cfg.frequency_cutoff) if cfg.frequency_cutoff > 0 else median_of(f"orders_{secs}", at)
    money: Any = literal(cfg.monetary_cutoff * 100) if cfg.monetary_cutoff > 0 else median_of(f"total_{secs}", at)
    return freq, money


def loyalty(c: Any, settings: Settings, at: datetime) -> ColumnElement[str]:
    """SQL: true_friend / butterfly / barnacle / stranger of a buyer row, over the loyalty period."""
    freq, money = loyalty_cutoffs(settings, at)
    p, since = Purchase, at - timedelta(seconds=period_seconds(settings))
    # correlated on the buyer (an index range scan of ix_purchase_contact_time each): the
    # period is configuration, so it cannot be one of the relation's fixed columns
    inside = (p.contact_id == c.contact_id, p.occurred_at > since, p.occurred_at <= at)
    orders = select(func.count()).where(*inside).scalar_subquery()
    total = select(func.coalesce(func.sum(p.amount_cents), 0)).where(*inside).scalar_subquery()
    frequent = orders > freq
    high = total > money
    return case(
        (and_(frequent, high), "true_friend"),
        (high, "butterfly"),
        (frequent, "barnacle"),
        else_="stranger",
    )
