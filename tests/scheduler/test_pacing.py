"""Pacing at hand-over: throttles per campaign, in all and per domain, shared through the
database by every worker; the frequency cap for every marketing message."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from campaigns.store.models import Campaign, Delivery
from campaigns.timespec import utcnow
from scheduler.pacing import Row, admit, defer
from scheduler.planner import plan_drip, plan_firing
from tests.scheduler.conftest import add_people, make_campaign

T = datetime(2026, 12, 1, 9, 0, 10, tzinfo=UTC)


def _claimed(app, cid):
    """Plan a firing and take its rows as a worker's claim would."""
    with app.session() as s:
        c = s.get(Campaign, cid)
        if c.schedule_kind == "drip":  # a drip has no firing: its contacts enrol, each step a row
            plan_drip(s, app.settings, c, T - timedelta(minutes=5))
        else:
            plan_firing(s, app.settings, c, T - timedelta(minutes=5), T - timedelta(minutes=5))
        s.execute(update(Delivery).where(Delivery.campaign_id == cid).values(state="claimed", attempts=1))
        return [Row(d.id, d.campaign_id, d.contact_id) for d in s.scalars(select(Delivery).where(Delivery.campaign_id == cid).order_by(Delivery.id))]


def _hand_over(app, rows, now):
    """One worker's hand-over transaction: admitted rows become `sending`, the others wait in the queue."""
    with app.engine.begin() as conn:
        go, wait = admit(conn, app.settings, rows, now)
        defer(conn, wait, now)
        conn.execute(update(Delivery).where(Delivery.id.in_(go)).values(state="sending", updated_at=now))
    return go, wait


def test_a_campaign_throttle_holds_across_workers_and_minutes(make_app):
    app = make_app()
    add_people(app, 150)
    rows = _claimed(app, make_campaign(app, throttle="50/min"))
    go, wait = _hand_over(app, rows[:100], T)  # worker one
    assert len(go) == 50 and {w[0] for w in wait.values()} == {datetime(2026, 12, 1, 9, 1, tzinfo=UTC)}
    go2, _ = _hand_over(app, rows[100:], T + timedelta(seconds=30))  # worker two, the same minute: nothing left
    assert go2 == []
    with app.session() as s:
        waiting = list(s.scalars(select(Delivery).where(Delivery.state == "queued")))
    assert len(waiting) == 100 and all(d.attempts == 0 and "throttle" in d.error for d in waiting)
    go3, _ = _hand_over(app, [Row(d.id, d.campaign_id, d.contact_id) for d in waiting], T + timedelta(minutes=1))
    assert len(go3) == 50


def test_global_and_per_domain_limits(make_app):
    app = make_app("[sending]\nmax_per_minute = 30\n")
    add_people(app, 40)
    rows = _claimed(app, make_campaign(app))
    go, _ = _hand_over(app, rows, T)
    assert len(go) == 30
    other = make_app('[sending]\ndomain_limits = { "EXAMPLE.com" = 10 }\n')  # the same database, another config
    go, wait = _hand_over(other, [r for r in rows if r.id not in go], T + timedelta(minutes=1))
    assert len(go) == 10 and all("domain:example.com" in why for _, why in wait.values())


def test_a_drip_step_waits_until_the_cap_has_room(make_app):
    app = make_app()
    people = add_people(app, 2)
    step = _claimed(app, make_campaign(app, "drip", steps=["3d:welcome"], cap="3/7d"))  # enrolled before the sends below
    news = make_campaign(app, "news", cap="none")
    sent_times = [T - timedelta(days=3), T - timedelta(days=2), T - timedelta(days=1)]
    with app.session() as s:  # contact 0 had three marketing messages in the last three days
        # Planned now, on the firing of three days before T: the consent given just now (by the
        # real clock, which passes T - 3 days on 2026-11-28) must be on the ledger when planning looks.
        plan_firing(s, app.settings, s.get(Campaign, news), sent_times[0], max(utcnow(), sent_times[0]))
        first, second = s.scalars(select(Delivery).where(Delivery.campaign_id == news).order_by(Delivery.contact_id))
        first.state, first.sent_at = "sent", sent_times[0]
        second.state = "cancelled"
        for n, at in enumerate(sent_times[1:], start=1):
            s.add(Delivery(run_id=first.run_id, campaign_id=news, contact_id=people[0], channel="email", step=n,
                           state="sent", sent_at=at, attempts=1, due_at=at, created_at=at, updated_at=at))
    go, wait = _hand_over(app, step, T)
    assert go == [r.id for r in step if r.contact_id == people[1]]
    (until, why), = wait.values()
    assert until == sent_times[0] + timedelta(days=7) and "frequency cap 3" in why
