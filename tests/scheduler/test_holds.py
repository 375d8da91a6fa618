"""What holds a campaign: a pause (nothing handed over after it returns), a dead template
(paused once, with the reason), an outage (auto-pause judges the recent window)."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter

from sqlalchemy import func, select

from campaigns.store.models import Campaign, Delivery
from scheduler.dispatcher import Dispatcher
from tests.conftest import CliRunner
from tests.scheduler.conftest import add_people, make_campaign
from tests.scheduler.test_daemon import _plan_now, _wait


def _states(app):
    with app.session() as s:
        return Counter(dict(s.execute(select(Delivery.state, func.count()).group_by(Delivery.state)).all()))


def test_nothing_is_handed_over_after_pause_returned_and_claimed_rows_go_back(make_app, smtp, tmp_path):
    # A slow server: a wave of 5 takes about half a second, a claimed batch of 50 about five.
    smtp.data_delay = 0.5
    app = make_app(smtp.config_toml(timeout=30).replace("[sending]\n", "[sending]\npoll_seconds = 0.2\nbatch_size = 50\nconcurrency = 5\n"))
    add_people(app, 60)
    _plan_now(app, make_campaign(app))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNS_")}
    worker = subprocess.Popen([sys.executable, "-m", "campaigns", "--config", str(tmp_path / "config.toml"), "worker", "--name", "w1"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert _wait(lambda: len(smtp.began) >= 1, 90)  # the first wave is being handed over
        result = CliRunner(tmp_path / "config.toml")("pause", "promo")
        returned = time.monotonic()
        assert result.exit_code == 0, result.output
        # The rest of the claimed batch goes back to the queue; nothing is left held.
        assert _wait(lambda: _states(app)["claimed"] + _states(app)["sending"] == 0, 60), _states(app)
        time.sleep(2 * smtp.data_delay)  # a wave that had been started would show up by now
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=60)
    with smtp.lock:
        after = [t for t in smtp.began if t > returned]
    assert after == [], f"{len(after)} messages were handed over after pause returned"
    states = _states(app)
    assert states["sent"] == len(smtp.message_ids) and states["queued"] == 60 - states["sent"], states


def test_a_missing_template_pauses_its_campaign_once_with_the_reason(make_app, smtp, tmp_path, caplog):
    app = make_app(smtp.config_toml())
    add_people(app, 30)
    shutil.copytree(tmp_path / "templates" / "welcome", tmp_path / "templates" / "doomed")
    cid = make_campaign(app, template="doomed")
    _plan_now(app, cid)
    shutil.rmtree(tmp_path / "templates" / "doomed")  # deleted after planning
    with caplog.at_level(logging.WARNING):
        for _ in range(3):  # the sender keeps polling: nothing is claimed again and again
            asyncio.run(Dispatcher(app).dispatch_once())
    with app.session() as s:
        campaign = s.get(Campaign, cid)
        assert campaign.status == "paused" and "doomed" in campaign.status_reason, campaign.status_reason
    assert _states(app) == Counter({"failed": 30})  # failed with the reason, once; none claimed again and again
    assert sum("doomed" in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING) == 1
    shutil.copytree(tmp_path / "templates" / "welcome", tmp_path / "templates" / "doomed")
    cli = CliRunner(tmp_path / "config.toml")
    assert "30 messages queued again" in cli("retry", "promo").stdout
    assert cli("resume", "promo").exit_code == 0
    asyncio.run(Dispatcher(app).dispatch_once())
    assert _states(app) == Counter({"sent": 30})


def test_after_an_outage_resume_finishes_the_job(make_app, smtp, tmp_path):
    """Auto-pause judges the outcomes since the campaign was last resumed (and recent ones), not all time."""
    smtp.transient_rate = 1.0  # the server answers 451 to everything: an outage
    app = make_app(smtp.config_toml().replace("[sending]\n", "[sending]\npoll_seconds = 0.2\nbatch_size = 20\nconcurrency = 5\n"
                                                            "max_attempts = 1\nauto_pause_min_sample = 20\n"))
    add_people(app, 200)
    cid = make_campaign(app)
    _plan_now(app, cid)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNS_")}
    worker = subprocess.Popen([sys.executable, "-m", "campaigns", "--config", str(tmp_path / "config.toml"), "worker", "--name", "w1"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    cli = CliRunner(tmp_path / "config.toml")
    try:
        def status():
            with app.session() as s:
                return s.get(Campaign, cid).status

        assert _wait(lambda: status() == "paused", 90)  # auto-paused at 100% failures
        stranded = _states(app)["queued"]
        assert stranded > 0
        smtp.transient_rate = 0.0  # the server is back
        assert cli("resume", "promo").exit_code == 0
        assert _wait(lambda: _states(app)["queued"] == 0 or status() == "paused", 90)
        assert status() != "paused", _states(app)  # the failures before the resume do not pause it again
        assert cli("retry", "promo").exit_code == 0  # and what the outage failed goes out too
        assert _wait(lambda: _states(app) == Counter({"sent": 200}), 90), _states(app)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=60)
    assert len(smtp.message_ids) == 200 == len(set(smtp.message_ids))
