"""Triggered drips on a controllable clock: a purchase, a custom event, a yearly date and a
lifecycle stage start steps; an exit rule stops a later step; nothing is ever sent twice."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import func, select

from campaigns.audience import consent as ledger
from campaigns.audience import custom_events
from campaigns.audience.contacts import add_contact
from campaigns.store.models import CustomEvent, Delivery, DripEnrollment, Purchase
from scheduler import triggers
from scheduler.jobs import tick
from tests.scheduler.conftest import add_people, copy_template, dispatch_once, make_campaign, sent_subjects

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def _rows(app, cid):
    with app.session() as s:
        return list(s.scalars(select(Delivery).where(Delivery.campaign_id == cid).order_by(Delivery.id)))


def _buy(app, contact_id, order_id, at, cents=4250):
    with app.session() as s:
        s.add(Purchase(order_id=order_id, contact_id=contact_id, amount_cents=cents, currency="USD", occurred_at=at))


def test_a_purchase_brings_the_post_purchase_step_with_its_order_and_only_purchases_after_going_live(make_app):
    app = make_app()
    ann, bob = add_people(app, 2)
    copy_template(app, "thanks", "Thanks for order {{ purchase.order_id }} ({{ purchase.amount }} {{ purchase.currency }})")
    _buy(app, ann, "OLD-1", T0 - timedelta(days=3))  # before the journey existed: never triggers
    with time_machine.travel(T0, tick=False):
        cid = make_campaign(app, "post", trigger="purchase", steps=["0d:thanks", "7d:newsletter"])
    tick(app, T0 + timedelta(minutes=1))
    assert _rows(app, cid) == []
    _buy(app, ann, "A-100", T0 + timedelta(hours=2))
    tick(app, T0 + timedelta(hours=2, minutes=1))
    tick(app, T0 + timedelta(hours=2, minutes=2))  # a second look finds nothing new
    rows = _rows(app, cid)
    assert [(r.contact_id, r.step, r.due_at) for r in rows] == [
        (ann, 0, T0 + timedelta(hours=2)), (ann, 1, T0 + timedelta(days=7, hours=2))]
    dispatch_once(app, T0 + timedelta(hours=2, minutes=3))
    assert sent_subjects(app) == [("p0@example.com", "Thanks for order A-100 (42.50 USD)")]
    assert bob not in {r.contact_id for r in _rows(app, cid)}


def test_an_abandoned_cart_brings_its_reminder_and_a_purchase_before_it_cancels_it(make_app):
    app = make_app()
    buyer, browser = add_people(app, 2)
    copy_template(app, "cart", "You left {{ event.properties.sku }} in your cart")
    with time_machine.travel(T0, tick=False):
        cid = make_campaign(app, "cart", trigger="event:cart_abandoned", steps=["1h:cart", "1d:newsletter"],
                            exit_when="purchases.count(last=1d) > 0")
    with time_machine.travel(T0 + timedelta(minutes=10), tick=False), app.session() as s:
        for who in (buyer, browser):
            custom_events.track(s, app.settings, f"#{who}", "cart_abandoned", {"sku": "SHOE-9"},
                                at=(T0 + timedelta(minutes=5)).isoformat(), key=f"cart-{who}")
        custom_events.track(s, app.settings, f"#{buyer}", "viewed", {}, at=(T0 + timedelta(minutes=6)).isoformat())
    with time_machine.travel(T0 + timedelta(minutes=10), tick=False):
        tick(app, T0 + timedelta(minutes=10))
    assert sorted((r.contact_id, r.step) for r in _rows(app, cid)) == [(buyer, 0), (buyer, 1), (browser, 0), (browser, 1)]
    _buy(app, buyer, "B-1", T0 + timedelta(minutes=40))
    dispatch_once(app, T0 + timedelta(hours=1, minutes=6))
    assert sent_subjects(app) == [("p1@example.com", "You left SHOE-9 in your cart")]
    states = {(r.contact_id, r.step): (r.state, r.error) for r in _rows(app, cid)}
    assert states[(buyer, 0)] == ("cancelled", "left the journey: exit: purchases.count(last=1d) > 0")
    assert states[(buyer, 1)] == ("cancelled", "left the journey before this step: exit: purchases.count(last=1d) > 0")
    assert states[(browser, 1)][0] == "queued"
    with app.session() as s:
        exited = s.scalar(select(DripEnrollment).where(DripEnrollment.contact_id == buyer))
        assert exited.exit_reason == "exit: purchases.count(last=1d) > 0"


def test_a_birthday_fires_once_a_year_at_nine_local_in_each_zone(make_app):
    app = make_app()
    with app.session() as s:
        people = {}
        for tz in ("Asia/Tokyo", "America/New_York"):
            c = add_contact(s, app.settings, {"email": f"{tz.split('/')[1].lower()}@example.com", "timezone": tz,
                                              "birthday": "1990-03-15"})
            ledger.grant(s, app.settings, c, "email", "test")
            people[tz] = c.id
        c = add_contact(s, app.settings, {"email": "nobirthday@example.com"})
        ledger.grant(s, app.settings, c, "email", "test")
    with time_machine.travel(T0, tick=False):
        cid = make_campaign(app, "bday", trigger="date:attributes.birthday", at="09:00", steps=["0d:welcome"])
    moment = datetime(2027, 3, 13, 0, 0, tzinfo=UTC)
    while moment < datetime(2027, 3, 17, tzinfo=UTC):  # every 20 minutes across the days around it
        tick(app, moment)
        moment += timedelta(minutes=20)
    due = {r.contact_id: r.due_at for r in _rows(app, cid)}
    assert due == {people["Asia/Tokyo"]: datetime(2027, 3, 15, 0, 0, tzinfo=UTC),          # 09:00 JST
                   people["America/New_York"]: datetime(2027, 3, 15, 13, 0, tzinfo=UTC)}  # 09:00 EDT
    tick(app, datetime(2028, 3, 15, 14, 0, tzinfo=UTC))  # next year: once more each
    assert len(_rows(app, cid)) == 4


def test_replays_and_a_killed_evaluation_never_enrol_twice(make_app, tmp_path, monkeypatch):
    app = make_app()
    (ann,) = add_people(app, 1)
    with time_machine.travel(T0, tick=False):
        cid = make_campaign(app, "signup", trigger="event:signed_up", steps=["0d:welcome"])
    at = (T0 + timedelta(minutes=1)).isoformat()
    path = tmp_path / "events.csv"
    path.write_text(f"contact,name,occurred_at,id\n#{ann},signed_up,{at},evt-1\n")
    with time_machine.travel(T0 + timedelta(minutes=2), tick=False), app.session() as s:
        for _ in range(2):  # the webhook's delivery retried, and the same event in a file read twice
            custom_events.track(s, app.settings, f"#{ann}", "signed_up", {}, at=at, key="evt-1", source="webhook")
            custom_events.import_events(s, app.settings, path)
        assert s.scalar(select(func.count()).select_from(CustomEvent)) == 1

    def killed(*args, **kwargs):
        raise RuntimeError("SIGKILL mid-evaluation")

    real = triggers.plan_steps
    monkeypatch.setattr(triggers, "plan_steps", killed)
    report = tick(app, T0 + timedelta(minutes=2))
    assert report.failed and _rows(app, cid) == []
    monkeypatch.setattr(triggers, "plan_steps", real)
    for minute in (3, 4, 5):
        tick(app, T0 + timedelta(minutes=minute))
    assert [(r.contact_id, r.step) for r in _rows(app, cid)] == [(ann, 0)]
    dispatch_once(app, T0 + timedelta(minutes=6))
    dispatch_once(app, T0 + timedelta(minutes=7))
    assert len(sent_subjects(app)) == 1


def test_a_lifecycle_trigger_enrols_on_the_move_into_the_stage_not_for_being_in_it(make_app):
    from campaigns.segments import profiles

    app = make_app()
    already, slipping, steady = add_people(app, 3)
    _buy(app, already, "Q-1", T0 - timedelta(days=200))
    _buy(app, already, "Q-2", T0 - timedelta(days=150))  # at risk before the campaign existed
    _buy(app, slipping, "S-1", T0 - timedelta(days=40))  # active now, at risk after 90 silent days
    _buy(app, steady, "T-1", T0 - timedelta(days=40))
    with time_machine.travel(T0, tick=False):
        cid = make_campaign(app, "winback", trigger="lifecycle:at_risk", steps=["0d:welcome"])

    def stages(at):
        with app.session() as s:
            return {c: p.lifecycle for c, p in profiles(s, app.settings, [already, slipping, steady], at=at).items()}

    assert stages(T0) == {already: "at_risk", slipping: "active", steady: "active"}
    tick(app, T0 + timedelta(minutes=1))  # the first look only notes who is in the stage
    assert _rows(app, cid) == []
    later = T0 + timedelta(days=51)
    _buy(app, steady, "T-2", later - timedelta(days=1))  # bought again: stays active
    assert stages(later) == {already: "at_risk", slipping: "at_risk", steady: "active"}
    tick(app, later)
    tick(app, later + timedelta(minutes=1))  # still in the stage: no second move, no second enrolment
    assert [r.contact_id for r in _rows(app, cid)] == [slipping]


@pytest.mark.parametrize(("args", "word"), [
    (["--trigger", "bogus"], "--trigger"),
    (["--trigger", "event:"], "--trigger"),
    (["--trigger", "lifecycle:sleepy"], "--trigger"),
    (["--trigger", "purchase", "--exit-when", "purchases.count >"], "--exit-when"),
    (["--trigger", "segment", "--reentry", "always"], "--reentry"),
    (["--trigger", "purchase", "--offset", "-7d"], "--offset"),
    (["--trigger", "purchase", "--at", "2030-01-01 09:00"], "--at"),
])
def test_bad_trigger_options_are_one_line_and_write_nothing(cli, args, word):
    assert cli("segments", "create", "all", "--where", 'email contains "@"').exit_code == 0
    r = cli("new", "journey", "--segment", "all", "--channel", "email", "--step", "0d:welcome", *args)
    assert r.exit_code != 0 and word in r.stderr, r.output
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.output
    assert "journey" not in cli("list").stdout


def test_a_goal_reached_before_a_step_counts_as_converted_and_reentry_never_takes_one_purchase(make_app):
    app = make_app()
    ann, bob = add_people(app, 2)
    with app.session() as s:
        from campaigns.audience.contacts import find_contact
        find_contact(s, f"#{bob}").tags = ["vip"]
    with time_machine.travel(T0, tick=False):
        cid = make_campaign(app, "post", trigger="purchase", steps=["0d:welcome", "2d:newsletter"],
                            goal='tags contains "vip"', reentry="never")
    for who, order, hours in ((ann, "A-1", 1), (bob, "B-1", 1), (ann, "A-2", 5)):
        _buy(app, who, order, T0 + timedelta(hours=hours))
    tick(app, T0 + timedelta(hours=6))
    assert sorted((r.contact_id, r.step) for r in _rows(app, cid)) == [(ann, 0), (ann, 1), (bob, 0), (bob, 1)]
    dispatch_once(app, T0 + timedelta(hours=6, minutes=1))
    with app.session() as s:
        reasons = dict(s.execute(select(DripEnrollment.contact_id, DripEnrollment.exit_reason)).all())
    assert reasons == {ann: None, bob: 'goal: tags contains "vip"'}
    assert {(r.contact_id, r.step): r.state for r in _rows(app, cid)} == {
        (ann, 0): "sent", (ann, 1): "queued", (bob, 0): "cancelled", (bob, 1): "cancelled"}


def test_reentry_after_a_wait_enrols_a_second_purchase_only_once_the_wait_is_over(make_app):
    app = make_app()
    (ann,) = add_people(app, 1)
    with time_machine.travel(T0, tick=False):
        cid = make_campaign(app, "post", trigger="purchase", steps=["0d:welcome"], reentry="after:30d")
    for order, days in (("A-1", 1), ("A-2", 10), ("A-3", 40)):
        _buy(app, ann, order, T0 + timedelta(days=days))
    tick(app, T0 + timedelta(days=41))
    assert [r.due_at for r in _rows(app, cid)] == [T0 + timedelta(days=1), T0 + timedelta(days=40)]


def test_report_shows_each_step_entered_sent_opened_exited_and_why_in_every_format(make_app, cli, tmp_path):
    app = make_app()
    buyer, browser = add_people(app, 2)
    with time_machine.travel(T0, tick=False):
        cid = make_campaign(app, "cart", trigger="event:cart_abandoned", steps=["1h:welcome", "1d:newsletter"],
                            exit_when="purchases.count(last=1d) > 0")
    with time_machine.travel(T0 + timedelta(minutes=10), tick=False), app.session() as s:
        for who in (buyer, browser):
            custom_events.track(s, app.settings, f"#{who}", "cart_abandoned", {}, at=(T0 + timedelta(minutes=5)).isoformat())
    tick(app, T0 + timedelta(minutes=10))
    _buy(app, buyer, "B-1", T0 + timedelta(minutes=40))
    dispatch_once(app, T0 + timedelta(hours=1, minutes=6))
    with app.session() as s:
        sent = s.scalar(select(Delivery).where(Delivery.campaign_id == cid, Delivery.state == "sent"))
        from campaigns.store.models import Event
        s.add(Event(delivery_id=sent.id, campaign_id=cid, contact_id=sent.contact_id, type="open",
                    occurred_at=T0 + timedelta(hours=2), dedup_key="open-1"))
    import json
    r = cli("report", "cart", "--json")
    assert r.exit_code == 0, r.output
    steps = json.loads(r.stdout)["steps"]
    assert [(x["step"], x["template"], x["entered"], x["sent"], x["opened"], x["exited"]) for x in steps] == [
        (1, "welcome", 2, 1, 1, 1), (2, "newsletter", 2, 0, 0, 0)]
    assert steps[0]["exit_reasons"] == {"exit: purchases.count(last=1d) > 0": 1}
    csv_out = cli("report", "cart", "--csv").stdout
    assert "step.1.exited,1" in csv_out and "step.1.exit_reasons.exit: purchases.count(last=1d) > 0,1" in csv_out
    table = cli("report", "cart").stdout
    assert "Per step" in table and "newsletter" in table
    page = tmp_path / "cart.html"
    assert cli("report", "cart", "--html", "-o", str(page)).exit_code == 0
    assert "Per step" in page.read_text() and "purchases.count(last=1d) &gt; 0" in page.read_text()
