"""What the calendar says, on a controllable clock: firings from creation on, catch-up after
downtime, local time within the first 14 hours, the late policy, extra runs, failed planning."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

import scheduler.jobs
from campaigns.campaign_defs import CampaignSpec, edit_campaign
from campaigns.errors import InputError
from campaigns.store.models import Campaign, CampaignRun, Delivery
from scheduler.jobs import next_fire_times, tick
from scheduler.planner import plan_firing
from tests.scheduler.conftest import add_people, make_campaign

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def _runs(app, cid):
    with app.session() as s:
        return [(r.scheduled_for, r.status, r.counts) for r in s.scalars(
            select(CampaignRun).where(CampaignRun.campaign_id == cid).order_by(CampaignRun.scheduled_for))]


def _dues(app, cid):
    with app.session() as s:
        return {r.contact_id: r.due_at for r in s.scalars(select(Delivery).where(Delivery.campaign_id == cid))}


def test_a_new_every_minute_cron_never_fires_for_minutes_before_it_existed(make_app):
    app = make_app()
    add_people(app, 2)
    with time_machine.travel(T0 + timedelta(seconds=30), tick=False):
        cid = make_campaign(app, cron="* * * * *", grace="2h")
    assert tick(app, T0 + timedelta(seconds=40)).planned == []
    tick(app, T0 + timedelta(minutes=1, seconds=1))
    assert [(k, st) for k, st, _ in _runs(app, cid)] == [(T0 + timedelta(minutes=1), "planned")]


def test_a_daily_cron_created_after_todays_time_waits_for_tomorrow(make_app):
    app = make_app()
    add_people(app, 2)
    created = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)
    with time_machine.travel(created, tick=False):
        cid = make_campaign(app, cron="30 13 * * *", grace="2h")
    assert tick(app, created + timedelta(seconds=5)).planned == []
    assert _runs(app, cid) == []
    tick(app, datetime(2026, 12, 2, 13, 30, 1, tzinfo=UTC))
    assert [k for k, _st, _c in _runs(app, cid)] == [datetime(2026, 12, 2, 13, 30, tzinfo=UTC)]


def test_after_downtime_only_the_latest_firing_inside_grace_runs_and_says_it_caught_up(make_app, caplog):
    app = make_app()
    add_people(app, 2)
    with time_machine.travel(T0, tick=False):
        cid = make_campaign(app, cron="0 * * * *", grace="3h")
    tick(app, T0 + timedelta(hours=1, seconds=1))  # 09:00 fires on time
    caplog.set_level("INFO", logger="campaigns.scheduler")
    tick(app, datetime(2026, 12, 1, 14, 30, tzinfo=UTC))  # the daemon was down from 09:01 to 14:30
    runs = {k.hour: (st, c) for k, st, c in _runs(app, cid)}
    assert [(h, runs[h][0]) for h in sorted(runs)] == [
        (9, "planned"), (10, "missed"), (11, "missed"), (12, "missed"), (13, "missed"), (14, "planned")]
    assert "beyond the 3h grace window" in runs[10][1]["reason"] and "beyond" in runs[11][1]["reason"]
    assert "superseded by the later firing" in runs[12][1]["reason"] and "superseded" in runs[13][1]["reason"]
    assert runs[14][1]["caught_up"] is True and runs[14][1]["late_by_seconds"] == 1800
    assert "caught up" in caplog.text
    with app.session() as s:  # two firings sent, never the four skipped ones
        assert s.query(Delivery).filter(Delivery.campaign_id == cid).count() == 4


def test_a_local_time_one_off_due_within_14_hours_fires_and_late_zones_follow_the_policy(make_app):
    app = make_app()
    utc = add_people(app, 1, tz="UTC", prefix="utc")
    tokyo = add_people(app, 1, tz="Asia/Tokyo", prefix="tokyo")  # 10:00 in Tokyo was 01:00 UTC: already gone at 08:00
    ny = add_people(app, 1, tz="America/New_York", prefix="ny")
    with time_machine.travel(T0, tick=False):
        skip = make_campaign(app, "skip", at="2026-12-01 10:00", local_time=True)
        send = make_campaign(app, "send", at="2026-12-01 10:00", local_time=True, late="send")
    report = tick(app, T0 + timedelta(seconds=5))
    assert sorted(n for n, _k, _c in report.planned) == ["send", "skip"]
    assert _dues(app, skip) == {utc[0]: datetime(2026, 12, 1, 10, 0, tzinfo=UTC), ny[0]: datetime(2026, 12, 1, 15, 0, tzinfo=UTC)}
    assert _runs(app, skip)[0][2]["skipped"]["late"] == 1
    assert _dues(app, send)[tokyo[0]] == T0 + timedelta(seconds=5)  # --late send: at once
    assert _runs(app, send)[0][2]["skipped"]["late"] == 0


def test_a_local_time_daily_cron_created_mid_day_fires_for_the_zones_still_ahead(make_app):
    app = make_app()
    add_people(app, 1, tz="UTC", prefix="utc")
    west = add_people(app, 1, tz="Pacific/Pago_Pago", prefix="pago")  # UTC-11: 09:00 there is 20:00 UTC
    created = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    with time_machine.travel(created, tick=False):
        cid = make_campaign(app, cron="0 9 * * *", local_time=True)
    tick(app, created + timedelta(seconds=1))
    runs = _runs(app, cid)
    assert [(k, st) for k, st, _ in runs] == [(datetime(2026, 12, 1, 9, 0, tzinfo=UTC), "planned")]
    assert _dues(app, cid) == {west[0]: datetime(2026, 12, 1, 20, 0, tzinfo=UTC)}
    assert runs[0][2]["skipped"]["late"] == 1


def test_an_at_in_the_past_is_refused_in_one_line(make_app):
    app = make_app()
    with time_machine.travel(T0, tick=False):
        with pytest.raises(InputError, match=r"--at: '2026-12-01 07:59' is in the past"):
            make_campaign(app, at="2026-12-01 07:59")
        cid = make_campaign(app, "ok", at="2026-12-01 09:00")
        with app.session() as s, pytest.raises(InputError, match="in the past"):
            edit_campaign(s, app.settings, "ok", CampaignSpec(at="2026-11-30 09:00"))
        # local time: still ahead in the western zones, so accepted (late zones follow --late)
        make_campaign(app, "local", at="2026-12-01 07:00", local_time=True)
    assert cid


def test_send_now_is_an_extra_run_and_keeps_the_schedule(make_app):
    app = make_app()
    add_people(app, 2)
    with time_machine.travel(T0, tick=False):
        cid = make_campaign(app, at="2030-01-01 09:00")
        with app.session() as s:
            plan_firing(s, app.settings, s.get(Campaign, cid), T0, T0, extra=True)
    tick(app, T0 + timedelta(minutes=1))
    with app.session() as s:
        s.execute(Delivery.__table__.update().values(state="sent"))
    tick(app, T0 + timedelta(minutes=2))
    with app.session() as s:
        assert s.get(Campaign, cid).status == "scheduled"
        assert [(c.id, at) for c, at in next_fire_times(s, T0)] == [(cid, datetime(2030, 1, 1, 9, 0, tzinfo=UTC))]
    tick(app, datetime(2030, 1, 1, 9, 0, 1, tzinfo=UTC))
    assert [st for _k, st, _c in _runs(app, cid)] == ["planned", "planned"]


def test_a_failed_planning_is_retried_on_the_next_tick_and_says_why(make_app, monkeypatch):
    app = make_app()
    add_people(app, 2)
    with time_machine.travel(T0, tick=False):
        cid = make_campaign(app, at="2026-12-01 09:00")
    real = scheduler.jobs.plan_firing
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("INSERT INTO delivery ...", {}, Exception("database is locked"))
        return real(*args, **kwargs)

    monkeypatch.setattr(scheduler.jobs, "plan_firing", flaky)
    first = tick(app, T0 + timedelta(hours=1, seconds=1))
    assert first.planned == [] and first.failed and "planning failed" in first.failed[0][1]
    with app.session() as s:
        c = s.get(Campaign, cid)
        assert "planning failed" in c.status_reason and "OperationalError" in c.status_reason
        assert c.updated_at == T0 + timedelta(hours=1, seconds=1)  # the daemon's sync sees a change and ticks again
    second = tick(app, T0 + timedelta(hours=1, seconds=20))
    assert [n for n, _k, _c in second.planned] == ["promo"]
    with app.session() as s:
        assert s.get(Campaign, cid).status_reason is None
