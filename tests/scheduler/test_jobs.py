"""Firings on a controllable clock: one-off, cron, catch-up and missed, pause/resume, drips."""

from datetime import UTC, datetime, timedelta

import time_machine
from sqlalchemy import select

from campaigns.campaign_defs import set_status
from campaigns.store.models import Campaign, CampaignRun, Delivery
from scheduler.jobs import tick
from tests.scheduler.conftest import add_people, make_campaign

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def _runs(app, cid):
    with app.session() as s:
        return [(r.scheduled_for, r.status) for r in s.scalars(
            select(CampaignRun).where(CampaignRun.campaign_id == cid).order_by(CampaignRun.scheduled_for))]


def test_one_off_fires_once_at_its_time_then_completes(make_app):
    app = make_app()
    add_people(app, 3)
    with time_machine.travel(T0, tick=False):
        cid = make_campaign(app, at="2026-12-01 09:00")
    assert tick(app, T0 + timedelta(minutes=59)).planned == []
    report = tick(app, T0 + timedelta(hours=1, seconds=5))
    assert [(n, k) for n, k, _ in report.planned] == [("promo", datetime(2026, 12, 1, 9, 0, tzinfo=UTC))]
    assert tick(app, T0 + timedelta(hours=2)).planned == []
    assert _runs(app, cid) == [(datetime(2026, 12, 1, 9, 0, tzinfo=UTC), "planned")]
    with app.session() as s:
        s.execute(Delivery.__table__.update().values(state="sent"))
    assert tick(app, T0 + timedelta(hours=3)).completed == ["promo"]


def test_cron_fires_each_period_and_catches_up_only_inside_grace(make_app):
    app = make_app()
    add_people(app, 2)
    with time_machine.travel(T0, tick=False):
        cid = make_campaign(app, cron="0 10 * * *", grace="2h")
    tick(app, datetime(2026, 12, 1, 10, 0, 1, tzinfo=UTC))
    # The daemon is down for two days; it comes back at 11:30 on the 3rd.
    tick(app, datetime(2026, 12, 3, 11, 30, tzinfo=UTC))
    assert _runs(app, cid) == [
        (datetime(2026, 12, 1, 10, 0, tzinfo=UTC), "planned"),
        (datetime(2026, 12, 2, 10, 0, tzinfo=UTC), "missed"),
        (datetime(2026, 12, 3, 10, 0, tzinfo=UTC), "planned"),
    ]


def test_paused_campaign_does_not_fire_until_resumed(make_app):
    app = make_app()
    add_people(app, 2)
    with time_machine.travel(T0, tick=False):
        cid = make_campaign(app, at="2026-12-01 09:00", grace="1h")
    with app.session() as s:
        set_status(s, "promo", "pause")
    assert tick(app, T0 + timedelta(hours=1, minutes=1)).planned == []
    with app.session() as s:
        set_status(s, "promo", "resume")
    assert len(tick(app, T0 + timedelta(hours=1, minutes=2)).planned) == 1
    assert len(_runs(app, cid)) == 1


def test_drip_steps_count_from_when_each_contact_enters(make_app):
    app = make_app()
    first = add_people(app, 2, prefix="early")
    with time_machine.travel(T0, tick=False):
        cid = make_campaign(app, "drip", steps=["0d:welcome", "3d:newsletter"])
    tick(app, T0)
    later = add_people(app, 1, prefix="late")
    tick(app, T0 + timedelta(days=1))
    tick(app, T0 + timedelta(days=1, minutes=1))  # nothing new: nothing added
    with app.session() as s:
        rows = list(s.scalars(select(Delivery).where(Delivery.campaign_id == cid)))
    due = {(r.contact_id, r.step): r.due_at for r in rows}
    assert len(rows) == 6
    assert due[(first[0], 0)] == T0 and due[(first[0], 1)] == T0 + timedelta(days=3)
    assert due[(later[0], 0)] == T0 + timedelta(days=1) and due[(later[0], 1)] == T0 + timedelta(days=4)
    assert {r.template_name for r in rows if r.step == 1} == {"newsletter"}


def test_a_firing_is_never_planned_twice_even_when_ticks_overlap(make_app):
    app = make_app()
    add_people(app, 3)
    with time_machine.travel(T0, tick=False):
        cid = make_campaign(app, at="2026-12-01 09:00")
    at = T0 + timedelta(hours=1, seconds=1)
    for _ in range(3):
        tick(app, at)
    with app.session() as s:
        assert len(list(s.scalars(select(Delivery).where(Delivery.campaign_id == cid)))) == 3
        assert s.get(Campaign, cid).status == "scheduled"
