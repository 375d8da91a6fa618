"""Who counts as dead: a sender on another host is dead only after missing several of its
own beats, whatever `heartbeat_seconds` it was configured with."""

from datetime import timedelta

from sqlalchemy import select

from campaigns.store.models import ProcessHeartbeat
from campaigns.timespec import utcnow
from scheduler.liveness import DEAD_AFTER, heartbeat, is_dead


def _row(last_seen, **info):
    return ProcessHeartbeat(name="worker@elsewhere:1", role="worker", started_at=last_seen, last_seen=last_seen,
                            info={"host": "elsewhere", "pid": 1, **info})


def test_a_slow_beating_sender_elsewhere_is_alive_between_its_beats():
    now = utcnow()
    # It beats every 120 s; 90 s of silence is less than one missed beat.
    assert not is_dead(_row(now - timedelta(seconds=90), beat_seconds=120), now)
    # Silent for three of its beats and more: gone.
    assert is_dead(_row(now - timedelta(seconds=361), beat_seconds=120), now)


def test_a_default_sender_elsewhere_is_dead_after_the_floor():
    now = utcnow()
    assert not is_dead(_row(now - DEAD_AFTER + timedelta(seconds=1), beat_seconds=5), now)
    assert is_dead(_row(now - DEAD_AFTER - timedelta(seconds=1), beat_seconds=5), now)
    assert is_dead(_row(now - DEAD_AFTER - timedelta(seconds=1)), now)  # a row written before beats said their pace


def test_a_heartbeat_says_how_often_its_sender_beats(make_app):
    app = make_app("[sending]\nheartbeat_seconds = 90\n")
    heartbeat(app, "w1", "worker")
    with app.session() as s:
        row = s.scalar(select(ProcessHeartbeat).where(ProcessHeartbeat.name == "w1"))
        assert row.info["beat_seconds"] == 90
