"""The report's grouped SQL gives the same figures as a straightforward Python reading of every row."""

import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select

from campaigns.reports import itt
from campaigns.reports.campaign import campaign_report
from campaigns.store.models import Attribution, Campaign, CampaignRun, Delivery, Event, Purchase
from tests.reports.builders import campaign_with_contacts

T = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)
WINDOW = timedelta(days=3)


def _reference_itt(s, c, now):
    """Every delivery and purchase read into Python: per contact, the first started delivery's
    assignment; converted when a purchase lies in [start, start + window] of any started delivery."""
    clocks = {}
    for d in s.scalars(select(Delivery).where(Delivery.campaign_id == c.id).order_by(Delivery.id)):
        at = d.sent_at or d.due_at
        if at <= now and d.state != "waiting":  # a row waiting for an A/B winner has no treatment yet
            clocks.setdefault(d.contact_id, (bool(d.is_holdout), d.variant, []))[2].append(at)
    spent = {}
    for p in s.scalars(select(Purchase)):
        if p.contact_id in clocks and any(t <= p.occurred_at <= t + WINDOW for t in clocks[p.contact_id][2]):
            spent[p.contact_id] = spent.get(p.contact_id, 0) + p.amount_cents
    return {cid: itt.Outcome(held, variant, spent.get(cid)) for cid, (held, variant, _) in clocks.items()}


def _shop(s, rng, several=True):
    """A campaign's deliveries, events and purchases at random; `several`: some contacts have more
    than one delivery (drips and re-runs), else each has one (a one-off firing)."""
    c, run, ids = campaign_with_contacts(s, name="random", at=T, contacts=400, prefix="r", holdout_pct=20, status="completed",
                                         attribution_window_seconds=int(WINDOW.total_seconds()))
    conn = s.connection()
    rows = []
    for cid in ids:
        held, variant = rng.random() < 0.2, rng.choice(["A", "B", None])
        for step in range(rng.choice([1, 1, 2, 3] if several else [1])):  # drips and re-runs: several clocks per contact
            due = T + timedelta(days=rng.choice([0, 1, 2, 5, 40]), seconds=rng.randrange(86400), microseconds=rng.randrange(10**6))
            state = "held_out" if held else rng.choice(["sent", "sent", "sent", "failed", "unknown", "queued", "waiting"])
            rows.append({"run_id": run.id, "campaign_id": c.id, "contact_id": cid, "channel": "email", "step": step,
                         "variant": variant, "is_holdout": held, "state": state, "attempts": 1, "due_at": due,
                         "sent_at": due + timedelta(minutes=rng.randrange(90)) if state == "sent" else None,
                         "lifecycle_stage": rng.choice(["new", "active", None]), "rfm_segment": rng.choice(["loyal", "lost"])})
    elsewhere = Campaign(name="elsewhere", channel="email", segment_id=c.segment_id, schedule_kind="manual", variants=[], steps=[],
                         utm={}, status="completed")
    s.add(elsewhere)
    s.flush()
    elsewhere_run = CampaignRun(campaign_id=elsewhere.id, scheduled_for=T, status="done", counts={})
    s.add(elsewhere_run)
    s.flush()
    other = conn.execute(insert(Delivery).returning(Delivery.id, sort_by_parameter_order=True), [
        {"run_id": elsewhere_run.id, "campaign_id": elsewhere.id, "contact_id": cid, "channel": "email", "step": 0, "variant": "A", "is_holdout": False,
         "state": "sent", "attempts": 1, "due_at": T, "sent_at": T, "lifecycle_stage": "new", "rfm_segment": "loyal"}
        for cid in ids[:5]]).scalars().all()
    deliveries = conn.execute(insert(Delivery).returning(Delivery.id, Delivery.contact_id, Delivery.sent_at, Delivery.due_at,
                                                         sort_by_parameter_order=True), rows).all()
    events, purchases = [], []
    for n, (did, cid, sent_at, due_at) in enumerate(deliveries):
        start = sent_at or due_at
        for k in range(rng.randrange(6)):
            kind = rng.choice(["open", "open", "click", "bounce", "unsubscribe", "complaint", "delivered"])
            events.append({"delivery_id": did, "campaign_id": c.id, "contact_id": cid, "type": kind, "is_machine": rng.random() < 0.3,
                           "occurred_at": start + timedelta(hours=rng.randrange(200)), "dedup_key": f"e{n}-{k}", "data": {}})
        if rng.random() < 0.3:  # on the window's edges, a microsecond either side, and anywhere near
            at = start + rng.choice([timedelta(0), WINDOW, WINDOW + timedelta(microseconds=1), -timedelta(microseconds=1),
                                     timedelta(hours=rng.randrange(-100, 200))])
            purchases.append({"order_id": f"o{n}", "contact_id": cid, "amount_cents": rng.randrange(100, 30000),
                              "currency": "USD", "source": "test", "occurred_at": at})
    for n in range(12):  # responses the funnel counts but no breakdown can place: no delivery, another campaign's
        kind = rng.choice(["open", "click", "unsubscribe", "complaint"])
        events.append({"delivery_id": None if n % 2 else other[n % len(other)], "campaign_id": c.id, "contact_id": ids[n],
                       "type": kind, "is_machine": n % 3 == 0, "occurred_at": T + timedelta(hours=n), "dedup_key": f"x{n}",
                       "data": {}})
    conn.execute(insert(Event), events)
    pids = conn.execute(insert(Purchase).returning(Purchase.id, sort_by_parameter_order=True), purchases).scalars().all()
    by_contact = {}
    for did, cid, _sent_at, _due_at in deliveries:
        by_contact.setdefault(cid, did)
    held_ids = {r["contact_id"] for r in rows if r["is_holdout"]}
    conn.execute(insert(Attribution), [  # credit for some purchases, a contact sometimes credited twice
        {"purchase_id": pid, "delivery_id": by_contact[p["contact_id"]], "campaign_id": c.id, "contact_id": p["contact_id"],
         "is_holdout": p["contact_id"] in held_ids, "rule": "click", "credited_cents": p["amount_cents"]}
        for pid, p in zip(pids, purchases, strict=True) if rng.random() < 0.6])
    return c


@pytest.mark.parametrize(("seed", "several"), [(1, True), (2, True), (3, False), (4, False)])
def test_grouped_itt_and_breakdowns_match_a_python_reference(app, seed, several):
    rng = random.Random(seed)
    now = T + timedelta(days=3)  # some clocks have not started yet
    with app.session() as s:
        c = _shop(s, rng, several)
    with app.session(write=False) as s:
        c = s.get(Campaign, c.id)
        grouped, reference = itt.summary(s, c, now), _reference_itt(s, c, now)
        for held in (False, True):
            for variant in (None, "A", "B"):
                g, r = itt.group(grouped, held, variant), itt.group(reference, held, variant)
                assert (g.contacts, g.converters) == (r.contacts, r.converters)
                assert g.revenue == pytest.approx(r.revenue, abs=1e-6)
                assert sorted(g.buyer_revenue) == pytest.approx(sorted(r.buyer_revenue))
        assert itt.group(reference, False).converters > 0 and itt.group(reference, True).converters > 0
        report = campaign_report(s, app.settings, c, now)
        for side, held in (("treated", False), ("holdout", True)):  # the contacts the report's own pass counted
            r = itt.group(reference, held)
            assert (report["lift"][side]["contacts"], report["lift"][side]["converters"]) == (r.contacts, r.converters)
            assert report["lift"][side]["revenue"] == pytest.approx(r.revenue, abs=1e-6)
        all_d = list(s.scalars(select(Delivery).where(Delivery.campaign_id == c.id)))
        all_e = list(s.scalars(select(Event).where(Event.campaign_id == c.id)))
        credit = list(s.scalars(select(Attribution).where(Attribution.campaign_id == c.id, Attribution.is_holdout.is_(False))))
        orders = list(s.scalars(select(Purchase).join(Attribution, Attribution.purchase_id == Purchase.id)
                                .where(Attribution.campaign_id == c.id)))
    def with_event(kind, human_only):
        return len({e.delivery_id for e in all_e if e.type == kind and (not human_only or not e.is_machine)})
    f = report["funnel"]
    assert (f["bounced"], f["opened"], f["clicked"], f["unsubscribed"], f["complaints"]) == (
        with_event("bounce", False), with_event("open", True), with_event("click", True),
        with_event("unsubscribe", False), with_event("complaint", False))
    assert f["opened_machine_only"] == with_event("open", False) - with_event("open", True)
    for name, attr in (("by_variant", "variant"), ("by_lifecycle", "lifecycle_stage"), ("by_rfm_segment", "rfm_segment")):
        key = {d.id: getattr(d, attr) for d in all_d}
        sent_keys = {getattr(d, attr) for d in all_d if d.state == "sent"}
        expected = {}
        for k in sent_keys:
            expected[k] = (sum(1 for d in all_d if d.state == "sent" and getattr(d, attr) == k),
                           len({e.delivery_id for e in all_e if e.type == "open" and not e.is_machine and key.get(e.delivery_id, -1) == k}),
                           len({e.delivery_id for e in all_e if e.type == "click" and not e.is_machine and key.get(e.delivery_id, -1) == k}))
        assert {r["group"]: (r["sent"], r["opened"], r["clicked"]) for r in report[name]} == expected
    states = {}
    for d in all_d:
        states[d.state] = states.get(d.state, 0) + 1
    assert (f["held_out"], f["sent"], f["failed"], f["unknown"], f["waiting_for_winner"], f["queued"]) == (
        states.get("held_out", 0), states.get("sent", 0), states.get("failed", 0), states.get("unknown", 0),
        states.get("waiting", 0), states.get("queued", 0))
    assert f["planned"] == len(all_d) - states.get("held_out", 0) - states.get("waiting", 0)
    # converted over the distinct contacts sent (several sends to one contact count once)
    sent_contacts = {d.contact_id for d in all_d if d.state == "sent"}
    assert (len(sent_contacts) < states["sent"]) is several and f["converted"] == len({a.contact_id for a in credit}) > 0
    assert report["rates"]["conversion_rate"] == f["converted"] / len(sent_contacts)
    # the timeline: its unit from the span of every event and attributed order, each delivery once per bucket
    times = [e.occurred_at for e in all_e] + [s_p.occurred_at for s_p in orders]
    unit = "day" if max(times) - min(times) > timedelta(days=3) else "hour"
    fmt = "%Y-%m-%d" if unit == "day" else "%Y-%m-%d %H:00"
    buckets = {}
    for e in all_e:
        if e.type in ("open", "click") and not e.is_machine and e.delivery_id is not None:
            buckets.setdefault((e.type, e.occurred_at.strftime(fmt)), set()).add(e.delivery_id)
    tl = report["timeline"]
    assert tl["bucket"] == unit
    assert {(kind, r["at"]): r[kind + "s"] for r in tl["rows"] for kind in ("open", "click") if r[kind + "s"]} == {
        k: len(v) for k, v in buckets.items()}
