"""Sending under faults, on real servers on loopback: a flaky SMTP server, a daemon killed
with SIGKILL, a campaign paused and resumed, unsubscribes arriving mid-send.

Each scenario sends to a real aiosmtpd server and runs the sender the way a user runs it
(`campaigns worker` / `campaigns daemon` child processes); the account compares what the
server received (by Message-ID, which names the delivery) with what the database says.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from sqlalchemy import func, select

from campaigns.campaign_defs import CampaignSpec, activate_campaign, edit_campaign
from campaigns.messages import links
from campaigns.store.models import Delivery, ProcessHeartbeat
from campaigns.timespec import utcnow
from campaigns.tracking.app import create_app
from tests.conftest import CliRunner
from tests.reliability.harness import Shop, build_shop
from tests.support.http import ServedApp

N = 20_000
CMD = "python -m pytest tests/reliability/test_sending_faults.py -k {}"


def _finish(shop: Shop, stall: float = 120) -> dict[str, int]:
    # By progress, not by a guessed speed: a loaded machine sends slower, a hang sends nothing.
    assert shop.wait_done(stall), f"no progress for {stall:.0f} s: {shop.states()}\n{shop.logs_tail()}"
    shop.stop_all()
    return shop.account()


def test_a_tenth_of_smtp_attempts_failing_transiently(tmp_path: Path, record) -> None:
    shop = build_shop(tmp_path, f"sqlite:///{tmp_path / 'c.db'}", N)
    try:
        shop.smtp.transient_rate = 0.10
        began = time.monotonic()
        shop.start("worker", "w1")
        acct = _finish(shop)
        seconds = time.monotonic() - began
        with shop.app.session() as s:
            attempts = Counter(s.scalars(select(Delivery.attempts).where(Delivery.campaign_id == shop.campaign_id)))
        max_attempts = shop.app.settings.sending.max_attempts
        assert acct["duplicates"] == 0 and acct["lost"] == 0
        assert acct["received"] == acct["state_sent"] == N - acct.get("state_failed", 0)
        assert acct.get("state_failed", 0) <= 2  # six 10% failures in a row: about one in a million
        assert max(attempts) <= max_attempts
        total_attempts = sum(shop.smtp.rcpt_attempts.values())
        assert total_attempts < N * 1.2
        record("transient SMTP failures (10%)", CMD.format("tenth"), messages=N, lost=acct["lost"],
               duplicates=acct["duplicates"], failed=acct.get("state_failed", 0), transient_replies=shop.smtp.transient_given,
               smtp_attempts=total_attempts, max_attempts_per_message=max(attempts), seconds=round(seconds, 1))
    finally:
        shop.close()


def _heartbeat_of(shop: Shop, pid: int) -> bool:
    """True once the daemon `pid` has announced itself (its acknowledgement that it runs)."""
    with shop.app.session() as s:
        return bool(s.scalar(select(func.count()).where(ProcessHeartbeat.name.like(f"%:{pid}"))))


def test_the_daemon_killed_five_times_mid_campaign(tmp_path: Path, record) -> None:
    shop = build_shop(tmp_path, f"sqlite:///{tmp_path / 'c.db'}", N, plan=False, sending={"lease_seconds": "4"})
    with shop.app.session() as s:  # a firing a few seconds ahead (a time already gone is refused)
        edit_campaign(s, shop.app.settings, "load", CampaignSpec(at=(utcnow() + timedelta(seconds=3)).strftime("%Y-%m-%d %H:%M:%S")))
        activate_campaign(s, shop.app.settings, "load")  # a draft is never planned by the daemon
    in_flight: list[int] = []
    sent_at_kill: list[int] = []
    try:
        proc = shop.start("daemon")
        # Each kill waits for what the database acknowledges, never for a guessed number of
        # seconds: the first lands once the daemon has announced itself (around planning),
        # the others once another sixth of the campaign is recorded sent.
        for i in range(5):
            if i == 0:
                assert shop.wait(lambda p=proc: _heartbeat_of(shop, p.pid), 120), "the daemon never started"
            else:
                target = i * N // 6
                assert shop.wait(lambda t=target: shop.states().get("sent", 0) >= t, 300), shop.states()
            proc.kill()
            proc.wait()
            with shop.app.session() as s:  # rows the killed process held: they become `unknown`
                in_flight.append(s.scalar(select(func.count()).where(
                    Delivery.state == "sending", Delivery.claimed_by.like(f"%:{proc.pid}"))) or 0)
            sent_at_kill.append(shop.states().get("sent", 0))
            proc = shop.start("daemon")
        acct = _finish(shop)
        wave = shop.app.settings.sending.concurrency
        assert sent_at_kill[-1] < N, "the kills must land while the campaign is still sending"
        assert acct["duplicates"] == 0
        assert acct["lost"] == 0  # every row final; every row marked sent really arrived
        assert sum(acct.get(f"state_{k}", 0) for k in ("sent", "unknown")) == N
        assert acct.get("state_unknown", 0) <= sum(in_flight) and all(n <= wave for n in in_flight)
        record("daemon SIGKILLed 5 times", CMD.format("killed"), messages=N, lost=acct["lost"], duplicates=acct["duplicates"],
               unknown=acct.get("state_unknown", 0), in_flight_at_kills=in_flight, sent_at_kills=sent_at_kill,
               unknown_that_arrived=acct.get("state_unknown", 0) - (N - acct["received"]))
    finally:
        shop.close()


def test_pause_and_resume_ten_times_during_sending(tmp_path: Path, record) -> None:
    shop = build_shop(tmp_path, f"sqlite:///{tmp_path / 'c.db'}", N)
    cli = CliRunner(shop.config)
    rng = random.Random(9)
    leaked: list[int] = []
    try:
        shop.start("worker", "w1")
        for _ in range(10):
            time.sleep(rng.uniform(0.3, 1.2))
            assert cli("pause", "load").exit_code == 0
            # Judged by acknowledgement, not by how long a wave takes on a loaded machine: once
            # the pause is acknowledged, every row still waiting (never claimed) must stay unsent
            # until the resume; rows the worker had already claimed may finish.
            with shop.app.session() as s:
                waiting = set(s.scalars(select(Delivery.id).where(Delivery.campaign_id == shop.campaign_id,
                                                                  Delivery.state.in_(("queued", "retry_wait")))))
            time.sleep(rng.uniform(0.5, 1.5))
            leaked.append(len(waiting.intersection(shop.received_ids())))  # received before the resume is asked
            assert cli("resume", "load").exit_code == 0
        acct = _finish(shop)
        assert leaked == [0] * 10, leaked  # nothing new is claimed while paused
        assert acct["duplicates"] == 0 and acct["lost"] == 0
        assert acct["state_sent"] == acct["received"] == N  # and nothing skipped
        record("pause and resume 10 times", CMD.format("pause"), messages=N, lost=acct["lost"], duplicates=acct["duplicates"],
               skipped=N - acct["state_sent"], sent_while_paused=sum(leaked))
    finally:
        shop.close()


def test_one_click_unsubscribes_arriving_during_the_send(tmp_path: Path, record) -> None:
    n, unsubscribers = 10_000, 500
    shop = build_shop(tmp_path, f"sqlite:///{tmp_path / 'c.db'}", n)
    try:
        with shop.app.session() as s:
            ids = list(s.scalars(select(Delivery.id).where(Delivery.campaign_id == shop.campaign_id)))
        chosen = random.Random(4).sample(ids, unsubscribers)
        acked: dict[int, float] = {}
        with ServedApp(create_app(shop.app.settings)) as base:
            def unsubscribe_all() -> None:
                with httpx.Client(base_url=base, timeout=30) as client:
                    for did in chosen:
                        path = urlsplit(links.unsubscribe_url(shop.app.settings, did)).path
                        r = client.post(path, data={"List-Unsubscribe": "One-Click"})
                        assert r.status_code == 200, r.text
                        acked[did] = time.monotonic()
                        time.sleep(0.01)

            shop.start("worker", "w1")
            assert shop.wait(lambda: len(shop.smtp.received) >= 300, 60)
            poster = threading.Thread(target=unsubscribe_all)
            poster.start()
            poster.join(timeout=300)
            acct = _finish(shop)
        with shop.smtp.lock:
            began = {int(mid.strip("<").split(".")[0], 36): t for (_r, mid, _f), t in zip(shop.smtp.received, shop.smtp.began, strict=False)}
        after_ack = [d for d in chosen if d in began and began[d] > acked[d]]
        before_ack = [d for d in chosen if d in began and began[d] <= acked[d]]
        with shop.app.session() as s:
            stopped = s.scalar(select(func.count()).where(Delivery.id.in_(chosen), Delivery.state == "suppressed"))
        assert len(acked) == unsubscribers
        assert after_ack == []
        assert stopped == unsubscribers - len(before_ack) > 0
        assert acct["duplicates"] == 0 and acct["lost"] == 0
        record("500 one-click unsubscribes during a send", CMD.format("unsubscribes"), messages=n, lost=acct["lost"],
               duplicates=acct["duplicates"], unsubscribes=unsubscribers, messages_after_ack=len(after_ack),
               already_sent_before_ack=len(before_ack), stopped_in_time=stopped)
    finally:
        shop.close()


