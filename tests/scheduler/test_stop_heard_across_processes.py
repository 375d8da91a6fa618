"""A stop recorded by another process on the same SQLite file is heard by the sender's very
next hand-over check, without waiting for the background poll.

On a loaded machine the polling thread once lagged long enough that a message began after
its unsubscribe had been acknowledged (the reliability scenario of 500 one-click
unsubscribes). Here the background poll is put to sleep for an hour after its first look,
so only the check itself can hear the stop.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest

from campaigns.audience import stopped
from campaigns.timespec import utcnow
from tests.scheduler.conftest import add_people


def test_the_hand_over_check_reads_another_process_s_stop_at_once(make_app, tmp_path, monkeypatch):
    app = make_app()
    if app.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL hears other processes through LISTEN/NOTIFY (tests/tracking/test_stop_before_handover.py)")
    [contact_id] = add_people(app, 1)
    stopped.forget_all()
    monkeypatch.setattr(stopped, "POLL_SECONDS", 3600.0)
    planned = utcnow() - timedelta(seconds=1)
    stopped.listen(app.engine)
    assert stopped.wanted(contact_id, "email", planned)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNS_")}
    done = subprocess.run([sys.executable, "-m", "campaigns", "--config", str(tmp_path / "config.toml"), "consent", "revoke",
                           "p0@example.com", "--channel", "email", "--source", "phone call"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert not stopped.wanted(contact_id, "email", planned)  # the very next check, no poll in between
    assert stopped.wanted(contact_id, "sms", planned)  # only what was revoked
    stopped.forget_all()
