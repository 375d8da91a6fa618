"""Attribution on a hand-built timeline whose expected credits are written here."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select

from campaigns.store.models import (
    Attribution,
    Campaign,
    CampaignRun,
    Contact,
    Delivery,
    Event,
    Purchase,
    Segment,
)
from campaigns.tracking.attribution import Touch, attribute_purchases, choose, recompute_campaign

T = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
WEEK = timedelta(days=7)


def touch(did, cid=1, sent=T, click=None, open_=None, holdout=False, names=("c1",), window=WEEK):
    return Touch(did, cid, sent, window, click, open_, holdout, names)


def test_click_beats_open_beats_delivery():
    touches = [touch(1, sent=T), touch(2, cid=2, sent=T + timedelta(hours=1), open_=T + timedelta(hours=2)),
               touch(3, cid=3, sent=T - timedelta(days=1), click=T + timedelta(hours=3))]
    got, rule = choose(T + timedelta(days=1), None, touches)
    assert (got.delivery_id, rule) == (3, "click")
    got, rule = choose(T + timedelta(days=1), None, touches[:2])
    assert (got.delivery_id, rule) == (2, "open")
    got, rule = choose(T + timedelta(days=1), None, touches[:1])
    assert (got.delivery_id, rule) == (1, "delivery")


def test_window_edges_are_inclusive_and_touches_after_the_order_do_not_count():
    t = [touch(1, sent=T)]
    assert choose(T + WEEK, None, t)[0].delivery_id == 1
    assert choose(T + WEEK + timedelta(seconds=1), None, t) is None
    assert choose(T - timedelta(seconds=1), None, t) is None
    late_click = [touch(1, sent=T, click=T + timedelta(days=2))]
    assert choose(T + timedelta(days=1), None, late_click)[1] == "delivery"  # clicked only after buying


def test_two_campaigns_competing_latest_touch_of_the_best_kind_wins():
    a = touch(1, cid=1, sent=T, click=T + timedelta(hours=1))
    b = touch(2, cid=2, sent=T + timedelta(hours=2), click=T + timedelta(hours=3))
    assert choose(T + timedelta(hours=5), None, [a, b])[0].campaign_id == 2
    assert choose(T + timedelta(hours=2, minutes=30), None, [a, b])[0].campaign_id == 1  # b not clicked yet


def test_utm_names_the_campaign_and_holdout_is_the_fallback():
    a = touch(1, cid=1, sent=T, click=T + timedelta(hours=1), names=("spring",))
    b = touch(2, cid=2, sent=T + timedelta(hours=2), names=("winter", "utm-winter"))
    assert choose(T + timedelta(hours=5), "utm-winter", [a, b])[1] == "utm"
    assert choose(T + timedelta(hours=5), "utm-winter", [a, b])[0].delivery_id == 2
    held = touch(9, cid=3, sent=T, holdout=True)
    assert choose(T + timedelta(days=2), None, [held]) == (held, "holdout")
    assert choose(T + timedelta(days=2), None, [held, a])[0].delivery_id == 1  # a real touch wins
    assert choose(T + timedelta(days=8), None, [held]) is None


def _history(app):
    """Two campaigns and a holdout, written straight to the tables."""
    with app.session() as s:
        seg = Segment(name="all", definition='email contains "@"')
        s.add(seg)
        s.flush()
        ids = [s.execute(insert(Contact).values(email=f"c{i}@example.com", attributes={}, tags=[])).inserted_primary_key[0]
               for i in range(3)]
        camps = []
        for name in ("spring", "summer"):
            c = Campaign(name=name, channel="email", segment_id=seg.id, schedule_kind="manual", variants=[], steps=[],
                         utm={"campaign": name}, attribution_window_seconds=7 * 86400)
            s.add(c)
            s.flush()
            run = CampaignRun(campaign_id=c.id, scheduled_for=T, status="planned", counts={})
            s.add(run)
            s.flush()
            camps.append((c, run))
        (spring, r1), (summer, r2) = camps
        def deliver(c, run, contact, sent, holdout=False):
            d = Delivery(run_id=run.id, campaign_id=c.id, contact_id=contact, channel="email", is_holdout=holdout,
                         state="held_out" if holdout else "sent", due_at=sent, sent_at=None if holdout else sent)
            s.add(d)
            s.flush()
            return d
        d1 = deliver(spring, r1, ids[0], T)
        d2 = deliver(summer, r2, ids[0], T + timedelta(days=1))
        deliver(spring, r1, ids[1], T, holdout=True)
        s.add(Event(delivery_id=d1.id, campaign_id=spring.id, contact_id=ids[0], type="click", occurred_at=T + timedelta(hours=1), dedup_key="k1"))
        s.add(Event(delivery_id=d2.id, campaign_id=summer.id, contact_id=ids[0], type="open", occurred_at=T + timedelta(days=1, hours=1), dedup_key="k2"))
        s.add(Event(delivery_id=d2.id, campaign_id=summer.id, contact_id=ids[0], type="open", occurred_at=T + timedelta(days=1),
                    is_machine=True, dedup_key="k3"))
        orders = [("o1", ids[0], 5000, T + timedelta(days=2), None),   # click (spring) beats open (summer)
                  ("o2", ids[0], 1000, T + timedelta(days=2), "summer"),  # utm names summer
                  ("o3", ids[1], 3000, T + timedelta(days=3), None),   # holdout member
                  ("o4", ids[2], 9999, T + timedelta(days=3), None),   # never touched
                  ("o5", ids[0], 700, T + timedelta(days=20), None)]   # outside every window
        for oid, cid, cents, at, utm in orders:
            s.add(Purchase(order_id=oid, contact_id=cid, amount_cents=cents, currency="USD", occurred_at=at, utm_campaign=utm))
        s.flush()
        return spring.id, summer.id


def _credits(app):
    with app.session() as s:
        return {p: (c, rule, cents, hold) for p, c, rule, cents, hold in s.execute(
            select(Purchase.order_id, Campaign.name, Attribution.rule, Attribution.credited_cents, Attribution.is_holdout)
            .join(Attribution, Attribution.purchase_id == Purchase.id).join(Campaign, Campaign.id == Attribution.campaign_id))}


EXPECTED = {"o1": ("spring", "click", 5000, False), "o2": ("summer", "utm", 1000, False),
            "o3": ("spring", "holdout", 3000, True)}


def test_credits_on_a_hand_built_timeline_and_recompute_is_stable(app):
    spring, _summer = _history(app)
    with app.session() as s:
        ids = list(s.scalars(select(Purchase.id)))
        attribute_purchases(s, app.settings, ids)
        attribute_purchases(s, app.settings, ids)  # at most once
    assert _credits(app) == EXPECTED
    with app.session() as s:
        recompute_campaign(s, app.settings, spring)
    assert _credits(app) == EXPECTED
