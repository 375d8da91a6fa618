"""Branching journeys on a controllable clock: a branch on opened sends the "didn't open"
path only to those who did not open and the "opened" path only to openers; a daemon killed
mid-evaluation sends nothing twice; an exit step ends the enrolment."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import select

from campaigns.campaign_defs import CampaignSpec, activate_campaign, create_campaign
from campaigns.segments import create_segment
from campaigns.store.models import Delivery, DripEnrollment, JourneyVisit
from campaigns.tracking.responses import record_open
from scheduler import journeys
from scheduler.jobs import tick
from tests.scheduler.conftest import add_people, copy_template, dispatch_once, sent_subjects

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
HUMAN = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15"

JOURNEY = """\
# Welcome; whoever did not open it within two days gets a nudge, openers a thank-you.
start = "welcome"

[step.welcome]
kind = "send"
template = "hello"
next = "opened_it"

[step.opened_it]
kind = "branch"
on = "opened"
of = "welcome"
within = "2d"
yes = "thanks"
no = "nudge"

[step.thanks]
kind = "send"
template = "thanks"
next = "done"

[step.nudge]
kind = "send"
template = "nudge"
next = "done"

[step.done]
kind = "exit"
"""


def _journey(app, text=JOURNEY, name="welcome-journey"):
    for tmpl, subject in (("hello", "Hello"), ("thanks", "Thanks for reading"), ("nudge", "Did you miss this?")):
        copy_template(app, tmpl, subject)
    with time_machine.travel(T0, tick=False), app.session() as s:
        create_segment(s, app.settings, "everyone", 'email contains "@"')
        c = create_campaign(s, app.settings, name, CampaignSpec(segment="everyone", channel="email", quiet_hours="none",
                                                               cap="none", journey=text, journey_source="j.toml"))
        activate_campaign(s, app.settings, name, T0)
        return c.id


def _rows(app, cid):
    with app.session() as s:
        return sorted((r.contact_id, r.step, r.state) for r in s.scalars(select(Delivery).where(Delivery.campaign_id == cid)))


def _open(app, cid, contact, at):
    with app.session() as s:
        d = s.scalar(select(Delivery).where(Delivery.campaign_id == cid, Delivery.contact_id == contact, Delivery.step == 0))
        record_open(s, app.settings, d.id, at, HUMAN, "203.0.113.9")


def test_a_branch_sends_the_didnt_open_path_only_to_non_openers_and_the_opened_path_only_to_openers(make_app):
    _open_branch_scenario(make_app())


def _open_branch_scenario(app):
    opener, late_opener, never = add_people(app, 3)
    cid = _journey(app)
    tick(app, T0 + timedelta(minutes=1))
    assert _rows(app, cid) == [(p, 0, "queued") for p in (opener, late_opener, never)]
    dispatch_once(app, T0 + timedelta(minutes=2))
    assert sent_subjects(app) == [(f"p{i}@example.com", "Hello") for i in range(3)]
    _open(app, cid, opener, T0 + timedelta(hours=3))
    tick(app, T0 + timedelta(hours=4))  # decided early: the condition holds
    tick(app, T0 + timedelta(hours=4, minutes=1))  # a second look adds nothing
    assert _rows(app, cid) == [(opener, 0, "sent"), (opener, 2, "queued"), (late_opener, 0, "sent"), (never, 0, "sent")]
    _open(app, cid, late_opener, T0 + timedelta(days=2, hours=1))  # after the window: too late for "opened"
    tick(app, T0 + timedelta(days=2, hours=2))
    dispatch_once(app, T0 + timedelta(days=2, hours=3))
    assert sent_subjects(app) == sorted([(f"p{i}@example.com", "Hello") for i in range(3)] + [
        ("p0@example.com", "Thanks for reading"), ("p1@example.com", "Did you miss this?"),
        ("p2@example.com", "Did you miss this?")])
    tick(app, T0 + timedelta(days=3))
    assert _rows(app, cid) == [(opener, 0, "sent"), (opener, 2, "sent"), (late_opener, 0, "sent"), (late_opener, 3, "sent"),
                               (never, 0, "sent"), (never, 3, "sent")]
    with app.session() as s:
        assert {e.exit_reason for e in s.scalars(select(DripEnrollment))} == {None}  # ended, not left
        assert s.scalar(select(JourneyVisit).where(JourneyVisit.left_at.is_(None))) is None
    return cid


def test_report_shows_each_journey_step_entered_sent_opened_paths_and_exits_in_every_format(make_app, cli, tmp_path):
    import json

    _open_branch_scenario(make_app())
    r = cli("report", "welcome-journey", "--json")
    assert r.exit_code == 0, r.output
    steps = json.loads(r.stdout)["steps"]
    assert [(x["step"], x["what"], x["entered"], x["sent"], x["opened"], x["paths"], x["exited"]) for x in steps] == [
        ("welcome", "send hello", 3, 3, 2, {}, 0),
        ("opened_it", "branch on opened (welcome) within 2d", 3, 0, 0, {"yes": 1, "no": 2}, 0),
        ("thanks", "send thanks", 1, 1, 0, {}, 0),
        ("nudge", "send nudge", 2, 2, 0, {}, 0),
        ("done", "exit", 3, 0, 0, {}, 3)]
    assert steps[-1]["exit_reasons"] == {"exit step done": 3}
    csv_out = cli("report", "welcome-journey", "--csv").stdout
    assert "step.opened_it.paths.yes,1" in csv_out and "step.done.exit_reasons.exit step done,3" in csv_out
    table = cli("report", "welcome-journey").stdout
    assert "Per step" in table and "1 yes; 2 no" in table and "3 exit step done" in table
    page = tmp_path / "j.html"
    assert cli("report", "welcome-journey", "--html", "-o", str(page)).exit_code == 0
    html = page.read_text()
    assert "Per step" in html and "branch on opened (welcome) within 2d" in html and "1 yes; 2 no" in html


def test_a_daemon_killed_mid_evaluation_sends_nothing_twice(make_app, monkeypatch):
    app = make_app()
    people = add_people(app, 2)
    cid = _journey(app)
    tick(app, T0 + timedelta(minutes=1))
    dispatch_once(app, T0 + timedelta(minutes=2))

    def killed(*_a, **_k):
        raise RuntimeError("killed mid-evaluation")

    real = journeys._send
    calls = []

    def send_then_die(*args, **kwargs):
        real(*args, **kwargs)
        calls.append(1)
        raise RuntimeError("killed after writing the rows")

    monkeypatch.setattr(journeys, "_send", send_then_die)
    tick(app, T0 + timedelta(days=2, minutes=1))  # the tick's transaction is lost whole
    assert calls and _rows(app, cid) == [(p, 0, "sent") for p in people]
    monkeypatch.setattr(journeys, "_send", real)
    tick(app, T0 + timedelta(days=2, minutes=2))
    tick(app, T0 + timedelta(days=2, minutes=3))
    assert _rows(app, cid) == sorted([(p, 0, "sent") for p in people] + [(p, 3, "queued") for p in people])
    assert killed  # the helper documents the shape of a crash


@pytest.mark.parametrize("on, extra", [("clicked", ""), ("purchased", ""), ("event:viewed", ""),
                                       ("filter", 'filter = "purchases.count(last=30d) > 0"')])
def test_every_condition_kind_takes_the_no_path_when_nothing_happened(make_app, on, extra):
    app = make_app()
    (who,) = add_people(app, 1)
    text = JOURNEY.replace('on = "opened"\nof = "welcome"', f'on = "{on}"\n{extra}' if on != "clicked" else 'on = "clicked"')
    cid = _journey(app, text)
    tick(app, T0 + timedelta(minutes=1))
    tick(app, T0 + timedelta(days=2, minutes=1))
    assert _rows(app, cid) == [(who, 0, "queued"), (who, 3, "queued")]


def test_an_event_after_entering_takes_the_yes_path_before_the_window_ends(make_app):
    from campaigns.audience import custom_events

    app = make_app()
    did, didnt = add_people(app, 2)
    cid = _journey(app, JOURNEY.replace('on = "opened"\nof = "welcome"', 'on = "event:viewed"'))
    tick(app, T0 + timedelta(minutes=1))
    with time_machine.travel(T0 + timedelta(hours=5), tick=False), app.session() as s:
        custom_events.track(s, app.settings, f"#{did}", "viewed", {}, at=(T0 + timedelta(hours=4)).isoformat(), key="v1")
    tick(app, T0 + timedelta(hours=5))
    assert _rows(app, cid) == [(did, 0, "queued"), (did, 2, "queued"), (didnt, 0, "queued")]


def test_an_exit_rule_stops_a_journeys_later_send_and_the_contact_moves_no_further(make_app):
    from campaigns.store.models import Purchase

    app = make_app()
    buyer, other = add_people(app, 2)
    text = JOURNEY.replace('on = "opened"\nof = "welcome"', 'on = "clicked"')
    for tmpl, subject in (("hello", "Hello"), ("thanks", "Thanks for reading"), ("nudge", "Did you miss this?")):
        copy_template(app, tmpl, subject)
    with time_machine.travel(T0, tick=False), app.session() as s:
        create_segment(s, app.settings, "everyone", 'email contains "@"')
        create_campaign(s, app.settings, "j", CampaignSpec(segment="everyone", channel="email", quiet_hours="none", cap="none",
                                                           journey=text, exit_when="purchases.count(last=1d) > 0"))
        cid = activate_campaign(s, app.settings, "j", T0).id
    tick(app, T0 + timedelta(minutes=1))
    dispatch_once(app, T0 + timedelta(minutes=2))
    with app.session() as s:
        s.add(Purchase(order_id="B-1", contact_id=buyer, amount_cents=100, currency="USD", occurred_at=T0 + timedelta(days=2)))
    tick(app, T0 + timedelta(days=2, minutes=1))  # both take "no": the nudge is queued for both
    dispatch_once(app, T0 + timedelta(days=2, minutes=2))  # the buyer's nudge is cancelled at hand-over
    tick(app, T0 + timedelta(days=2, minutes=3))
    assert _rows(app, cid) == [(buyer, 0, "sent"), (buyer, 3, "cancelled"), (other, 0, "sent"), (other, 3, "sent")]
    with app.session() as s:
        why = dict(s.execute(select(DripEnrollment.contact_id, DripEnrollment.exit_reason)).all())
        assert why == {buyer: "exit: purchases.count(last=1d) > 0", other: None}
        visits = s.execute(select(JourneyVisit.contact_id, JourneyVisit.step, JourneyVisit.outcome)
                           .order_by(JourneyVisit.contact_id, JourneyVisit.step)).all()
    assert visits == [(buyer, 0, "sent"), (buyer, 1, "no"), (buyer, 3, "sent"), (buyer, 4, "exit"),
                      (other, 0, "sent"), (other, 1, "no"), (other, 3, "sent"), (other, 4, "exit")]
