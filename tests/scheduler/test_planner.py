"""Planning a firing: consent, suppression, caps, holdout, variants, idempotency."""

from datetime import UTC, datetime, timedelta

import time_machine
from sqlalchemy import func, select

from campaigns.audience import consent as ledger
from campaigns.audience import suppression
from campaigns.audience.contacts import add_contact
from campaigns.store.models import Campaign, Delivery
from campaigns.timespec import utcnow
from scheduler.planner import plan_drip, plan_firing, stable_fraction
from tests.scheduler.conftest import add_people, make_campaign


def _plan(app, cid, key=None, now=None):
    now = now or utcnow()
    with app.session() as s:
        return plan_firing(s, app.settings, s.get(Campaign, cid), key or now.replace(microsecond=0), now)


def _rows(app, cid):
    with app.session() as s:
        return list(s.scalars(select(Delivery).where(Delivery.campaign_id == cid).order_by(Delivery.contact_id)))


def test_only_consenting_unsuppressed_contacts_with_an_address_are_planned(make_app):
    app = make_app()
    ok = add_people(app, 3)
    no_consent = add_people(app, 2, consent=False, prefix="nc")
    with app.session() as s:
        suppression.add(s, app.settings, "email", "p0@example.com", "manual")
        revoked = add_contact(s, app.settings, {"email": "rev@example.com"})
        ledger.grant(s, app.settings, revoked, "email", "form", occurred_at=utcnow() - timedelta(days=2))
        ledger.revoke(s, revoked, "email", "unsubscribed", occurred_at=utcnow() - timedelta(days=1))
        phone_only = add_contact(s, app.settings, {"phone": "+14155550199"})
        ledger.grant(s, app.settings, phone_only, "sms", "form")
    cid = make_campaign(app, where='email contains "@" or phone contains "+1"')
    result = _plan(app, cid)
    assert result.created
    assert result.counts["in_segment"] == 7
    assert result.counts["planned"] == 2
    assert result.counts["skipped"] == {"invalid_address": 1, "no_consent": 3, "suppressed": 1, "capped": 0}
    assert [r.contact_id for r in _rows(app, cid)] == ok[1:]
    assert set(no_consent).isdisjoint(r.contact_id for r in _rows(app, cid))


def test_planning_the_same_firing_twice_adds_nothing(make_app):
    app = make_app()
    add_people(app, 5)
    cid = make_campaign(app)
    key = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
    first = _plan(app, cid, key=key)
    second = _plan(app, cid, key=key)
    assert first.created and not second.created and first.run_id == second.run_id
    assert len(_rows(app, cid)) == 5


def test_holdout_is_stable_and_recorded_never_queued(make_app):
    app = make_app()
    ids = add_people(app, 200)
    cid = make_campaign(app, holdout="20%")
    _plan(app, cid, key=datetime(2026, 1, 1, tzinfo=UTC))
    _plan(app, cid, key=datetime(2026, 2, 1, tzinfo=UTC))
    rows = _rows(app, cid)
    first = {r.contact_id for r in rows if r.is_holdout and r.run_id == rows[0].run_id}
    second = {r.contact_id for r in rows if r.is_holdout and r.run_id != rows[0].run_id}
    assert first == second  # the same people are held out on every firing
    assert first == {i for i in ids if stable_fraction(cid, i, "holdout") * 100 < 20}
    assert 20 <= len(first) <= 60
    assert all(r.state == "held_out" for r in rows if r.is_holdout)
    assert all(r.state == "queued" for r in rows if not r.is_holdout)


def test_frequency_cap_counts_messages_across_campaigns(make_app):
    app = make_app()
    add_people(app, 4)
    first = make_campaign(app, "first", cap="1/7d")
    second = make_campaign(app, "second", cap="1/7d")
    assert _plan(app, first).counts["planned"] == 4
    with app.session() as s:  # what counts is what was handed over
        s.execute(Delivery.__table__.update().values(state="sent", sent_at=utcnow()))
    counts = _plan(app, second).counts
    assert counts["planned"] == 0 and counts["skipped"]["capped"] == 4
    third = make_campaign(app, "third", cap="2/7d")
    assert _plan(app, third).counts["planned"] == 4


def test_queued_messages_do_not_use_up_another_campaigns_cap(make_app):
    app = make_app()
    add_people(app, 3)
    drip = make_campaign(app, "drip", steps=["0d:welcome", "3d:newsletter", "5d:newsletter"], cap="1/7d")
    with app.session() as s:  # three steps queued per contact, none sent yet
        assert plan_drip(s, app.settings, s.get(Campaign, drip)).counts["planned"] == 9
    counts = _plan(app, make_campaign(app, "oneoff", cap="1/7d")).counts
    assert counts["planned"] == 3 and counts["skipped"]["capped"] == 0


def test_variants_split_by_weight_and_stay_put(make_app):
    app = make_app()
    add_people(app, 300)
    cid = make_campaign(app, template=None, variants=["A:welcome:80", "B:newsletter:20"])
    _plan(app, cid)
    rows = _rows(app, cid)
    share_a = sum(r.variant == "A" for r in rows) / len(rows)
    assert 0.7 < share_a < 0.9
    assert {(r.variant, r.template_name) for r in rows} == {("A", "welcome"), ("B", "newsletter")}


def test_local_time_and_quiet_hours_set_each_due_time(make_app):
    app = make_app()
    tokyo = add_people(app, 1, tz="Asia/Tokyo", prefix="tok")
    paris = add_people(app, 1, tz="Europe/Paris", prefix="par")
    nowhere = add_people(app, 1, prefix="nz")  # no zone: the campaign's (UTC)
    key = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    with time_machine.travel(key - timedelta(days=1), tick=False):  # defined the day before (a past --at is refused)
        cid = make_campaign(app, at="2026-12-01 09:00", local_time=True, quiet_hours="21:00-08:00")
    _plan(app, cid, key=key, now=key - timedelta(hours=14))
    due = {r.contact_id: r.due_at for r in _rows(app, cid)}
    assert due[tokyo[0]] == datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
    assert due[paris[0]] == datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    assert due[nowhere[0]] == datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def test_snapshots_lifecycle_on_each_row(make_app):
    app = make_app()
    add_people(app, 2)
    cid = make_campaign(app)
    _plan(app, cid)
    assert {r.lifecycle_stage for r in _rows(app, cid)} == {"prospect"}
    with app.session() as s:
        assert s.scalar(select(func.count()).select_from(Delivery)) == 2



def test_planning_in_chunks_writes_what_planning_at_once_does(make_app, monkeypatch):
    """A firing is planned a few contacts at a time (its memory is one chunk's): the rows,
    counts and capped list are those of planning the whole audience at once."""
    import scheduler.planner as planner

    app = make_app()
    add_people(app, 17)
    add_people(app, 3, consent=False, prefix="nc")
    with app.session() as s:
        suppression.add(s, app.settings, "email", "p4@example.com", "manual")
    earlier = make_campaign(app, "earlier", cap="1/7d")
    key = utcnow().replace(microsecond=0)
    _plan(app, earlier, key=key)
    with app.session() as s:  # three of them were sent the earlier campaign: at the cap
        s.execute(Delivery.__table__.update().where(Delivery.contact_id.in_(select(Delivery.contact_id).order_by(
            Delivery.contact_id).limit(3).scalar_subquery())).values(state="sent", sent_at=key))
    cid = make_campaign(app, template=None, variants=["A:welcome:50", "B:newsletter:50"], holdout="20%",
                        cap="1/7d", throttle="2/min")
    outcomes = []
    real_profiles = planner.profiles
    for chunk in (10_000, 3):
        monkeypatch.setattr(planner, "CHUNK", chunk)
        asked: list[int] = []
        monkeypatch.setattr(planner, "profiles",
                            lambda s, st, ids, asked=asked, **kw: asked.append(len(ids)) or real_profiles(s, st, ids, **kw))
        with app.session() as s:
            at = key + timedelta(hours=1)
            result = plan_firing(s, app.settings, s.get(Campaign, cid), at, at)
            rows = [(r.contact_id, r.variant, r.template_name, r.is_holdout, r.state, r.due_at) for r in
                    s.scalars(select(Delivery).where(Delivery.campaign_id == cid).order_by(Delivery.contact_id))]
            s.rollback()  # plan the same firing again with the other chunk size
        outcomes.append((result.counts, result.capped, rows))
        assert asked and max(asked) <= chunk, (result, asked)
    assert outcomes[0] == outcomes[1]
    counts, capped, rows = outcomes[0]
    assert counts["in_segment"] == 20 and counts["skipped"] == {"invalid_address": 0, "no_consent": 3, "suppressed": 1,
                                                                 "capped": 3}
    assert len(capped) == 3 and len(rows) == 13 and len({due for *_, due in rows}) > 1  # the throttle spread them


def test_the_ab_test_share_is_held_back_chunk_by_chunk_as_at_once(make_app, monkeypatch):
    """With --test-share, each chunk's rows outside the share wait for the winner: the rows
    and the waiting_for_winner count are those of planning the whole audience at once."""
    import scheduler.planner as planner

    app = make_app()
    add_people(app, 40)
    cid = make_campaign(app, template=None, variants=["A:welcome:50", "B:newsletter:50"], holdout="10%",
                        test_share="30%", winner_after="4h")
    key = utcnow().replace(microsecond=0) + timedelta(hours=1)
    outcomes = []
    for chunk in (10_000, 7):
        monkeypatch.setattr(planner, "CHUNK", chunk)
        with app.session() as s:
            result = plan_firing(s, app.settings, s.get(Campaign, cid), key, key)
            rows = [(r.contact_id, r.state, r.variant, r.template_name, r.ab_remainder, r.is_holdout) for r in
                    s.scalars(select(Delivery).where(Delivery.campaign_id == cid).order_by(Delivery.contact_id))]
            s.rollback()
        outcomes.append((result.counts, rows))
    assert outcomes[0] == outcomes[1]
    counts, rows = outcomes[0]
    waiting = [r for r in rows if r[1] == "waiting"]
    assert waiting and counts["waiting_for_winner"] == len(waiting)
    assert all(r[4] and r[2] is None and r[3] is None for r in waiting)
    assert counts["planned"] == len([r for r in rows if r[1] == "queued"]) and counts["planned"] > 0
    assert counts["planned"] + counts["held_out"] + len(waiting) == 40
