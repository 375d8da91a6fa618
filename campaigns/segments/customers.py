"""Customer profiles (scores, stage, value) for many contacts at once, and distributions.

Scores depend on all buyers, so a call reads the population once (score breakpoints,
ABC thresholds, medians, computed by the same SQL as the filter language), then the
wanted contacts' own figures by index, and applies the rules of metrics.py to them.
Tests check that profiles and filters agree on every stage, segment, quadrant and class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, exists, func, select
from sqlalchemy.orm import Session

from campaigns.config import Settings
from campaigns.errors import InputError
from campaigns.segments import metrics
from campaigns.segments.metrics import PROSPECT
from campaigns.segments.rfm import SEGMENT_NAMES, SORT_KEYS, first_rows, segment_name
from campaigns.store.models import Contact, Purchase
from campaigns.timespec import utcnow

IN_CHUNK = 5000  # ids per IN list (well under SQLite's and PostgreSQL's parameter limits)


@dataclass(frozen=True)
class CustomerProfile:
    """What we know of one contact as a customer, as of a date. Money in cents."""

    contact_id: int
    orders: int
    total_cents: int
    first_at: datetime | None
    last_at: datetime | None
    aov_cents: int | None
    r: int | None
    f: int | None
    m: int | None
    rfm_score: str | None
    rfm_segment: str | None
    lifecycle: str
    loyalty: str | None
    clv_cents: int | None  # from the fitted CLV models: profiles(..., value=True)
    abc: str | None
    p_alive: float | None = None  # P(still a customer), BG/NBD; churn risk = 1 - p_alive
    churn_risk: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain values for JSON and templates."""
        return asdict(self)


def prospect(contact_id: int) -> CustomerProfile:
    """The profile of a contact who never bought."""
    return CustomerProfile(contact_id, 0, 0, None, None, None, None, None, None, None, None,
                           PROSPECT, None, None, None)


def scored_query(settings: Settings, at: datetime) -> Any:
    """SELECT of every buyer's figures, scores, stage, loyalty and ABC class."""
    b = metrics.buyers(at, metrics.EVERYTHING)
    return select(
        b.c.contact_id, b.c.orders, b.c.total, b.c.first_at, b.c.last_at, b.c.r, b.c.f, b.c.m,
        metrics.rfm_segment(b.c).label("segment"),
        metrics.lifecycle(b.c, settings, at).label("lifecycle"),
        metrics.loyalty(b.c, settings, at).label("loyalty"),
        b.c.abc,
    )


@dataclass(frozen=True)
class Population:
    """What a buyer's scores depend on besides their own figures, read once per call.

    Scores rise along each score's sort (rfm.SORT_KEYS: the value, then the tie-break),
    so `score >= s` exactly when a buyer's sort key reaches that of the first buyer who
    scored s: these breakpoints come from the same SQL window functions the filters use.
    """

    # r, f, m: sort-key tuples of the first buyer with score 2..5 (None when no one has it);
    # abc: the smallest totals of classes A and A-or-B
    breakpoints: dict[str, list[Any]]
    median_orders: float | None
    median_total: float | None

    def score(self, key: str, value: Any) -> int:
        """The 1-5 score of a buyer's sort key (r, f, m) or total (abc)."""
        return 1 + sum(1 for bp in self.breakpoints[key] if bp is not None and value >= bp)


def population(session: Session, settings: Settings, at: datetime) -> Population:
    """One query over all buyers: score breakpoints, ABC thresholds and the medians."""
    c = metrics.buyers(at, metrics.Needs(frozenset(metrics.BASE_COLUMNS), frozenset("rfm"), True, True)).c
    secs = metrics.period_seconds(settings)

    def least(value: Any, cond: Any) -> Any:
        return func.min(case((cond, value)))

    cols = [least(c.total, c.abc == "A"), least(c.total, c.abc.in_(("A", "B")))]
    cols += [metrics.median_of(f"orders_{secs}", at), metrics.median_of(f"total_{secs}", at), func.count()]
    row = list(session.execute(select(*cols)).one())
    firsts = first_rows(int(row[4]))
    points: dict[str, list[Any]] = {k: [None] * 4 for k in SORT_KEYS}
    if firsts:
        wanted = list(firsts.values())
        q = select(c.row_r, c.row_f, c.row_m, c.contact_id, c.last_at, c.orders, c.total).where(
            c.row_r.in_(wanted) | c.row_f.in_(wanted) | c.row_m.in_(wanted))
        for hit in session.execute(q):
            for key in SORT_KEYS:
                for s, first in firsts.items():
                    if getattr(hit, f"row_{key}") == first:
                        points[key][s - 2] = sort_key(key, hit)
    return Population({**points, "abc": row[0:2]},
                      None if row[2] is None else float(row[2]), None if row[3] is None else float(row[3]))


def sort_key(score: str, row: Any) -> tuple[Any, ...]:
    """A buyer's place in the sort of score r, f or m (rfm.SORT_KEYS), from a row with those figures."""
    return tuple(int(getattr(row, k) or 0) if k in ("orders", "total") else getattr(row, k) for k in SORT_KEYS[score])


def _epoch(value: datetime) -> int:
    return int(value.timestamp() // 1)  # whole seconds, as the SQL rule uses


def lifecycle_stage(orders: int, first_at: datetime, last_at: datetime, at: datetime, settings: Settings) -> str:
    """The lifecycle rule of metrics.lifecycle for one buyer's figures (same thresholds)."""
    lc = settings.lifecycle
    min_n = max(lc.min_purchases_for_interval, 2)
    if first_at >= at - timedelta(days=lc.new_days):
        return "new"
    if last_at < at - timedelta(days=lc.lapsed_days):
        return "lapsed"
    gaps = orders - 1
    if orders >= min_n:
        span = _epoch(last_at) - _epoch(first_at)
        if (_epoch(at) - _epoch(last_at)) * gaps > lc.at_risk_multiplier * max(span, gaps * metrics.DAY):
            return "at_risk"
    elif last_at < at - timedelta(days=lc.at_risk_days):
        return "at_risk"
    return "active"


def _loyalty(orders: int, total: int, pop: Population, settings: Settings) -> str:
    """The loyalty rule of metrics.loyalty for one buyer's orders and spend in the period."""
    cfg = settings.loyalty
    freq = cfg.frequency_cutoff if cfg.frequency_cutoff > 0 else pop.median_orders
    money = cfg.monetary_cutoff * 100 if cfg.monetary_cutoff > 0 else pop.median_total
    frequent = freq is not None and orders > freq
    high = money is not None and total > money
    return {(True, True): "true_friend", (False, True): "butterfly", (True, False): "barnacle"}.get(
        (frequent, high), "stranger")


def _profile(row: Any, pop: Population, settings: Settings, at: datetime) -> CustomerProfile:
    orders, total = int(row.orders), int(row.total or 0)
    r, f, m = (pop.score(k, sort_key(k, row)) for k in ("r", "f", "m"))
    a_min, b_min = pop.breakpoints["abc"]
    abc = "A" if a_min is not None and total >= a_min else "B" if b_min is not None and total >= b_min else "C"
    return CustomerProfile(
        contact_id=row.contact_id, orders=orders, total_cents=total, first_at=row.first_at, last_at=row.last_at,
        aov_cents=round(total / orders), r=r, f=f, m=m, rfm_score=f"{r}{f}{m}", rfm_segment=segment_name(r, f, m),
        lifecycle=lifecycle_stage(orders, row.first_at, row.last_at, at, settings),
        loyalty=_loyalty(int(row.period_orders or 0), int(row.period_total or 0), pop, settings),
        clv_cents=None, abc=abc,
    )


def profiles(
    session: Session, settings: Settings, contact_ids: Sequence[int], at: datetime | None = None, *, value: bool = False,
    pop: Population | None = None, prospects: bool = True,
) -> dict[int, CustomerProfile]:
    """Profiles of the given contacts (prospects included, unless `prospects` is False: then
    only those who bought, and a missing id is a prospect), keyed by contact id.

    Two steps: one pass over all buyers for the breakpoints, then each wanted contact's own
    figures by index (IN lists of IN_CHUNK ids). With `value`, also CLV, P(alive) and churn
    risk from the fitted models (reads every purchase; left None when no model can be fitted).
    A caller asking in chunks passes `pop` (population at the same `at`) to do the first step once.
    """
    at = at or utcnow()
    wanted = sorted(set(contact_ids))
    out: dict[int, CustomerProfile] = {}
    if not wanted:
        return out
    pop = pop or population(session, settings, at)
    p = Purchase
    inside = p.occurred_at > at - timedelta(seconds=metrics.period_seconds(settings))
    for start in range(0, len(wanted), IN_CHUNK):
        chunk = wanted[start:start + IN_CHUNK]
        # Dense ids (a planning chunk, in id order) are asked for as a range and the few others
        # dropped here: binding thousands of IN parameters cost more than the query.
        dense = chunk[-1] - chunk[0] < 2 * len(chunk)
        which = p.contact_id.between(chunk[0], chunk[-1]) if dense else p.contact_id.in_(chunk)
        keep = set(chunk) if dense else None
        q = (select(p.contact_id, func.count().label("orders"), func.sum(p.amount_cents).label("total"),
                    func.min(p.occurred_at).label("first_at"), func.max(p.occurred_at).label("last_at"),
                    func.sum(case((inside, 1), else_=0)).label("period_orders"),
                    func.sum(case((inside, p.amount_cents), else_=0)).label("period_total"))
             .where(which, p.occurred_at <= at).group_by(p.contact_id))
        for row in session.execute(q):
            if keep is None or row.contact_id in keep:
                out[row.contact_id] = _profile(row, pop, settings, at)
    if prospects:
        for cid in wanted:
            if cid not in out:
                out[cid] = prospect(cid)
    if value:
        out = _with_value(session, settings, at, out)
    return out


def _with_value(session: Session, settings: Settings, at: datetime,
                found: dict[int, CustomerProfile]) -> dict[int, CustomerProfile]:
    from campaigns.segments.clv import value_customers

    try:
        valuation = value_customers(session, settings, at)
    except InputError:  # too few repeat buyers to fit: no CLV rather than a made-up one
        return found
    out = {}
    for cid, p in found.items():
        v = valuation.of(cid)
        out[cid] = p if v is None else replace(p, clv_cents=round(v["clv"] * 100), p_alive=v["p_alive"],
                                               churn_risk=1 - v["p_alive"])
    return out


def _prospects(session: Session, at: datetime) -> int:
    bought = exists().where(Purchase.contact_id == Contact.id, Purchase.occurred_at <= at)
    return int(session.scalar(select(func.count()).where(Contact.erased_at.is_(None), ~bought)) or 0)


def distribution(session: Session, settings: Settings, view: str, at: datetime | None = None) -> list[dict[str, Any]]:
    """Contacts and revenue per RFM segment, lifecycle stage, loyalty quadrant or ABC class (`view`)."""
    at = at or utcnow()
    sub = scored_query(settings, at).subquery()
    key = {"rfm": sub.c.segment, "lifecycle": sub.c.lifecycle, "loyalty": sub.c.loyalty, "abc": sub.c.abc}[view]
    rows = session.execute(
        select(key.label("k"), func.count(), func.sum(sub.c.total), func.avg(sub.c.orders * 1.0))
        .group_by(key)).all()
    found = {k: (int(n), int(total or 0), float(avg or 0)) for k, n, total, avg in rows}
    order = {"rfm": SEGMENT_NAMES, "lifecycle": metrics.LIFECYCLE_STAGES, "loyalty": metrics.LOYALTY_KINDS,
             "abc": metrics.ABC_CLASSES}[view]
    if view == "lifecycle":
        found[PROSPECT] = (_prospects(session, at), 0, 0.0)
    revenue = sum(t for _, t, _ in found.values()) or 1
    people = sum(n for n, _, _ in found.values()) or 1
    return [{
        view if view != "rfm" else "segment": name, "contacts": found.get(name, (0, 0, 0.0))[0],
        "share": round(found.get(name, (0, 0, 0.0))[0] / people, 4),
        "revenue_cents": found.get(name, (0, 0, 0.0))[1],
        "revenue_share": round(found.get(name, (0, 0, 0.0))[1] / revenue, 4),
        "avg_orders": round(found.get(name, (0, 0, 0.0))[2], 2),
    } for name in order]
