"""Send-time math: recipient local time across zones and DST, quiet hours, throttle."""

from datetime import UTC, datetime, timedelta

from campaigns.timespec import parse_clock_range
from scheduler.sendtime import due_time, throttle, wall_clock_in, zone

QUIET = parse_clock_range("21:00-08:00")


def test_local_time_sends_at_the_same_wall_clock_in_each_zone():
    firing = datetime(2026, 11, 30, 19, 0, tzinfo=UTC)  # 14 h before 09:00 in the earliest zone
    clock = datetime(2026, 12, 1, 9, 0)
    got = {tz: due_time(firing, contact_tz=tz, campaign_tz="UTC", local_time=True, local_clock=clock, quiet=None)
           for tz in ("Asia/Tokyo", "Europe/Paris", "America/New_York")}
    assert got["Asia/Tokyo"] == datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
    assert got["Europe/Paris"] == datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    assert got["America/New_York"] == datetime(2026, 12, 1, 14, 0, tzinfo=UTC)


def test_unknown_contact_zone_falls_back_to_the_campaign_zone_not_the_server():
    firing = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)
    clock = datetime(2026, 12, 1, 9, 0)
    for bad in (None, "", "Mars/Base"):
        assert due_time(firing, contact_tz=bad, campaign_tz="Europe/Berlin", local_time=True, local_clock=clock,
                        quiet=None) == datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def test_local_time_across_a_daylight_saving_change():
    # New York springs forward on 2026-03-08: 09:00 is 14:00 UTC the day before, 13:00 UTC that day.
    ny = zone("America/New_York", "UTC")
    assert wall_clock_in(datetime(2026, 3, 7, 9, 0), ny) == datetime(2026, 3, 7, 14, 0, tzinfo=UTC)
    assert wall_clock_in(datetime(2026, 3, 8, 9, 0), ny) == datetime(2026, 3, 8, 13, 0, tzinfo=UTC)
    # 02:30 does not exist that night: it lands when the clocks change (03:00 EDT), never before,
    # and never after a later wall-clock time (03:15 stays after it).
    assert wall_clock_in(datetime(2026, 3, 8, 2, 30), ny) == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)
    assert wall_clock_in(datetime(2026, 3, 8, 2, 30), ny).astimezone(ny).hour == 3
    assert wall_clock_in(datetime(2026, 3, 8, 3, 15), ny) > wall_clock_in(datetime(2026, 3, 8, 2, 30), ny)


def test_quiet_hours_push_to_the_next_allowed_minute_in_the_recipients_zone():
    firing = datetime(2026, 12, 1, 20, 30, tzinfo=UTC)
    paris = due_time(firing, contact_tz="Europe/Paris", campaign_tz="UTC", local_time=False, local_clock=None, quiet=QUIET)
    assert paris == datetime(2026, 12, 2, 7, 0, tzinfo=UTC)  # 21:30 Paris -> 08:00 next morning
    tokyo = due_time(firing, contact_tz="Asia/Tokyo", campaign_tz="UTC", local_time=False, local_clock=None, quiet=QUIET)
    assert tokyo == datetime(2026, 12, 1, 23, 0, tzinfo=UTC)  # 05:30 Tokyo -> 08:00 the same morning
    ny = due_time(firing, contact_tz="America/New_York", campaign_tz="UTC", local_time=False, local_clock=None, quiet=QUIET)
    assert ny == firing  # 15:30 in New York: not quiet


def test_throttle_never_puts_more_than_the_rate_in_one_minute():
    start = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    spread = throttle([start] * 10, start, 3)
    per_minute = {}
    for t in spread:
        per_minute[t] = per_minute.get(t, 0) + 1
    assert max(per_minute.values()) == 3 and max(spread) == start + timedelta(minutes=3)
    assert throttle([start] * 5, start, None) == [start] * 5
