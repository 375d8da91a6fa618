"""Loyalty metrics per period: customer base, new customers, retention and churn,
purchase frequency, average order value, repeat-purchase rate; and today's counts by
lifecycle stage, RFM segment and loyalty quadrant.

Retention for a period is the share of the previous period's customers who bought again
in it; churn is one minus retention. Frequency is orders per customer in the period.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String, func, select
from sqlalchemy.orm import Session

from campaigns.config import Settings
from campaigns.errors import InputError
from campaigns.reports.stats import ratio
from campaigns.segments import distribution
from campaigns.store.models import Purchase

PERIODS = {"month": ("%Y-%m", "YYYY-MM"), "quarter": (None, 'YYYY-"Q"Q'), "year": ("%Y", "YYYY")}


def _period(session: Session, period: str) -> Any:
    if period not in PERIODS:
        raise InputError(f"--period: '{period}' is not one of {', '.join(PERIODS)}")
    return _period_of(session, Purchase.occurred_at, period)


def _int() -> Integer:
    return Integer()


def _text() -> String:
    return String()


def loyalty_report(session: Session, settings: Settings, period: str = "month", at: datetime | None = None) -> dict[str, Any]:
    """Per-period loyalty metrics plus the current distributions."""
    p = _period(session, period).label("period")
    per = {row.period: {"period": row.period, "customers": row.customers, "orders": row.orders, "revenue": int(row.cents or 0) / 100}
           for row in session.execute(select(p, func.count(func.distinct(Purchase.contact_id)).label("customers"),
                                             func.count().label("orders"), func.sum(Purchase.amount_cents).label("cents"))
                                      .group_by(p))}
    first = select(Purchase.contact_id, func.min(Purchase.occurred_at).label("first_at")).group_by(Purchase.contact_id).subquery()
    fp = _period_of(session, first.c.first_at, period)
    new: dict[str, int] = dict(session.execute(select(fp, func.count()).group_by(fp)).all())
    per_contact = select(p, Purchase.contact_id, func.count().label("n")).group_by(p, Purchase.contact_id).subquery()
    repeat: dict[str, int] = dict(session.execute(select(per_contact.c.period, func.count()).where(per_contact.c.n >= 2)
                                  .group_by(per_contact.c.period)).all())
    periods = sorted(per)
    retained = _retained(session, per_contact, periods)
    rows = []
    for i, key in enumerate(periods):
        r = per[key]
        prev = per[periods[i - 1]]["customers"] if i else None
        retention = ratio(retained.get(key, 0), prev) if prev else None
        rows.append({**r, "new_customers": new.get(key, 0), "returning_customers": r["customers"] - new.get(key, 0),
                     "retention_rate": retention, "churn_rate": None if retention is None else 1 - retention,
                     "purchase_frequency": ratio(r["orders"], r["customers"]), "average_order_value": ratio(r["revenue"], r["orders"]),
                     "repeat_purchase_rate": ratio(repeat.get(key, 0), r["customers"])})
    return {"period": period, "rows": rows,
            "lifecycle": distribution(session, settings, "lifecycle", at), "rfm": distribution(session, settings, "rfm", at),
            "loyalty": distribution(session, settings, "loyalty", at)}


def _period_of(session: Session, column: Any, period: str) -> Any:
    lite, pg = PERIODS[period]
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(column, pg)
    if period == "quarter":
        # floor division: SQLAlchemy's "/" on integers is true division (2025-Q1.333...)
        return func.strftime("%Y", column) + "-Q" + func.cast((func.cast(func.strftime("%m", column), _int()) + 2) // 3, _text())
    return func.strftime(lite, column)


def _retained(session: Session, per_contact: Any, periods: list[str]) -> dict[str, int]:
    """For each period, how many of the previous period's customers bought again (streamed by contact)."""
    index = {k: i for i, k in enumerate(periods)}
    out: dict[str, int] = {}
    last_contact, last_index = None, None
    rows = session.execute(select(per_contact.c.contact_id, per_contact.c.period)
                           .order_by(per_contact.c.contact_id, per_contact.c.period))
    for contact, key in rows:
        i = index[key]
        if contact == last_contact and last_index is not None and i == last_index + 1:
            out[key] = out.get(key, 0) + 1
        last_contact, last_index = contact, i
    return out
