"""A campaign's timeline: human opens and clicks, attributed orders and revenue per hour or day.

Opens and clicks are deliveries with a human open (click) in the bucket, each delivery once
per bucket however often its pixel was fetched. A GROUP BY over the bucket's expression
would sort every event; the bucket is a contiguous stretch of time instead, so each one is
read as an `occurred_at` range of `ix_event_campaign_type` (campaign, type, time: already
in order): one seek finds the next bucket's first event and its label, one count reads that
bucket's range. The bucket's end is computed by the database from its label (SQLite's
`strftime` on the label, so no rounding of microseconds; PostgreSQL's `date_trunc` plus an
interval, in the session's time zone like the label), so a bucket holds exactly the events
whose label it is.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, literal_column, select
from sqlalchemy.orm import Session

from campaigns.store.models import Attribution, Campaign, Event, Purchase


def _postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _bucket(session: Session, column: Any, unit: str) -> Any:
    if _postgres(session):
        return func.to_char(func.date_trunc(unit, column), "YYYY-MM-DD HH24:00" if unit == "hour" else "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d %H:00" if unit == "hour" else "%Y-%m-%d", column)


def _bucket_end(session: Session, column: Any, unit: str) -> Any:
    """The first moment of the bucket after `column`'s (compared with stored times as they are stored)."""
    if _postgres(session):
        return func.date_trunc(unit, column) + literal_column(f"interval '1 {unit}'")
    # The label parsed back (exact: no fraction of a second to round) plus one unit, in the
    # stored text's layout up to the millisecond: '...14:00:00.000' sorts after every
    # '...13:59:59.999999' and before '...14:00:00.000000', which starts the next bucket.
    start = func.strftime("%Y-%m-%d %H:00:00" if unit == "hour" else "%Y-%m-%d 00:00:00", column)
    return func.strftime("%Y-%m-%d %H:%M:%f", start, f"+1 {unit}")


def event_span(session: Session, c: Campaign) -> tuple[datetime | None, datetime | None]:
    """The campaign's first and last event, type by type (a loose scan of `ix_event_campaign_type`).

    A min and a max over all the campaign's events read every index entry; per type each is
    one seek, and the next type is one seek too, so this is a few dozen seeks at any size.
    """
    e, first, last = Event, None, None
    kind = session.scalar(select(func.min(e.type)).where(e.campaign_id == c.id))
    while kind is not None:
        mine = (e.campaign_id == c.id, e.type == kind)
        lo, hi = session.execute(select(select(func.min(e.occurred_at)).where(*mine).scalar_subquery(),
                                        select(func.max(e.occurred_at)).where(*mine).scalar_subquery())).one()
        first = lo if first is None or (lo is not None and lo < first) else first
        last = hi if last is None or (hi is not None and hi > last) else last
        kind = session.scalar(select(func.min(e.type)).where(e.campaign_id == c.id, e.type > kind))
    return first, last


def _responses(session: Session, c: Campaign, kind: str, unit: str) -> dict[str, int]:
    """Deliveries with a human `kind` event per bucket, bucket by bucket in time order."""
    e = Event
    human = (e.campaign_id == c.id, e.type == kind, e.is_machine.is_(False))
    after = bindparam("after", type_=e.occurred_at.type)
    seek = (select(e.occurred_at, _bucket(session, e.occurred_at, unit)).where(*human)
            .order_by(e.occurred_at).limit(1))
    first = bindparam("first", type_=e.occurred_at.type)
    end = _bucket_end(session, first, unit)
    count = select(func.count(e.delivery_id.distinct())).where(*human, e.occurred_at >= first, e.occurred_at < end)
    out: dict[str, int] = {}
    found = session.execute(seek).first()
    while found is not None:
        at, label = found
        out[label] = session.scalar(count, {"first": at}) or 0  # 0 too: a bucket with only responses without a delivery
        found = session.execute(seek.where(e.occurred_at >= _bucket_end(session, after, unit)), {"after": at}).first()
    return out


def timeline(session: Session, c: Campaign) -> dict[str, Any]:
    """{bucket: hour|day, rows[{at, opens, clicks, orders, revenue}]} (docs/reports.md)."""
    first_event, last_event = event_span(session, c)
    first_order, last_order = session.execute(select(func.min(Purchase.occurred_at), func.max(Purchase.occurred_at))
                                              .join(Attribution, Attribution.purchase_id == Purchase.id)
                                              .where(Attribution.campaign_id == c.id)).one()
    starts = [t for t in (first_event, first_order) if t is not None]
    ends = [t for t in (last_event, last_order) if t is not None]
    span = (min(starts) if starts else None, max(ends) if ends else None)
    unit = "day" if span[0] and span[1] and span[1] - span[0] > timedelta(days=3) else "hour"
    rows: dict[str, dict[str, Any]] = {}
    for kind, key in (("open", "opens"), ("click", "clicks")):
        for at, n in _responses(session, c, kind, unit).items():
            rows.setdefault(at, {"at": at, "opens": 0, "clicks": 0, "orders": 0, "revenue": 0.0})[key] = n
    b = _bucket(session, Purchase.occurred_at, unit)
    for at, n, cents in session.execute(select(b, func.count(), func.sum(Attribution.credited_cents))
                                        .join(Attribution, Attribution.purchase_id == Purchase.id)
                                        .where(Attribution.campaign_id == c.id, Attribution.is_holdout.is_(False)).group_by(b)):
        row = rows.setdefault(at, {"at": at, "opens": 0, "clicks": 0, "orders": 0, "revenue": 0.0})
        row["orders"], row["revenue"] = n, int(cents or 0) / 100
    return {"bucket": unit, "rows": [rows[k] for k in sorted(rows)]}
