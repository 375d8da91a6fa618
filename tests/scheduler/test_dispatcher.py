"""The dispatcher against a real SMTP server on loopback that fails on command."""

import asyncio
from collections import Counter
from datetime import timedelta

from sqlalchemy import select

from campaigns.audience import consent as ledger
from campaigns.audience.contacts import add_contact, find_contact
from campaigns.audience.suppression import is_suppressed
from campaigns.store.models import Campaign, Contact, Delivery, Event
from campaigns.timespec import utcnow
from scheduler.dispatcher import Dispatcher
from scheduler.planner import plan_firing
from tests.scheduler.conftest import add_people, make_campaign


def _setup(make_app, smtp, n, timeout=30.0, **campaign):
    app = make_app(smtp.config_toml(timeout=timeout))
    add_people(app, n)
    cid = make_campaign(app, **campaign)
    now = utcnow()
    with app.session() as s:
        plan_firing(s, app.settings, s.get(Campaign, cid), now.replace(microsecond=0), now)
    return app, cid


def _drain(app, rounds=12):
    """Dispatch until nothing is due, moving the clock past each retry's backoff."""
    clock = utcnow()
    total = Counter()
    for _ in range(rounds):
        stats = asyncio.run(Dispatcher(app).dispatch_once(clock))
        total.update(stats.counts)
        clock += timedelta(hours=7)  # past the longest backoff
    return total


def _states(app, cid):
    with app.session() as s:
        return Counter(s.scalars(select(Delivery.state).where(Delivery.campaign_id == cid)))


def test_transient_failures_are_retried_until_all_are_sent_once(make_app, smtp):
    smtp.transient_rate = 0.1
    app, cid = _setup(make_app, smtp, 300)
    _drain(app)
    assert _states(app, cid) == Counter({"sent": 300})
    assert smtp.transient_given > 10
    ids = smtp.message_ids
    assert len(ids) == len(set(ids)) == 300  # none twice
    with app.session() as s:
        assert max(s.scalars(select(Delivery.attempts))) <= app.settings.sending.max_attempts


def test_hard_bounce_fails_and_suppresses_the_address_the_rest_go(make_app, smtp):
    smtp.hard_bounce = {"p3@example.com"}
    app, cid = _setup(make_app, smtp, 8)
    _drain(app)
    assert _states(app, cid) == Counter({"sent": 7, "failed": 1})
    with app.session() as s:
        assert is_suppressed(s, app.settings, "email", "p3@example.com")
        bad = s.scalar(select(Delivery).where(Delivery.state == "failed"))
        assert "5.1.1" in bad.error
        assert s.scalar(select(Event.type).where(Event.delivery_id == bad.id)) == "bounce"
    assert "p3@example.com" not in {r for r, _m, _f in smtp.received}


def test_policy_rejection_pauses_the_campaign_without_blaming_anyone(make_app, smtp):
    smtp.policy = True
    app, cid = _setup(make_app, smtp, 5)
    asyncio.run(Dispatcher(app).dispatch_once())
    with app.session() as s:
        c = s.get(Campaign, cid)
        assert c.status == "paused" and "5.7.1" in c.status_reason
        assert not is_suppressed(s, app.settings, "email", "p0@example.com")
    states = _states(app, cid)
    assert states["queued"] >= 1 and states["failed"] == 0 and states["sent"] == 0
    smtp.policy = False
    with app.session() as s:
        s.get(Campaign, cid).status = "draft"
    _drain(app)
    assert _states(app, cid) == Counter({"sent": 5})


def test_dropped_connection_before_data_is_retried(make_app, smtp):
    smtp.drop_at_rcpt = {"p1@example.com"}
    app, cid = _setup(make_app, smtp, 4)
    _drain(app)
    assert _states(app, cid) == Counter({"sent": 4})
    assert smtp.rcpt_attempts["p1@example.com"] == 2
    assert sorted(r for r, _m, _f in smtp.received).count("p1@example.com") == 1


def test_no_reply_after_the_final_dot_is_unknown_and_never_resent(make_app, smtp):
    smtp.hang_after_dot = {"p2@example.com"}
    app, cid = _setup(make_app, smtp, 4, timeout=2.0)
    _drain(app, rounds=3)
    states = _states(app, cid)
    assert states == Counter({"sent": 3, "unknown": 1})
    assert [r for r, _m, _f in smtp.received].count("p2@example.com") == 1


def test_an_invalid_address_in_the_middle_does_not_stop_the_batch(make_app, smtp):
    smtp.hard_bounce = {"p3@example.com"}  # refused outright, as if mistyped at import
    app, cid = _setup(make_app, smtp, 6)
    _drain(app, rounds=1)
    assert _states(app, cid) == Counter({"sent": 5, "failed": 1})


def test_unsubscribe_after_planning_wins_at_claim_time(make_app, smtp):
    app, cid = _setup(make_app, smtp, 3)
    with app.session() as s:
        ledger.revoke(s, find_contact(s, "p1@example.com"), "email", "one-click unsubscribe")
    _drain(app)
    assert _states(app, cid) == Counter({"sent": 2, "suppressed": 1})
    assert "p1@example.com" not in {r for r, _m, _f in smtp.received}


def test_a_worker_that_dies_after_claiming_gives_its_untouched_rows_back(make_app, smtp):
    from scheduler.outbox import claim, expire_leases

    app, cid = _setup(make_app, smtp, 3)
    now = utcnow()
    assert len(claim(app.engine, app.settings, "crashed-worker", now, 10)) == 3  # dies before handing any over
    assert _states(app, cid) == Counter({"claimed": 3})
    expire_leases(app.engine, app.settings, now + timedelta(seconds=app.settings.sending.lease_seconds + 1))
    assert _states(app, cid) == Counter({"queued": 3})
    _drain(app)
    assert _states(app, cid) == Counter({"sent": 3})
    assert len(smtp.received) == 3
    with app.session() as s:
        assert set(s.scalars(select(Delivery.attempts))) == {1}  # the lost claim is not counted as an attempt


def test_an_expired_lease_turns_a_crashed_send_unknown_not_resent(make_app, smtp):
    from sqlalchemy import update

    from scheduler.outbox import claim, expire_leases

    app, cid = _setup(make_app, smtp, 2)
    now = utcnow()
    claimed = claim(app.engine, app.settings, "crashed-worker", now, 10)
    with app.session() as s:  # the wave was marked as being handed over, then the worker died
        s.execute(update(Delivery).where(Delivery.id.in_([c.id for c in claimed])).values(state="sending"))
    assert expire_leases(app.engine, app.settings, now + timedelta(seconds=app.settings.sending.lease_seconds + 1)) == 2
    _drain(app)
    assert _states(app, cid) == Counter({"unknown": 2})
    assert smtp.received == []


def test_render_failure_fails_only_that_delivery(make_app, smtp, tmp_path):
    (tmp_path / "templates" / "broken").mkdir()
    (tmp_path / "templates" / "broken" / "subject.txt").write_text("Hi {{ contact.attributes.tier }}")
    (tmp_path / "templates" / "broken" / "body.html").write_text('<p>x</p><a href="{{ unsubscribe_url }}">u</a>')
    app = make_app(smtp.config_toml())
    add_people(app, 2)
    with app.session() as s:
        c = find_contact(s, "p0@example.com")
        c.attributes = {"tier": "gold"}
    cid = make_campaign(app, template="broken")
    with app.session() as s:
        plan_firing(s, app.settings, s.get(Campaign, cid), utcnow().replace(microsecond=0), utcnow())
    _drain(app)
    with app.session() as s:
        rows = {d.contact_id: d for d in s.scalars(select(Delivery))}
    assert Counter(d.state for d in rows.values()) == Counter({"sent": 1, "failed": 1})
    assert "render" in next(d.error for d in rows.values() if d.state == "failed")


class _Recording:
    """A channel that records what it is handed; on the first message, two recipients later in
    the same claimed batch unsubscribe and get suppressed (as if their requests landed mid-batch)."""

    def __init__(self, app):
        self.app = app
        self.sent = []

    async def send(self, message):
        if not self.sent:
            with self.app.session() as s:
                ledger.revoke(s, find_contact(s, "p7@example.com", self.app.settings), "email", "one-click")
                from campaigns.audience import suppression
                suppression.add(s, self.app.settings, "email", "p8@example.com", "complaint")
        self.sent.append(message.to)
        from scheduler.channels import SendResult
        return SendResult("sent", message.message_id)

    async def close(self):
        pass


def test_an_unsubscribe_that_lands_after_the_claim_still_stops_the_message(make_app, smtp):
    app, _cid = _setup(make_app, smtp, 12)
    app.settings.sending.concurrency = 1  # one at a time, so the revocation precedes the later sends
    channel = _Recording(app)
    asyncio.run(Dispatcher(app, channels={"email": channel, "sms": channel}).dispatch_once())
    assert len(channel.sent) == 10
    assert "p7@example.com" not in channel.sent and "p8@example.com" not in channel.sent
    with app.session() as s:
        rows = dict(s.execute(select(Contact.email, Delivery.state).join(Contact, Contact.id == Delivery.contact_id)).all())
    assert rows["p7@example.com"] == rows["p8@example.com"] == "suppressed"
    assert list(rows.values()).count("sent") == 10


def test_a_render_that_fails_after_taking_a_coupon_gives_the_code_back(make_app, smtp, tmp_path):
    from campaigns.messages import coupons
    from campaigns.store.models import Coupon

    folder = tmp_path / "templates" / "offer"
    folder.mkdir()
    # The code is taken in the subject; the body then fails for the contact without a tier.
    (folder / "subject.txt").write_text('Your code {{ coupon("spring") }}')
    (folder / "body.html").write_text('<p>{{ contact.attributes.tier }}</p><a href="{{ unsubscribe_url }}">u</a>')
    (tmp_path / "codes.txt").write_text("AAA\nBBB\nCCC\n")
    app = make_app(smtp.config_toml())
    add_people(app, 2)
    with app.session() as s:
        coupons.import_pool(s, "spring", tmp_path / "codes.txt")
        find_contact(s, "p0@example.com").attributes = {"tier": "gold"}
    cid = make_campaign(app, template="offer")
    with app.session() as s:
        plan_firing(s, app.settings, s.get(Campaign, cid), utcnow().replace(microsecond=0), utcnow())
    _drain(app)
    with app.session() as s:
        states = Counter(s.scalars(select(Delivery.state)))
        taken = s.scalars(select(Coupon.code).where(Coupon.delivery_id.is_not(None))).all()
    assert states == Counter({"sent": 1, "failed": 1})
    assert len(taken) == 1  # the failed render's code went back to the pool
    assert len(smtp.received) == 1


def _auto_pause_setup(make_app, smtp, *, people, bouncing, min_sample, batch):
    app = make_app(smtp.config_toml())
    app.settings.sending.auto_pause_min_sample = min_sample
    app.settings.sending.batch_size = batch
    smtp.hard_bounce = {f"p{i}@example.com" for i in bouncing}
    add_people(app, people)
    cid = make_campaign(app)
    with app.session() as s:
        plan_firing(s, app.settings, s.get(Campaign, cid), utcnow().replace(microsecond=0), utcnow())
    return app, cid


def test_a_campaign_whose_hard_bounce_rate_passes_the_threshold_pauses_itself_and_says_why(make_app, smtp, tmp_path):
    from tests.conftest import CliRunner

    app, cid = _auto_pause_setup(make_app, smtp, people=200, bouncing=range(20), min_sample=40, batch=50)
    _drain(app, rounds=3)
    with app.session() as s:
        campaign = s.get(Campaign, cid)
        assert campaign.status == "paused"
        assert "hard-bounce rate" in campaign.status_reason and "passed 5.0%" in campaign.status_reason
    states = _states(app, cid)
    assert states["failed"] == 20  # the bouncing addresses, all in the first batch
    assert states["sent"] <= 30 + 16  # the pause takes effect within a wave, not at the end of the campaign
    assert states["queued"] >= 150  # the rest waits for a resume; nothing is lost
    shown = CliRunner(tmp_path / "config.toml")("show", "promo")
    assert shown.exit_code == 0 and "hard-bounce rate" in shown.stdout


def test_the_pause_comes_when_the_sample_reaches_the_minimum_even_if_only_sends_follow(make_app, smtp):
    # 20 bounces in the first batch of 50 (too small a sample to judge), then only sends: the
    # counts kept between database reads must still notice when the sample passes 60.
    app, cid = _auto_pause_setup(make_app, smtp, people=300, bouncing=range(20), min_sample=60, batch=50)
    _drain(app, rounds=3)
    with app.session() as s:
        assert s.get(Campaign, cid).status == "paused"
    states = _states(app, cid)
    assert 60 <= states["sent"] + states["failed"] <= 50 + 16 + 16
    assert states["queued"] >= 300 - 50 - 32


def test_a_healthy_campaign_is_not_paused(make_app, smtp):
    app, cid = _auto_pause_setup(make_app, smtp, people=300, bouncing=[7], min_sample=40, batch=50)
    _drain(app, rounds=3)
    with app.session() as s:
        assert s.get(Campaign, cid).status != "paused"
    assert _states(app, cid) == Counter({"sent": 299, "failed": 1})


def test_a_deleted_template_folder_fails_its_rows_with_the_reason_once(make_app, smtp):
    import shutil

    from campaigns.messages.templates_store import templates_root

    app, cid = _setup(make_app, smtp, 3)
    shutil.rmtree(templates_root(app.settings) / "welcome")
    clock = utcnow()
    first = asyncio.run(Dispatcher(app).dispatch_once(clock))
    assert first.counts == Counter({"failed": 3})
    assert _states(app, cid) == Counter({"failed": 3})
    with app.session() as s:
        errors = set(s.scalars(select(Delivery.error).where(Delivery.campaign_id == cid)))
    assert len(errors) == 1 and "template 'welcome' not found" in errors.pop()
    # not claimed again and again: nothing is left to send, even after every lease and backoff
    later = asyncio.run(Dispatcher(app).dispatch_once(clock + timedelta(hours=7)))
    assert later.claimed == 0
    assert smtp.received == []


def test_double_opt_in_is_one_rule_from_planning_to_hand_over(make_app, smtp):
    """Planning, the claim and the send agree: only confirmed contacts get mail under double opt-in."""
    app = make_app(smtp.config_toml() + "[consent]\ndouble_opt_in = true\n")
    with app.session() as s:
        people = {name: add_contact(s, app.settings, {"email": f"{name}@example.com"}) for name in ("ann", "bob", "cy")}
        ledger.grant(s, app.settings, people["ann"], "email", "form", double_opt_in=False)  # granted, never confirmed
        for name in ("bob", "cy"):
            _, token = ledger.grant(s, app.settings, people[name], "email", "form")
            ledger.confirm(s, token)
    cid = make_campaign(app)
    now = utcnow()
    with app.session() as s:
        result = plan_firing(s, app.settings, s.get(Campaign, cid), now.replace(microsecond=0), now)
    assert result.counts["planned"] == 2 and result.counts["skipped"]["no_consent"] == 1
    with app.session() as s:  # cy asks for a new confirmation after planning: pending, not confirmed
        ledger.revoke(s, find_contact(s, "cy@example.com"), "email", "unsubscribe link")
        ledger.grant(s, app.settings, find_contact(s, "cy@example.com"), "email", "form")
    _drain(app)
    assert _states(app, cid) == Counter({"sent": 1, "suppressed": 1})
    assert {r for r, _m, _f in smtp.received} == {"bob@example.com"}


def test_a_row_whose_claim_passed_to_another_sender_is_not_handed_over(make_app, smtp):
    """A sender taken for dead (silent past the liveness limit) may still be running: when it
    reaches the hand-over, rows another sender has claimed since are theirs, not sent twice."""
    from sqlalchemy import update

    from scheduler.outbox import claim

    app, cid = _setup(make_app, smtp, 6)
    slow = Dispatcher(app, worker_name="slow")
    at = utcnow()
    batch = claim(app.engine, app.settings, "slow", at, 100)
    assert len(batch) == 6
    taken = batch[0].id
    with app.engine.begin() as conn:  # what the liveness sweep and a second claim leave behind
        conn.execute(update(Delivery).where(Delivery.id == taken).values(claimed_by="other"))
    asyncio.run(slow._process(batch, at))
    with app.session() as s:
        row = s.get(Delivery, taken)
        assert (row.state, row.claimed_by) == ("claimed", "other")
    assert _states(app, cid) == Counter({"sent": 5, "claimed": 1})
    assert len(smtp.received) == 5


class _Counting:
    """A channel that accepts everything and counts what it was handed."""

    def __init__(self):
        self.sent = []

    async def send(self, message):
        from scheduler.channels import SendResult
        self.sent.append(message.to)
        return SendResult("sent", message.message_id)

    async def close(self):
        pass


def test_a_database_that_drops_between_waves_leaves_the_sent_wave_sent(make_app, smtp, monkeypatch):
    """The database restarts after a wave went out: the write before the next wave (its
    outcomes, the pause look, the next wave marked `sending`) fails. The wave handed over is
    written down as sent once the database answers (not left `sending` to become `unknown`
    at the lease's end), the rest waits for a retry."""
    from sqlalchemy.exc import OperationalError

    from scheduler.record import Recorder

    app, _cid = _setup(make_app, smtp, 10)
    app.settings.sending.concurrency = 4
    looks = {"n": 0}
    real = Recorder.write

    def flaky(self, *args, **kwargs):
        looks["n"] += 1
        if looks["n"] == 2:  # after the first wave: the server is restarting
            raise OperationalError("SELECT", {}, Exception("server closed the connection unexpectedly"))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Recorder, "write", flaky)
    channel = _Counting()
    asyncio.run(Dispatcher(app, channels={"email": channel, "sms": channel}).dispatch_once())
    with app.session() as s:
        states = Counter(s.scalars(select(Delivery.state)))
    assert len(channel.sent) >= 2  # the first wave: half of `concurrency` (two waves are out at a time)
    assert states["sending"] == 0 and states["unknown"] == 0, states
    assert states["sent"] == len(channel.sent), states


class _Watching:
    """A channel that notes, at every hand-over, how many rows are `sending` and how many
    messages are out; the `hold`th message to arrive is held until the `until`th arrives."""

    def __init__(self, app, hold, until):
        self.app, self.hold, self.until = app, hold, until
        self.arrived = self.out = self.most_out = self.most_sending = 0
        self.sent = []
        self.came = asyncio.Event()
        self.held_until_it_came = None

    async def send(self, message):
        from sqlalchemy import func

        from scheduler.channels import SendResult
        order = self.arrived
        self.arrived += 1
        self.out += 1
        self.most_out = max(self.most_out, self.out)
        with self.app.engine.connect() as conn:
            sending = conn.scalar(select(func.count()).select_from(Delivery).where(Delivery.state == "sending"))
        self.most_sending = max(self.most_sending, sending)
        if order >= self.until:
            self.came.set()
        if order == self.hold:
            try:
                await asyncio.wait_for(self.came.wait(), 10)
                self.held_until_it_came = True
            except TimeoutError:  # the later message waited for this one: a barrier between waves
                self.held_until_it_came = False
        await asyncio.sleep(0.005)
        self.out -= 1
        self.sent.append(message.to)
        return SendResult("sent", message.message_id)

    async def close(self):
        pass


def test_the_next_wave_goes_out_while_one_is_out_and_sending_never_passes_concurrency(make_app, smtp):
    """Two waves of half of `concurrency` are out at a time (scheduler/handover.py): when one
    is done, the next is marked `sending` and handed over while the other is still out, so
    the connections never wait for the slowest message of a wave; a crash still leaves at
    most `concurrency` rows `sending`. With waves of 4, the 9th message (third wave) goes out
    while the 5th (second wave) is held; a barrier after every `concurrency` messages would
    hold the 9th until the 5th was done."""
    app, cid = _setup(make_app, smtp, 40)
    app.settings.sending.concurrency = 8
    channel = _Watching(app, hold=4, until=8)
    stats = asyncio.run(Dispatcher(app, channels={"email": channel, "sms": channel}).dispatch_once())
    assert stats.counts["sent"] == 40 and len(set(channel.sent)) == 40
    assert channel.held_until_it_came is True
    assert channel.most_out <= 8 and channel.most_sending <= 8, (channel.most_out, channel.most_sending)
    assert channel.most_sending > 4  # two waves were `sending` together
    assert _states(app, cid) == Counter({"sent": 40})
