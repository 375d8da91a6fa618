"""The daemon as a real process: one per database, clean SIGTERM, SIGKILL mid-run loses nothing."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta

from sqlalchemy import func, select

from campaigns.store.models import Delivery
from campaigns.timespec import utcnow
from tests.scheduler.conftest import add_people, make_campaign

BEAT = 0.5  # heartbeat_seconds: the tests wait on beats, so they beat ten times as often as the default
FAST = f"poll_seconds = 0.2\nlease_seconds = 3\nbatch_size = 50\nheartbeat_seconds = {BEAT}\n"


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
    from campaigns.store.models import ProcessHeartbeat

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
        proc.kill()
        proc.wait()
        kills += 1
        # Kills 2 and 3: in the middle of sending.
        for target in (300, 900):
            proc = _start(config)
            assert _wait(lambda target=target: _states(app)["sent"] >= target, 90), _states(app)
            proc.kill()
            proc.wait()
            kills += 1
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


def _lose_lock_session(app, db_url, tmp_path):
    """Take the daemon's lock session away: PostgreSQL ends the lock's backend (what a
    server restart does to it, without disturbing other users of the shared server);
    SQLite's lock file is removed (what a tmp cleaner or a careless `rm` does)."""
    if db_url.startswith("sqlite"):
        lock_file = (tmp_path / "campaigns.db").with_suffix(".daemon.lock")
        lock_file.unlink()
        return
    from sqlalchemy import text

    from scheduler.locks import advisory_key

    with app.engine.connect() as conn:
        key = advisory_key(conn.scalar(text("SELECT current_schema()")))
        pids = conn.scalars(text("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                                 "AND classid = :hi AND objid = :lo"),
                            {"hi": (key >> 32) & 0xFFFFFFFF, "lo": key & 0xFFFFFFFF}).all()
        assert len(pids) == 1, pids  # the running daemon holds it
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pids[0]})
        conn.commit()


def test_the_lock_survives_losing_its_session_and_two_daemons_never_run(make_app, smtp, tmp_path, db_url):
    app = _app_with(make_app, smtp)
    config = tmp_path / "config.toml"
    first = _start(config)
    procs = [first]
    try:
        assert _wait(lambda: bool(_heartbeats(app)), 60)
        _lose_lock_session(app, db_url, tmp_path)
        second = _start(config)
        procs.append(second)
        # Whoever wins the lock runs; the other stops (or is refused) with one clear line.
        assert _wait(lambda: first.poll() is not None or second.poll() is not None, 60), "two daemons are running"
        running = [p for p in procs if p.poll() is None]
        stopped = [p for p in procs if p.poll() is not None]
        assert len(running) == 1 and len(stopped) == 1
        out = stopped[0].communicate(timeout=30)[0]
        assert stopped[0].returncode == 1, out
        assert "another daemon" in out and "Traceback" not in out
        # And the lock is really held again: a third daemon is refused.
        third = subprocess.run([sys.executable, "-m", "campaigns", "--config", str(config), "daemon", "--no-tracking"],
                               check=False, capture_output=True, text=True, timeout=60)
        assert third.returncode == 1 and "another daemon is already running" in third.stderr
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.communicate(timeout=30)


def _start_worker(config, name):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNS_")}
    return subprocess.Popen([sys.executable, "-m", "campaigns", "--config", str(config), "worker", "--name", name],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _held_by(app, worker):
    with app.session() as s:
        return Counter(dict(s.execute(select(Delivery.state, func.count()).where(
            Delivery.claimed_by == worker, Delivery.state.in_(("claimed", "sending"))).group_by(Delivery.state)).all()))


def _plan_now(app, campaign_id):
    """Plan a manual campaign's run now, as `send --now` does."""
    from campaigns.store.models import Campaign
    from scheduler.planner import plan_firing

    now = utcnow()
    with app.session() as s:
        plan_firing(s, app.settings, s.get(Campaign, campaign_id), now.replace(microsecond=0), now)


def test_a_killed_workers_rows_return_to_the_queue_long_before_its_lease(make_app, smtp, tmp_path):
    # The default 300 s lease; the first two waves (3 messages each: two waves of half of
    # `concurrency` are out at a time) hang after their final dot, so the worker is killed
    # holding `concurrency` rows `sending` and the rest of its batch `claimed`.
    toml = smtp.config_toml(timeout=600).replace(
        "[sending]\n", f"[sending]\npoll_seconds = 0.2\nbatch_size = 50\nconcurrency = 6\nheartbeat_seconds = {BEAT}\n")
    app = make_app(toml)
    add_people(app, 30)
    smtp.hang_after_dot = {f"p{i}@example.com" for i in range(6)}
    _plan_now(app, make_campaign(app))
    config = tmp_path / "config.toml"
    doomed = _start_worker(config, "doomed")
    other = None
    try:
        assert _wait(lambda: _held_by(app, "doomed")["sending"] == 6, 90), _held_by(app, "doomed")
        doomed.kill()
        doomed.wait()
        other = _start_worker(config, "other")
        # The survivor sees the dead worker's heartbeat (same host, its pid gone) and releases
        # its rows: the 24 never handed over are sent now; the 6 in flight become `unknown`.
        assert _wait(lambda: _states(app) == Counter({"sent": 24, "unknown": 6}), 120), _states(app)
    finally:
        for p in (doomed, other):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.communicate(timeout=30)
    assert len(smtp.message_ids) == len(set(smtp.message_ids))


def _complaints(log_path):
    return [line for line in log_path.read_text().splitlines() if " WARNING " in line or " ERROR " in line]


def test_a_failing_heartbeat_is_one_line_a_minute_not_a_traceback_per_beat(make_app, smtp, tmp_path):
    from sqlalchemy import text

    app = _app_with(make_app, smtp)
    log_path = tmp_path / "daemon.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNS_")}
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "campaigns", "--config", str(tmp_path / "config.toml"), "daemon",
                                 "--no-tracking"], env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        assert _wait(lambda: bool(_heartbeats(app)), 60)
        with app.engine.begin() as conn:  # the heartbeat's table is gone: every beat fails from now on
            conn.execute(text("ALTER TABLE process_heartbeat RENAME TO heartbeat_away"))
        assert _wait(lambda: any("heartbeat failed" in line for line in _complaints(log_path)), 60), log_path.read_text()
        time.sleep(BEAT * 8)  # several more beats fail meanwhile
        with app.engine.begin() as conn:
            conn.execute(text("ALTER TABLE heartbeat_away RENAME TO process_heartbeat"))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    out = log_path.read_text()
    # One line for the condition, not one per beat. (On a loaded machine another condition may
    # be logged meanwhile, e.g. the SQLite lock check meeting the table rename: not this test's.)
    assert len([line for line in _complaints(log_path) if "heartbeat failed" in line]) == 1, out
    assert "Traceback" not in out and "[SQL" not in out and "parameters" not in out, out


def test_sigterm_finishes_the_wave_in_flight_releases_the_rest_and_exits(make_app, smtp, tmp_path):
    """Issue 18: SIGTERM stops a sender in the middle of a big send without draining the backlog."""
    toml = smtp.config_toml().replace("[sending]\n", "[sending]\npoll_seconds = 0.2\nbatch_size = 100\nconcurrency = 10\n")
    app = make_app(toml)
    add_people(app, 2000)
    _plan_now(app, make_campaign(app))
    proc = _start(tmp_path / "config.toml")
    try:
        assert _wait(lambda: len(smtp.message_ids) >= 100, 90)
    finally:
        at_signal = len(smtp.message_ids)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    states = _states(app)
    # The wave in flight finished and was recorded; nothing else was handed over; the rest
    # of the claimed batch went back to the queue (nothing is left claimed or sending).
    assert len(smtp.message_ids) - at_signal <= app.settings.sending.concurrency, (at_signal, states)
    assert states["sent"] == len(smtp.message_ids)
    assert states["claimed"] == states["sending"] == states["unknown"] == 0, states
    assert states["queued"] == 2000 - states["sent"], states
    assert "Traceback" not in out
