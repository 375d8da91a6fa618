"""The daemon as a real process: one per database, clean SIGTERM, SIGKILL mid-run loses nothing."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta

from sqlalchemy import func, select

from campaigns.models import Delivery
from campaigns.timespec import utcnow
from tests.scheduler.conftest import add_people, make_campaign

FAST = "poll_seconds = 0.2\nlease_seconds = 3\nbatch_size = 50\n"


def _start(config, *extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNS_")}
    return subprocess.Popen([sys.executable, "-m", "campaigns", "--config", str(config), "daemon", "--no-tracking", *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _states(app):
    with app.session() as s:
        return Counter(dict(s.execute(select(Delivery.state, func.count()).group_by(Delivery.state)).all()))


def _wait(predicate, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _app_with(make_app, smtp):
    toml = smtp.config_toml().replace("[sending]\n", "[sending]\n" + FAST)
    return make_app(toml)


def test_a_second_daemon_is_refused_and_sigterm_stops_cleanly(make_app, smtp, tmp_path):
    app = _app_with(make_app, smtp)
    first = _start(tmp_path / "config.toml")
    try:
        assert _wait(lambda: bool(_heartbeats(app)), 30)  # the first daemon announces itself
        second = subprocess.run([sys.executable, "-m", "campaigns", "--config", str(tmp_path / "config.toml"), "daemon", "--no-tracking"],
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert "another daemon is already running" in second.stderr and "Traceback" not in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        out, _ = first.communicate(timeout=30)
    assert first.returncode == 0, out
    assert "daemon stopped" in out
    assert _heartbeats(app) == []  # a clean stop removes its heartbeat


def _heartbeats(app):
    from campaigns.models import ProcessHeartbeat

    with app.session() as s:
        return list(s.scalars(select(ProcessHeartbeat.role)))


def test_sigkill_during_planning_and_sending_never_sends_twice(make_app, smtp, tmp_path):
    app = _app_with(make_app, smtp)
    members = add_people(app, 1500)
    make_campaign(app, at=(utcnow() + timedelta(seconds=4)).strftime("%Y-%m-%d %H:%M:%S"))
    config = tmp_path / "config.toml"
    kills = 0
    proc = _start(config)
    try:
        # Kill 1: around the firing, while planning (planning is one transaction: all or nothing).
        time.sleep(5.0)
        proc.kill(); proc.wait(); kills += 1
        # Kills 2 and 3: in the middle of sending.
        for target in (300, 900):
            proc = _start(config)
            assert _wait(lambda: _states(app)["sent"] >= target, 90), _states(app)
            proc.kill(); proc.wait(); kills += 1
        proc = _start(config)
        assert _wait(lambda: not ({"queued", "claimed", "sending", "retry_wait"} & set(+_states(app))), 120), _states(app)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    with app.session() as s:
        per_contact = Counter(s.scalars(select(Delivery.contact_id)))
    assert set(per_contact) == set(members) and set(per_contact.values()) == {1}  # exactly one row each
    states = _states(app)
    assert set(states) <= {"sent", "unknown"}
    assert states["unknown"] <= kills * app.settings.sending.concurrency  # at most one wave in flight per kill
    ids = smtp.message_ids
    assert len(ids) == len(set(ids))  # no message twice
    assert len(ids) >= states["sent"]
