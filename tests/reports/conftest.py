"""A campaign history built by hand, with every figure worked out in the test."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert

from campaigns.store.models import Attribution, Delivery, Event, Purchase
from tests.reports.builders import campaign_with_contacts

T = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def history(app):
    """100 sent (A/B 60/40), 40 held out, 10 failed, 2 unknown; opens, clicks, orders as documented inline."""
    with app.session() as s:
        c, run, ids = campaign_with_contacts(
            s, name="winback", at=T, contacts=152, prefix="h", run_status="planned",
            counts={"in_segment": 170, "planned": 112, "held_out": 40,
                    "skipped": {"no_consent": 12, "suppressed": 3, "capped": 2, "invalid_address": 1}},
            attribution_window_seconds=7 * 86400, holdout_pct=25, cost_per_message=0.01, status="draft")
        conn = s.connection()
        rows = []
        for i, cid in enumerate(ids):
            state = "sent" if i < 100 else "held_out" if i < 140 else "failed" if i < 150 else "unknown"
            rows.append({"run_id": run.id, "campaign_id": c.id, "contact_id": cid, "channel": "email", "step": 0,
                         "variant": ("A" if i < 60 else "B") if i < 100 else None, "is_holdout": state == "held_out",
                         "state": state, "attempts": 1, "due_at": T, "sent_at": T if state == "sent" else None,
                         "lifecycle_stage": "at_risk" if i % 2 else "lapsed", "template_name": "winback"})
        dids = conn.execute(insert(Delivery).returning(Delivery.id, sort_by_parameter_order=True), rows).scalars().all()
        events = []
        def ev(i, kind, hours, machine=False, n=0):
            events.append({"delivery_id": dids[i], "campaign_id": c.id, "contact_id": ids[i], "type": kind,
                           "occurred_at": T + timedelta(hours=hours), "is_machine": machine,
                           "dedup_key": f"{kind}:{i}:{n}:{machine}", "data": {}})
        for i in range(50):                      # 50 human opens, the first 10 opened twice
            ev(i, "open", 1 + i % 5)
            if i < 10:
                ev(i, "open", 6, n=1)
        for i in range(50, 58):                  # 8 messages opened only by machines
            ev(i, "open", 0, machine=True)
        for i in range(20):                      # 20 clicks (A: 0-19)
            ev(i, "click", 2)
        for i in range(60, 63):                  # 3 unsubscribes (B)
            ev(i, "unsubscribe", 3)
        ev(63, "complaint", 4)
        for i in range(90, 94):                  # 4 bounced after sending
            ev(i, "bounce", 0)
        conn.execute(insert(Event), events)
        orders, credits = [], []
        buyers = [(i, 2000) for i in range(15)] + [(100, 2000), (101, 2000)]  # 15 treated, 2 holdout, 20.00 each
        for n, (i, cents) in enumerate(buyers):
            orders.append({"order_id": f"R{n}", "contact_id": ids[i], "amount_cents": cents, "currency": "USD",
                           "occurred_at": T + timedelta(days=1, hours=n % 3), "source": "test"})
        pids = conn.execute(insert(Purchase).returning(Purchase.id, sort_by_parameter_order=True), orders).scalars().all()
        for pid, (i, cents) in zip(pids, buyers, strict=True):
            credits.append({"purchase_id": pid, "delivery_id": dids[i], "campaign_id": c.id, "contact_id": ids[i],
                            "is_holdout": i >= 100, "rule": "holdout" if i >= 100 else "click", "credited_cents": cents})
        conn.execute(insert(Attribution), credits)
    return "winback"
