"""Lift is intention-to-treat: overlapping campaigns cannot fake it, credit cannot change it."""

import json
import random
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select

from campaigns.store.models import (
    Attribution,
    Campaign,
    CampaignRun,
    Contact,
    Delivery,
    Purchase,
    Segment,
)
from campaigns.tracking.attribution import recompute_campaign

T = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
N = 3000


def _campaign(s, seg, name, holdout_pct):
    c = Campaign(name=name, channel="email", segment_id=seg.id, schedule_kind="manual", variants=[], steps=[], utm={},
                 attribution_window_seconds=7 * 86400, holdout_pct=holdout_pct, status="completed")
    s.add(c)
    s.flush()
    run = CampaignRun(campaign_id=c.id, scheduled_for=T, status="done", counts={"in_segment": N})
    s.add(run)
    s.flush()
    return c, run


def _deliveries(conn, c, run, ids, at, held):
    conn.execute(insert(Delivery), [
        {"run_id": run.id, "campaign_id": c.id, "contact_id": cid, "channel": "email", "step": 0, "is_holdout": held(i),
         "state": "held_out" if held(i) else "sent", "attempts": 1, "due_at": at, "sent_at": None if held(i) else at}
        for i, cid in enumerate(ids)])


def test_overlapping_campaigns_with_no_effect_report_no_lift(app, cli):
    """A drip-like campaign A at T and campaign B a day later over the same people; everyone
    buys with the same 10% chance inside both windows. The old report counted B's held-out
    buyers only when A had not touched them (A's credit won) and claimed a positive lift."""
    rng = random.Random(7)
    with app.session() as s:
        seg = Segment(name="everyone", definition='email contains "@"')
        s.add(seg)
        s.flush()
        a, run_a = _campaign(s, seg, "drip", 10)
        b, run_b = _campaign(s, seg, "promo", 20)
        conn = s.connection()
        ids = conn.execute(insert(Contact).returning(Contact.id, sort_by_parameter_order=True),
                           [{"email": f"p{i}@example.com", "attributes": {}, "tags": []} for i in range(N)]).scalars().all()
        _deliveries(conn, a, run_a, ids, T, lambda i: i % 10 == 3)
        _deliveries(conn, b, run_b, ids, T + timedelta(days=1), lambda i: i % 5 == 0)
        buyers = [i for i in range(N) if rng.random() < 0.10]
        conn.execute(insert(Purchase), [
            {"order_id": f"o{i}", "contact_id": ids[i], "amount_cents": 5000, "currency": "USD", "source": "test",
             "occurred_at": T + timedelta(days=1, hours=1 + rng.randrange(140))} for i in buyers])
        recompute_campaign(s, app.settings, a.id)
        recompute_campaign(s, app.settings, b.id)
        held_credit = s.scalar(select(Attribution.id).where(Attribution.campaign_id == b.id, Attribution.is_holdout.is_(True)))
    lf = json.loads(cli("report", "promo", "--json").stdout)["lift"]
    held = [i for i in range(N) if i % 5 == 0]
    bought = set(buyers)
    assert lf["holdout"]["contacts"] == len(held) and lf["treated"]["contacts"] == N - len(held)
    assert lf["holdout"]["converters"] == sum(i in bought for i in held)
    assert lf["treated"]["converters"] == len(bought) - lf["holdout"]["converters"]
    assert lf["holdout"]["revenue"] == 50.0 * lf["holdout"]["converters"]
    assert lf["ci95"][0] < 0 < lf["ci95"][1]
    assert lf["verdict"] != "positive lift"
    assert held_credit is None or lf["holdout"]["converters"] > 0  # credit went elsewhere; the lift did not care


def test_a_purchase_outside_the_window_or_before_the_send_does_not_convert(app, cli):
    with app.session() as s:
        seg = Segment(name="everyone", definition='email contains "@"')
        s.add(seg)
        s.flush()
        c, run = _campaign(s, seg, "promo", 50)
        conn = s.connection()
        ids = conn.execute(insert(Contact).returning(Contact.id, sort_by_parameter_order=True),
                           [{"email": f"q{i}@example.com", "attributes": {}, "tags": []} for i in range(8)]).scalars().all()
        _deliveries(conn, c, run, ids, T, lambda i: i % 2 == 1)
        when = {0: T + timedelta(days=7), 1: T + timedelta(days=7, seconds=1), 2: T - timedelta(seconds=1), 3: T,
                4: T + timedelta(hours=1), 5: T + timedelta(hours=2)}
        conn.execute(insert(Purchase), [{"order_id": f"x{i}", "contact_id": ids[i], "amount_cents": 1000 * (i + 1),
                                         "currency": "USD", "source": "test", "occurred_at": at} for i, at in when.items()])
        conn.execute(insert(Purchase), [{"order_id": "x4b", "contact_id": ids[4], "amount_cents": 50, "currency": "USD",
                                         "source": "test", "occurred_at": T + timedelta(days=2)}])
    lf = json.loads(cli("report", "promo", "--json").stdout)["lift"]
    # treated 0, 2, 4, 6: 0 (at the window's end) and 4 (two orders) convert; 2 bought before the send
    assert lf["treated"] == {"contacts": 4, "converters": 2, "revenue": 10.0 + 50.0 + 0.5, "rate": 0.5,
                             "revenue_per_contact": (60.5) / 4}
    # held out 1, 3, 5, 7: 3 (at the hold time) and 5 convert; 1 bought a second after the window
    assert (lf["holdout"]["converters"], lf["holdout"]["revenue"]) == (2, 40.0 + 60.0)
