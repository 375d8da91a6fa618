"""What the sender enforces at hand-over, with the real dispatcher on a controllable clock:
throttles across resume and workers, the frequency cap for drips, statuses that move at once."""

import asyncio
from datetime import UTC, datetime, timedelta

import time_machine
from sqlalchemy import func, select

from campaigns.campaign_defs import set_status
from campaigns.store.models import Campaign, Delivery
from scheduler.dispatcher import Dispatcher
from scheduler.jobs import tick
from scheduler.planner import plan_firing
from tests.scheduler.conftest import add_people, make_campaign

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def _dispatch(app, now, worker="w1"):
    async def run():
        d = Dispatcher(app, worker_name=worker)
        try:
            return await d.dispatch_once(now)
        finally:
            await d.close()

    return asyncio.run(run())


def _sent(app, cid=None):
    with app.session() as s:
        q = select(func.count()).select_from(Delivery).where(Delivery.state == "sent")
        if cid is not None:
            q = q.where(Delivery.campaign_id == cid)
        return s.scalar(q)


def _status(app, cid):
    with app.session() as s:
        return s.get(Campaign, cid).status


def test_throttle_holds_after_pause_and_resume_and_across_workers(make_app):
    app = make_app()
    add_people(app, 150)
    with time_machine.travel(T0, tick=False):
        cid = make_campaign(app, throttle="50/min")
    with app.session() as s:  # planned, then paused before the sender got to it
        plan_firing(s, app.settings, s.get(Campaign, cid), T0, T0)
        set_status(s, "promo", "pause")
    later = T0 + timedelta(minutes=10)  # resumed ten minutes on: every row is due at once
    with app.session() as s:
        set_status(s, "promo", "resume")
    _dispatch(app, later, "w1")
    _dispatch(app, later + timedelta(seconds=20), "w2")  # a second worker, the same minute
    assert _sent(app) == 50  # today: all 150 in the same second
    _dispatch(app, later + timedelta(minutes=1), "w2")
    assert _sent(app) == 100
    with app.session() as s:
        waiting = list(s.scalars(select(Delivery).where(Delivery.state == "queued")))
    assert len(waiting) == 50 and all(d.due_at == datetime(2026, 12, 1, 8, 12, tzinfo=UTC) for d in waiting)


def test_a_drip_never_breaks_the_frequency_cap_its_later_steps_wait(make_app):
    app = make_app()
    people = add_people(app, 3)
    with time_machine.travel(T0, tick=False):
        drip = make_campaign(app, "drip", steps=["0d:welcome", "1d:newsletter", "2d:newsletter", "3d:newsletter"],
                             cap="3/7d")
    tick(app, T0)
    for day in range(4):
        _dispatch(app, T0 + timedelta(days=day, minutes=1))
    with app.session() as s:
        per_contact = dict(s.execute(select(Delivery.contact_id, func.count()).where(Delivery.state == "sent")
                                     .group_by(Delivery.contact_id)).all())
        fourth = list(s.scalars(select(Delivery).where(Delivery.step == 3)))
    assert per_contact == dict.fromkeys(people, 3)  # today: 4 within 3 days under 3/7d
    assert {d.state for d in fourth} == {"queued"} and {d.due_at for d in fourth} == {T0 + timedelta(days=7, minutes=1)}
    _dispatch(app, T0 + timedelta(days=7, minutes=1))
    assert _sent(app, drip) == 12  # it waited until it fit, then went out


def test_a_one_off_is_completed_and_a_manual_campaign_sent_as_their_last_row_is_final(make_app):
    app = make_app()
    add_people(app, 3)
    with time_machine.travel(T0, tick=False):
        once = make_campaign(app, "once", at="2026-12-01 09:00")
        manual = make_campaign(app, "manual")
    tick(app, T0 + timedelta(hours=1, seconds=1))
    with app.session() as s:
        plan_firing(s, app.settings, s.get(Campaign, manual), T0 + timedelta(hours=1), T0 + timedelta(hours=1), extra=True)
    assert (_status(app, once), _status(app, manual)) == ("scheduled", "draft")
    _dispatch(app, T0 + timedelta(hours=1, seconds=2))  # no tick after this: the sender itself moves them
    assert (_status(app, once), _status(app, manual)) == ("completed", "sent")
