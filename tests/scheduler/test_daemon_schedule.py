"""The running daemon keeps the calendar: what the marketer saw go wrong (issue 18), one test each."""

import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from campaigns.store.models import Campaign, CampaignRun
from campaigns.timespec import utcnow
from tests.scheduler.conftest import add_people, make_campaign
from tests.scheduler.test_daemon import _app_with, _heartbeats, _start, _states, _wait


def _runs(app, cid):
    with app.session() as s:
        return list(s.scalars(select(CampaignRun.scheduled_for).where(CampaignRun.campaign_id == cid)))


def _stop(proc):
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    return out


def test_a_new_every_minute_cron_does_not_replay_the_past(make_app, smtp, tmp_path):
    app = _app_with(make_app, smtp)
    add_people(app, 2)
    cid = make_campaign(app, cron="* * * * *", grace="1h")
    with app.session() as s:
        created = s.get(Campaign, cid).created_at
    proc = _start(tmp_path / "config.toml")
    try:
        assert _wait(lambda: bool(_heartbeats(app)), 60)
        assert _wait(lambda: False, 3) is False  # the start-up catch-up and a first sync have run
    finally:
        out = _stop(proc)
    runs = _runs(app, cid)
    assert all(k > created for k in runs), (runs, out)  # today: 61 firings back to an hour before it existed
    assert len(runs) <= 2 and len(smtp.message_ids) <= 2 * len(runs)


def test_a_local_time_one_off_due_within_14_hours_is_sent(make_app, smtp, tmp_path):
    app = _app_with(make_app, smtp)
    add_people(app, 2, tz="UTC")
    at = (utcnow() + timedelta(seconds=8)).strftime("%Y-%m-%d %H:%M:%S")
    make_campaign(app, at=at, local_time=True)
    proc = _start(tmp_path / "config.toml")
    try:
        assert _wait(lambda: _states(app)["sent"] == 2, 90), _states(app)  # today: never planned, no run, no "missed"
    finally:
        _stop(proc)
    assert len(smtp.message_ids) == 2


def test_send_now_leaves_the_future_firing_scheduled_across_a_daemon_start(make_app, smtp, tmp_path):
    app = _app_with(make_app, smtp)
    add_people(app, 2)
    cid = make_campaign(app, at="2030-06-01 09:00")
    sent = subprocess.run([sys.executable, "-m", "campaigns", "--config", str(tmp_path / "config.toml"), "send", "promo", "--now"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert sent.returncode == 0, sent.stderr
    proc = _start(tmp_path / "config.toml")
    try:
        assert _wait(lambda: _states(app)["sent"] == 2, 90), _states(app)
        assert _wait(lambda: bool(_heartbeats(app)), 60)
    finally:
        _stop(proc)
    with app.session() as s:
        assert s.get(Campaign, cid).status == "scheduled"  # today: "completed", the 2030 firing never happens
    from scheduler.firings import next_key

    with app.session() as s:
        assert next_key(s.get(Campaign, cid), utcnow()) == datetime(2030, 6, 1, 9, 0, tzinfo=UTC)
