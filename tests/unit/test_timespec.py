"""The small notations marketers type: durations, caps, quiet hours, dates."""

from datetime import UTC, datetime, time, timedelta

import pytest

from campaigns.errors import InputError
from campaigns.timespec import (
    format_duration,
    parse_cap,
    parse_clock_range,
    parse_datetime,
    parse_duration,
)


def test_durations_parse_and_format_round_trip():
    assert parse_duration("90m") == timedelta(minutes=90)
    assert parse_duration("7d") == timedelta(days=7)
    assert format_duration(timedelta(days=14)) == "2w"
    assert format_duration(timedelta(minutes=90)) == "90m"


@pytest.mark.parametrize("bad", ["", "7", "d7", "-1d", "7 days", "1.5h"])
def test_bad_durations_are_refused(bad):
    with pytest.raises(InputError):
        parse_duration(bad)


def test_caps_parse_and_none_means_no_cap():
    cap = parse_cap("2/7d")
    assert (cap.count, cap.window) == (2, timedelta(days=7)) and str(cap) == "2/1w"
    assert parse_cap("none") is None and parse_cap("") is None
    for bad in ("0/7d", "2/0d", "two/7d", "2-7d"):
        with pytest.raises(InputError):
            parse_cap(bad)


def test_quiet_hours_wrap_midnight():
    q = parse_clock_range("21:00-08:00")
    assert q.contains(time(22, 30)) and q.contains(time(7, 59)) and q.contains(time(21, 0))
    assert not q.contains(time(8, 0)) and not q.contains(time(12, 0))
    day = parse_clock_range("12:00-13:00")
    assert day.contains(time(12, 30)) and not day.contains(time(13, 0))
    with pytest.raises(InputError):
        parse_clock_range("25:00-08:00")


def test_dates_are_read_in_the_given_zone_and_returned_in_utc():
    assert parse_datetime("2026-01-31 09:00", "Europe/Paris") == datetime(2026, 1, 31, 8, 0, tzinfo=UTC)
    assert parse_datetime("2026-06-01T00:00:00Z") == datetime(2026, 6, 1, tzinfo=UTC)
    ago = parse_datetime("30d ago")
    assert abs((datetime.now(UTC) - ago) - timedelta(days=30)) < timedelta(seconds=5)
    with pytest.raises(InputError, match="not a date"):
        parse_datetime("31/01/2026")
