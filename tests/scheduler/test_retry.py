"""`campaigns retry NAME` after an SMTP outage: transient failures go out again, nothing else does."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

from sqlalchemy import select, update

from campaigns.store.models import Delivery
from campaigns.timespec import utcnow
from scheduler.dispatcher import Dispatcher
from tests.conftest import CliRunner
from tests.scheduler.conftest import add_people, make_campaign
from tests.scheduler.test_daemon import _plan_now
from tests.support.smtp import free_port


def _states(app, cid):
    with app.session() as s:
        return Counter(s.scalars(select(Delivery.state).where(Delivery.campaign_id == cid)))


def _dispatch_until_settled(app, rounds=6):
    clock = utcnow()
    for _ in range(rounds):
        asyncio.run(Dispatcher(app).dispatch_once(clock))
        clock += timedelta(hours=7)  # past any backoff


def test_retry_requeues_what_an_outage_failed_and_nothing_else(make_app, smtp, tmp_path):
    dead = make_app(f'[sending]\ntransport = "smtp"\nmax_attempts = 2\nretry_base_seconds = 1\n'
                    f'[smtp]\nhost = "127.0.0.1"\nport = {free_port()}\ntimeout_seconds = 2\n')
    add_people(dead, 20)
    cid = make_campaign(dead)
    _plan_now(dead, cid)
    with dead.session() as s:  # one message had bounced for good before the outage
        bounced = s.scalars(select(Delivery.id).where(Delivery.campaign_id == cid).order_by(Delivery.id)).first()
        s.execute(update(Delivery).where(Delivery.id == bounced).values(state="failed", error="550 5.1.1 user unknown"))
    _dispatch_until_settled(dead)
    assert _states(dead, cid) == Counter({"failed": 20})  # 19 gave up after the server stayed down
    live = make_app(smtp.config_toml())  # the server is back (same config file, now pointing at it)
    result = CliRunner(tmp_path / "config.toml")("retry", "promo")
    assert result.exit_code == 0, result.output
    assert "19 messages queued again" in result.stdout
    _dispatch_until_settled(live)
    assert _states(live, cid) == Counter({"sent": 19, "failed": 1})
    assert len(smtp.message_ids) == 19 == len(set(smtp.message_ids))
    with live.session() as s:
        assert s.get(Delivery, bounced).error == "550 5.1.1 user unknown"


def test_retry_refuses_a_cancelled_campaign_and_an_unknown_one(make_app, tmp_path):
    app = make_app()
    add_people(app, 2)
    make_campaign(app)
    cli = CliRunner(tmp_path / "config.toml")
    assert cli("cancel", "promo").exit_code == 0
    refused = cli("retry", "promo")
    assert refused.exit_code == 1 and "cancelled" in refused.stderr
    missing = cli("retry", "nope")
    assert missing.exit_code == 1 and "nope" in missing.stderr and "Traceback" not in missing.output
