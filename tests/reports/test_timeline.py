"""The report's timeline against a Python reading of every event, on its bucket edges.

Human opens and clicks counted once per delivery per bucket (an hour when the campaign's
events and attributed orders span 3 days or less, else a day), with events a microsecond
either side of each hour and midnight, machine events, and events without a delivery.
"""

import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select

from campaigns.reports.campaign import campaign_report
from campaigns.store.models import Attribution, Campaign, Delivery, Event, Purchase
from tests.reports.builders import campaign_with_contacts

T = datetime(2026, 9, 1, 22, 0, tzinfo=UTC)  # near midnight: buckets across a day's edge


def _history(s, rng, span_hours):
    c, run, ids = campaign_with_contacts(s, name="tl", at=T, contacts=60, prefix="t", holdout_pct=0, status="completed")
    conn = s.connection()
    dids = conn.execute(insert(Delivery).returning(Delivery.id, sort_by_parameter_order=True), [
        {"run_id": run.id, "campaign_id": c.id, "contact_id": cid, "channel": "email", "step": 0, "is_holdout": False,
         "state": "sent", "attempts": 1, "due_at": T, "sent_at": T} for cid in ids]).scalars().all()
    edges = [T.replace(minute=0) + timedelta(hours=h) for h in range(span_hours + 1)]
    events = []
    for n in range(600):
        i = rng.randrange(len(ids))
        at = rng.choice(edges) + rng.choice([timedelta(0), -timedelta(microseconds=1), timedelta(microseconds=1),
                                             timedelta(minutes=rng.randrange(60))])
        events.append({"delivery_id": None if n % 17 == 0 else dids[i], "campaign_id": c.id, "contact_id": ids[i],
                       "type": rng.choice(["open", "open", "click", "delivered", "bounce"]), "is_machine": rng.random() < 0.2,
                       "occurred_at": at, "dedup_key": f"t{n}", "data": {}})
    conn.execute(insert(Event), events)
    orders = [{"order_id": f"o{n}", "contact_id": ids[n], "amount_cents": 1000 + n, "currency": "USD", "source": "test",
               "occurred_at": rng.choice(edges)} for n in range(10)]
    pids = conn.execute(insert(Purchase).returning(Purchase.id, sort_by_parameter_order=True), orders).scalars().all()
    conn.execute(insert(Attribution), [{"purchase_id": p, "delivery_id": dids[n], "campaign_id": c.id, "contact_id": ids[n],
                                        "is_holdout": False, "rule": "click", "credited_cents": 1000 + n}
                                       for n, p in enumerate(pids)])
    return c.id


@pytest.mark.parametrize(("span_hours", "unit"), [(50, "hour"), (24 * 9, "day")])
@pytest.mark.parametrize("seed", [1, 2])
def test_timeline_matches_a_python_reading_of_every_event(app, seed, span_hours, unit):
    with app.session() as s:
        cid = _history(s, random.Random(seed), span_hours)
    with app.session(write=False) as s:
        tl = campaign_report(s, app.settings, s.get(Campaign, cid))["timeline"]
        events = list(s.scalars(select(Event).where(Event.campaign_id == cid)))
        orders = list(s.scalars(select(Purchase).join(Attribution, Attribution.purchase_id == Purchase.id)))
    fmt = "%Y-%m-%d" if unit == "day" else "%Y-%m-%d %H:00"
    expected: dict[str, dict[str, object]] = {}
    for kind in ("open", "click"):
        seen: dict[str, set[int]] = {}
        for e in events:
            if e.type == kind and not e.is_machine and e.delivery_id is not None:
                seen.setdefault(e.occurred_at.strftime(fmt), set()).add(e.delivery_id)
        for at, who in seen.items():
            expected.setdefault(at, {"at": at, "opens": 0, "clicks": 0, "orders": 0, "revenue": 0.0})[kind + "s"] = len(who)
    cents: dict[str, list[int]] = {}
    for o in orders:
        cents.setdefault(o.occurred_at.strftime(fmt), []).append(o.amount_cents)
    for at, paid in cents.items():
        row = expected.setdefault(at, {"at": at, "opens": 0, "clicks": 0, "orders": 0, "revenue": 0.0})
        row["orders"], row["revenue"] = len(paid), sum(paid) / 100
    assert tl["bucket"] == unit
    assert tl["rows"] == [expected[k] for k in sorted(expected)]
