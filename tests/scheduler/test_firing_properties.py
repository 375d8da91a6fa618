"""Properties of the schedule over many zones and their DST changes, on a controllable clock.

Every firing is planned exactly once, never for a moment before the campaign was created,
at the right local time (a skipped time fires when the clocks change, a repeated one once),
and no message is due inside the recipient's quiet hours.
"""

from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise, takewhile
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import time_machine
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from campaigns.store.models import CampaignRun, Contact, Delivery
from campaigns.timespec import parse_clock_range
from scheduler.firings import fire_at, iter_keys, keys_between
from scheduler.jobs import tick
from scheduler.sendtime import due_time, is_quiet, push_out_of_quiet, zone
from tests.scheduler.conftest import add_people, make_campaign

ZONES = ["America/New_York", "Europe/London", "Australia/Lord_Howe", "Asia/Kathmandu", "Pacific/Kiritimati",
         "Pacific/Pago_Pago", "UTC", "America/Santiago", "Asia/Tokyo"]
# Days on which some of these zones change their clocks (spring and autumn, both hemispheres).
CHANGES = [date(2027, 3, 14), date(2027, 3, 28), date(2027, 4, 4), date(2027, 10, 3), date(2027, 10, 31),
           date(2027, 11, 7), date(2027, 9, 5), date(2027, 4, 3)]


def _campaign(tz: str, cron: str, created: datetime, local_time: bool = False) -> SimpleNamespace:
    return SimpleNamespace(schedule_kind="cron", cron=cron, timezone=tz, local_time=local_time, send_at=None,
                           created_at=created, activated_at=None)


def _wall(at: datetime, tz: str) -> datetime:
    return at.astimezone(ZoneInfo(tz)).replace(tzinfo=None)


def _expected_local(day: date, clock: time, tz: ZoneInfo) -> datetime:
    """The instant a daily wall-clock time happens on `day`: itself, or when the clocks change if skipped."""
    naive = datetime.combine(day, clock)
    aware = naive.replace(tzinfo=tz).astimezone(UTC)
    if aware.astimezone(tz).replace(tzinfo=None) == naive:
        return aware
    t = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)  # before the gap; step to the change
    before = t.astimezone(tz).utcoffset()
    while t.astimezone(tz).utcoffset() == before:
        t += timedelta(minutes=1)
    return t


moments = st.builds(lambda d, minutes: datetime.combine(d, time(0), UTC) + timedelta(minutes=minutes),
                    st.sampled_from(CHANGES), st.integers(-36 * 60, 36 * 60))
clocks = st.sampled_from([time(2, 30), time(1, 30), time(2, 0), time(0, 15), time(9, 0), time(23, 45), time(3, 0)])


@settings(max_examples=300, deadline=None)
# Always tried: a daily 02:30 in New York across its spring-forward night (fires once, at 03:00),
# 01:30 across its autumn night (once, the first 01:30), and Lord Howe's half-hour change.
@example(tz="America/New_York", clock=time(2, 30), created=datetime(2027, 3, 12, 12, 0, tzinfo=UTC), gaps=[36 * 60, 36 * 60])
@example(tz="America/New_York", clock=time(1, 30), created=datetime(2027, 11, 5, 12, 0, tzinfo=UTC), gaps=[36 * 60, 36 * 60])
@example(tz="Australia/Lord_Howe", clock=time(2, 0), created=datetime(2027, 10, 2, 0, 0, tzinfo=UTC), gaps=[36 * 60, 36 * 60])
@given(tz=st.sampled_from(ZONES), clock=clocks, created=moments,
       gaps=st.lists(st.integers(1, 36 * 60), min_size=1, max_size=12))
def test_daily_cron_fires_once_a_local_day_never_before_creation_at_its_wall_clock(tz, clock, created, gaps):
    c = _campaign(tz, f"{clock.minute} {clock.hour} * * *", created)
    ticks, at = [created], created
    for g in gaps:
        at += timedelta(minutes=g)
        ticks.append(at)
    planned = []
    for start, end in pairwise(ticks):  # ticks partition time: each key found exactly once
        planned += keys_between(c, start, end)
    assert len(planned) == len(set(planned))
    assert planned == list(takewhile(lambda k: k <= ticks[-1], iter_keys(c)))
    assert all(k > created for k in planned)
    zi = ZoneInfo(tz)
    days = [_wall(k, tz).date() for k in planned]
    assert len(days) == len(set(days))  # once per local day, whatever the DST change did
    for k in planned:
        assert k == _expected_local(_wall(k, tz).date(), clock, zi)
    # and no local day between creation and the last tick was left out
    first = _wall(created, tz).date()
    for d in (first + timedelta(days=i) for i in range((_wall(ticks[-1], tz).date() - first).days + 1)):
        expected = _expected_local(d, clock, zi)
        if created < expected <= ticks[-1]:
            assert expected in planned


@settings(max_examples=300, deadline=None)
@given(contact_tz=st.sampled_from(ZONES), clock=clocks, day=st.sampled_from(CHANGES), created_offset=st.integers(-30, 30),
       quiet=st.sampled_from([None, "21:00-08:00", "22:00-07:30", "01:00-03:00"]))
def test_local_time_due_is_the_recipients_wall_clock_pushed_out_of_quiet_hours(contact_tz, clock, day, created_offset, quiet):
    key = datetime.combine(day, clock, UTC)  # the wall-clock time read as UTC
    c = SimpleNamespace(schedule_kind="once", cron=None, timezone="UTC", local_time=True, send_at=key,
                        created_at=key + timedelta(hours=created_offset), activated_at=None)
    plan = fire_at(c, key)
    assert plan >= c.created_at and plan >= key - timedelta(hours=14)
    quiet_range = parse_clock_range(quiet) if quiet else None
    due = due_time(plan, contact_tz=contact_tz, campaign_tz="UTC", local_time=True, local_clock=key.replace(tzinfo=None),
                   quiet=quiet_range)
    tz = zone(contact_tz, "UTC")
    assert due >= plan
    assert not is_quiet(due, tz, quiet_range)
    target = _expected_local(day, clock, tz)
    if target >= plan and not is_quiet(target, tz, quiet_range):
        assert due == target  # exactly the recipient's wall clock
    assert push_out_of_quiet(due, tz, quiet_range) == due


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tz=st.sampled_from(ZONES), clock=clocks, day=st.sampled_from(CHANGES), data=st.data())
def test_the_daemon_tick_plans_each_local_day_once_with_quiet_hours_kept(make_app, tz, clock, day, data):
    app = make_app()
    name = f"c{abs(hash((tz, clock, day))) % 10**9}-{data.draw(st.integers(0, 10**6))}"
    created = datetime.combine(day, time(0), UTC) - timedelta(hours=data.draw(st.integers(0, 30)))
    with app.session() as s:
        known = s.scalar(select(func.count(Contact.id)))
    if not known:
        for z in ZONES:
            add_people(app, 1, tz=z, prefix=f"{z.replace('/', '_')}_")
    with time_machine.travel(created, tick=False):
        cid = make_campaign(app, name, cron=f"{clock.minute} {clock.hour} * * *", timezone=tz, quiet_hours="22:00-07:00",
                            grace="1d")
    at, end = created, created + timedelta(days=3)
    while at < end:  # a daemon that ticks irregularly, never away longer than the grace window
        at += timedelta(minutes=data.draw(st.integers(45, 16 * 60)))  # at most 96 ticks: the suite stays quick on PostgreSQL
        tick(app, at, [cid])
    with app.session() as s:
        runs = list(s.scalars(select(CampaignRun).where(CampaignRun.campaign_id == cid)))
        rows = list(s.execute(select(Delivery.due_at, Delivery.contact_id, Delivery.run_id).where(Delivery.campaign_id == cid)))
        zones = dict(s.execute(select(Contact.id, Contact.timezone)).all())
    keys = [r.scheduled_for for r in runs]
    assert len(keys) == len(set(keys)) and all(k > created for k in keys)
    days = [_wall(k, tz).date() for k in keys]
    assert len(days) == len(set(days))
    assert {r.status for r in runs} <= {"planned"}
    quiet = parse_clock_range("22:00-07:00")
    for due, contact, _run in rows:
        assert not is_quiet(due, zone(zones[contact], tz), quiet)
