"""A/B test share, then the winner to the rest: on a controllable clock, SQLite and PostgreSQL."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import select

from campaigns.store.models import Campaign, CampaignRun, Delivery, Event, Purchase
from scheduler.jobs import tick
from tests.scheduler.conftest import add_people, make_campaign

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
FIRE = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
AB = {"at": "2026-12-01 09:00", "variants": ["A:welcome:50", "B:newsletter:50"], "test_share": "20%", "winner_after": "4h"}


def _rows(app, cid):
    with app.session() as s:
        return [(d.contact_id, d.state, d.variant, d.template_name, d.due_at) for d in
                s.scalars(select(Delivery).where(Delivery.campaign_id == cid).order_by(Delivery.id))]


def _send_test_share(app, cid, at):
    """The test share goes out (as the dispatcher would record it)."""
    with app.session() as s:
        for d in s.scalars(select(Delivery).where(Delivery.campaign_id == cid, Delivery.state == "queued")):
            d.state, d.sent_at = "sent", at


def _click(app, cid, variant, share):
    with app.session() as s:
        ds = list(s.scalars(select(Delivery).where(Delivery.campaign_id == cid, Delivery.variant == variant,
                                                   Delivery.state == "sent").order_by(Delivery.id)))
        for d in ds[:int(len(ds) * share)]:
            s.add(Event(delivery_id=d.id, campaign_id=cid, contact_id=d.contact_id, type="click",
                        occurred_at=FIRE + timedelta(hours=1), dedup_key=f"click:{d.id}"))


def test_only_the_test_share_goes_first_then_the_rest_get_the_winner_once(make_app):
    app = make_app()
    people = add_people(app, 300)
    with time_machine.travel(T0, tick=False):
        cid = make_campaign(app, winner_by="clicks", **AB)
    tick(app, FIRE + timedelta(seconds=5))
    rows = _rows(app, cid)
    test = [r for r in rows if r[1] == "queued"]
    waiting = [r for r in rows if r[1] == "waiting"]
    assert len(rows) == 300 and len(test) + len(waiting) == 300
    assert 40 <= len(test) <= 80  # about 20% of 300, by a stable hash
    assert {r[2] for r in test} == {"A", "B"} and all(r[2] is None for r in waiting)
    assert tick(app, FIRE + timedelta(hours=3, minutes=59)).planned == []  # not yet: nothing released
    assert len([r for r in _rows(app, cid) if r[1] == "waiting"]) == len(waiting)

    _send_test_share(app, cid, FIRE + timedelta(minutes=1))
    _click(app, cid, "B", 0.6)
    _click(app, cid, "A", 0.05)
    decided_at = FIRE + timedelta(hours=4, seconds=5)
    tick(app, decided_at)
    after = _rows(app, cid)
    released = [r for r in after if r[0] in {w[0] for w in waiting}]
    assert {(r[1], r[2], r[3]) for r in released} == {("queued", "B", "newsletter")}
    assert all(r[4] >= decided_at for r in released)
    assert sorted(r[0] for r in after) == sorted(people)  # nobody has two rows
    with app.session() as s:
        run = s.scalar(select(CampaignRun).where(CampaignRun.campaign_id == cid))
        decision = run.ab_decision
    assert decision["winner"] == "B" and decision["metric"] == "clicks" and decision["significant"] is True
    assert decision["released"] == len(waiting)
    assert {v["variant"] for v in decision["variants"]} == {"A", "B"}
    assert next(v for v in decision["variants"] if v["variant"] == "A")["p_holm"] < 0.05

    tick(app, decided_at + timedelta(minutes=1))  # a second tick sends nothing more
    tick(app, decided_at + timedelta(hours=5))
    assert _rows(app, cid) == after
    with app.session() as s:
        assert s.scalar(select(CampaignRun.ab_decision).where(CampaignRun.campaign_id == cid))["decided_at"] == decision["decided_at"]


@pytest.mark.parametrize(("metric", "expected"), [("conversions", "A"), ("revenue", "B")])
def test_conversions_and_revenue_pick_their_own_winner_on_seeded_purchases(make_app, metric, expected):
    """A: many small buyers; B: few big ones. Conversion says A, revenue says B."""
    app = make_app()
    add_people(app, 400)
    with time_machine.travel(T0, tick=False):
        cid = make_campaign(app, winner_by=metric, **AB)
    tick(app, FIRE + timedelta(seconds=5))
    _send_test_share(app, cid, FIRE + timedelta(minutes=1))
    with app.session() as s:
        for variant, share, cents in (("A", 0.5, 500), ("B", 0.2, 50000)):
            ds = list(s.scalars(select(Delivery).where(Delivery.campaign_id == cid, Delivery.variant == variant)
                                .order_by(Delivery.id)))
            for d in ds[:int(len(ds) * share)]:
                s.add(Purchase(order_id=f"o{d.id}", contact_id=d.contact_id, amount_cents=cents, currency="USD",
                               occurred_at=FIRE + timedelta(hours=2)))
    tick(app, FIRE + timedelta(hours=4, seconds=10))
    with app.session() as s:
        decision = s.scalar(select(CampaignRun.ab_decision).where(CampaignRun.campaign_id == cid))
        templates = set(s.scalars(select(Delivery.template_name).where(Delivery.campaign_id == cid, Delivery.variant.is_(None))))
        released = set(s.scalars(select(Delivery.variant).where(Delivery.campaign_id == cid, Delivery.ab_remainder.is_(True))))
    assert decision["winner"] == expected and decision["metric"] == metric
    assert templates == set() and released == {expected}


def test_no_significant_difference_sends_the_best_observed_and_says_why(make_app):
    app = make_app()
    add_people(app, 100)
    with time_machine.travel(T0, tick=False):
        cid = make_campaign(app, winner_by="clicks", **AB)
    tick(app, FIRE + timedelta(seconds=5))
    _send_test_share(app, cid, FIRE + timedelta(minutes=1))
    tick(app, FIRE + timedelta(hours=4, seconds=10))  # no clicks at all: nothing to tell them apart
    with app.session() as s:
        decision = s.scalar(select(CampaignRun.ab_decision).where(CampaignRun.campaign_id == cid))
        c = s.scalar(select(Campaign).where(Campaign.id == cid))
        assert c.status == "scheduled"  # the remainder is still to go
    assert decision["winner"] == "A" and decision["significant"] is False
    assert "first" in decision["reason"]


def test_quiet_hours_hold_the_remainder_until_they_end(make_app):
    app = make_app()
    add_people(app, 50, tz="UTC")
    with time_machine.travel(T0, tick=False):
        cid = make_campaign(app, winner_by="clicks", **{**AB, "winner_after": "12h", "quiet_hours": "20:00-08:00"})
    tick(app, FIRE + timedelta(seconds=5))
    tick(app, FIRE + timedelta(hours=12, seconds=5))  # 21:00 UTC: inside the recipients' quiet hours
    remainder = [r for r in _rows(app, cid) if r[1] == "queued" and r[4] > FIRE + timedelta(hours=1)]
    assert remainder and all(r[4] == datetime(2026, 12, 2, 8, 0, tzinfo=UTC) for r in remainder)


def test_cancel_cancels_the_waiting_remainder(make_app):
    from campaigns.campaign_defs import set_status

    app = make_app()
    add_people(app, 50)
    with time_machine.travel(T0, tick=False):
        cid = make_campaign(app, winner_by="clicks", **AB)
    tick(app, FIRE + timedelta(seconds=5))
    with app.session() as s:
        set_status(s, "promo", "cancel")
    tick(app, FIRE + timedelta(hours=5))
    assert {r[1] for r in _rows(app, cid)} == {"cancelled"}


def test_a_decider_killed_mid_decision_leaves_nothing_and_the_next_tick_decides_once(make_app, monkeypatch):
    import scheduler.winner as winner_mod

    app = make_app()
    add_people(app, 100)
    with time_machine.travel(T0, tick=False):
        cid = make_campaign(app, winner_by="clicks", **AB)
    tick(app, FIRE + timedelta(seconds=5))
    before = _rows(app, cid)
    real = winner_mod.throttle

    def crash(*args, **kwargs):  # the process dies after the decision was written, before any row moved
        raise RuntimeError("killed")

    monkeypatch.setattr(winner_mod, "throttle", crash)
    report = tick(app, FIRE + timedelta(hours=4, seconds=10))
    assert report.decided == [] and report.failed
    assert _rows(app, cid) == before
    with app.session() as s:
        assert s.scalar(select(CampaignRun.ab_decision).where(CampaignRun.campaign_id == cid)) is None
    monkeypatch.setattr(winner_mod, "throttle", real)
    assert [name for name, _ in tick(app, FIRE + timedelta(hours=4, seconds=20)).decided] == ["promo"]
    assert not [r for r in _rows(app, cid) if r[1] == "waiting"]


def test_a_second_decider_finds_the_decision_taken_and_moves_nothing(make_app):
    from scheduler.winner import release

    app = make_app()
    add_people(app, 100)
    with time_machine.travel(T0, tick=False):
        cid = make_campaign(app, winner_by="clicks", **AB)
    tick(app, FIRE + timedelta(seconds=5))
    with app.session() as s:  # a stale copy of the campaign and firing, read before anyone decided
        c = s.get(Campaign, cid)
        run = s.scalar(select(CampaignRun).where(CampaignRun.campaign_id == cid))
        s.expunge_all()
    tick(app, FIRE + timedelta(hours=4, seconds=10))
    after = _rows(app, cid)
    with app.session() as s:
        c, run = s.merge(c, load=False), s.merge(run, load=False)
        run.ab_decision = None  # what the second decider believed
        assert release(s, app.settings, c, run, FIRE + timedelta(hours=4, seconds=11)) is None
        s.expunge_all()  # its stale belief is not written
    assert _rows(app, cid) == after


def test_the_daemon_schedules_a_tick_at_the_decision_time(make_app):
    from apscheduler.schedulers.background import BackgroundScheduler

    from scheduler.daemon import Daemon

    app = make_app()
    add_people(app, 20)
    with time_machine.travel(T0, tick=False):
        cid = make_campaign(app, winner_by="clicks", **AB)
    tick(app, FIRE + timedelta(seconds=5))
    daemon = Daemon(app, tracking=False, dispatch=False)
    daemon._scheduler = BackgroundScheduler(timezone=UTC)  # not started: only its job list is read
    with time_machine.travel(FIRE + timedelta(minutes=1), tick=False):
        daemon._sync()
    with app.session() as s:
        run_id = s.scalar(select(CampaignRun.id).where(CampaignRun.campaign_id == cid))
    job = daemon._scheduler.get_job(f"campaign-winner-{run_id}")
    assert job is not None and list(job.args) == [cid]
    assert job.trigger.run_date == FIRE + timedelta(hours=4, seconds=5)
