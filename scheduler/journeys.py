"""Branching journeys, run: each enrolled contact moves through the steps (campaigns/journey_defs.py).

Called on every tick of the campaign, right after its trigger enrolled the newcomers
(scheduler/triggers.py), in the same transaction. Where a contact is, is their open
`journey_visit` (one per enrolment and step: the journey has no cycle, so a step is
reached once per enrolment; a daemon killed mid-tick rolls the whole move back, and the
next tick does it again, which the unique keys make harmless).

- send: one outbox row (the step's number, the enrolment as its occurrence), due when the
  step was reached, pushed out of quiet hours: the very row a drip step writes, so consent,
  suppression, quiet hours, local time, the frequency cap, throttles, holdouts, exit and
  goal rules are checked at hand-over as for any message. The contact moves on at once.
- wait: moves on `for` after reaching it.
- branch: `yes` as soon as the condition holds (looked at on every tick), `no` when the
  window (`within`, counted from reaching the branch) has ended without it. opened: a human
  open or click of the journey's message (`of`, else any sent in this enrolment) by the
  window's end; clicked: a human click; purchased / event:NAME: one after the contact
  entered the journey (not the one that enrolled them) and by the window's end; filter:
  the contact matches it when looked at.
- exit: the journey ends there for the contact (reported as exited, "exit step ID"); a send
  queued just before is still checked against the exit and goal rules at its hand-over.
A step without `next` ends the journey there. An enrolment that left (its exit rule or goal
matched at a hand-over, scheduler/exits.py) moves no further.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, insert, select, update
from sqlalchemy.orm import Session

from campaigns.config import Settings
from campaigns.errors import InputError
from campaigns.journey_defs import index_of
from campaigns.segments import compile_where, profiles
from campaigns.store.models import Campaign, CampaignRun, Contact, CustomEvent, Delivery, DripEnrollment, Event, JourneyVisit, Purchase
from campaigns.vocab import EventType
from scheduler.planner import _get_or_create_run, _insert, _rows, quiet_hours_of
from scheduler.sendtime import push_out_of_quiet, zone

CHUNK = 5000
MAX_PASSES = 200  # steps moved through in one tick (a journey has no cycle: its length bounds a contact's)


@dataclass
class Here:
    """An open visit: who is at which step since when, and their enrolment."""

    visit_id: int
    enrollment_id: int
    contact_id: int
    step: int
    entered_at: datetime
    due_at: datetime
    enrolled_at: datetime
    occurrence: str


def _chunks(ids: list[Any]) -> Iterator[list[Any]]:
    for i in range(0, len(ids), CHUNK):
        yield ids[i:i + CHUNK]


def _due(step: dict[str, Any], at: datetime) -> datetime:
    if step["kind"] == "wait":
        return at + timedelta(seconds=step["for_seconds"])
    if step["kind"] == "branch":
        return at + timedelta(seconds=step["within_seconds"])
    return at


def advance(session: Session, settings: Settings, c: Campaign, now: datetime) -> dict[str, int]:
    """Move every enrolment of this journey as far as it can go at `now`; counts of moves by outcome."""
    journey = c.journey
    assert journey is not None
    steps = journey["steps"]
    run, _ = _get_or_create_run(session, c, c.created_at, now)
    _close_left(session, c, now)
    _start(session, c, index_of(journey)[journey["start"]], steps[index_of(journey)[journey["start"]]])
    moved: dict[str, int] = {}
    for n in range(MAX_PASSES):
        done = 0
        for i, step in enumerate(steps):
            # A branch's condition is looked at once a tick (the first pass); later passes take what fell due.
            here = _open_at(session, c, i, now, every=step["kind"] == "branch" and n == 0)
            if here:
                done += _move(session, settings, c, run, journey, i, here, now, moved)
        if not done:
            break
    return moved


def _close_left(session: Session, c: Campaign, now: datetime) -> None:
    """Enrolments that left (exit rule or goal, at a hand-over) move no further."""
    gone = select(DripEnrollment.id).where(DripEnrollment.campaign_id == c.id, DripEnrollment.exited_at.is_not(None))
    session.execute(update(JourneyVisit).where(JourneyVisit.campaign_id == c.id, JourneyVisit.left_at.is_(None),
                                               JourneyVisit.enrollment_id.in_(gone))
                    .values(left_at=now, outcome="left"))


def _start(session: Session, c: Campaign, first: int, step: dict[str, Any]) -> None:
    """Every enrolment not yet in the journey is put at its start (at the moment it entered)."""
    new = list(session.execute(select(DripEnrollment.id, DripEnrollment.contact_id, DripEnrollment.entered_at).where(
        DripEnrollment.campaign_id == c.id, DripEnrollment.exited_at.is_(None),
        ~exists().where(JourneyVisit.enrollment_id == DripEnrollment.id))))
    for part in _chunks(new):
        session.execute(insert(JourneyVisit), [
            {"enrollment_id": e, "campaign_id": c.id, "contact_id": cid, "step": first, "entered_at": at,
             "due_at": _due(step, at)} for e, cid, at in part])


def _open_at(session: Session, c: Campaign, step: int, now: datetime, *, every: bool) -> list[Here]:
    """The open visits at a step that are due (every one, for a branch: its condition may hold early)."""
    q = select(JourneyVisit.id, JourneyVisit.enrollment_id, JourneyVisit.contact_id, JourneyVisit.step,
               JourneyVisit.entered_at, JourneyVisit.due_at, DripEnrollment.entered_at, DripEnrollment.occurrence) \
        .join(DripEnrollment, DripEnrollment.id == JourneyVisit.enrollment_id) \
        .where(JourneyVisit.campaign_id == c.id, JourneyVisit.step == step, JourneyVisit.left_at.is_(None),
               DripEnrollment.exited_at.is_(None)).order_by(JourneyVisit.id)
    if not every:
        q = q.where(JourneyVisit.due_at <= now)
    return [Here(*row) for row in session.execute(q)]


def _move(session: Session, settings: Settings, c: Campaign, run: CampaignRun, journey: dict[str, Any], i: int,
          here: list[Here], now: datetime, moved: dict[str, int]) -> int:
    """Act at step i for these visits and move them on; how many moved."""
    step = journey["steps"][i]
    kind = step["kind"]
    onward: list[tuple[Here, str, datetime, str | None]] = []  # (visit, outcome, when it left, next step id)
    if kind == "send":
        _send(session, settings, c, run, i, step["template"], here, now)
        onward = [(h, "sent", h.entered_at, step.get("next")) for h in here]
    elif kind == "wait":
        onward = [(h, "waited", h.due_at, step.get("next")) for h in here]
    elif kind == "exit":  # the journey ends here; the enrolment's exited_at stays for the exit and goal rules,
        onward = [(h, "exit", now, None) for h in here]  # which may still stop a send handed over just before
    else:
        holds = _holds(session, settings, c, journey, step, here, now)
        for h in here:
            if h.visit_id in holds:
                onward.append((h, "yes", max(h.entered_at, min(now, h.due_at)), step["yes"]))
            elif h.due_at <= now:
                onward.append((h, "no", h.due_at, step["no"]))
    index = index_of(journey)
    for _h, outcome, _at, _nxt in onward:
        moved[outcome] = moved.get(outcome, 0) + 1
    for part in _chunks([{"id": h.visit_id, "left_at": at, "outcome": outcome} for h, outcome, at, _n in onward]):
        session.execute(update(JourneyVisit), part)  # by primary key, one statement per chunk
    rows = [{"enrollment_id": h.enrollment_id, "campaign_id": c.id, "contact_id": h.contact_id, "step": index[nxt],
             "entered_at": at, "due_at": _due(journey["steps"][index[nxt]], at)} for h, _o, at, nxt in onward if nxt]
    for part in _chunks(rows):
        session.execute(insert(JourneyVisit), part)
    return len(onward)


def _send(session: Session, settings: Settings, c: Campaign, run: CampaignRun, i: int, template: str,
          here: list[Here], now: datetime) -> None:
    """The step's outbox rows (the drip path: planner._rows), due when reached, out of quiet hours."""
    quiet = quiet_hours_of(settings, c)
    for part in _chunks(here):
        tz = dict(session.execute(select(Contact.id, Contact.timezone).where(Contact.id.in_([h.contact_id for h in part]))).all())
        snap = profiles(session, settings, [h.contact_id for h in part], at=now)
        people = [(h.contact_id, push_out_of_quiet(h.entered_at, zone(tz.get(h.contact_id), c.timezone), quiet)) for h in part]
        rows, _held = _rows(c, run, people, i, lambda _cid: (None, template), snap, now, [h.enrollment_id for h in part])
        _insert(session, rows)


def _holds(session: Session, settings: Settings, c: Campaign, journey: dict[str, Any], step: dict[str, Any],
           here: list[Here], now: datetime) -> set[int]:
    """The visits (ids) whose branch condition holds."""
    what, _, name = step["on"].partition(":")
    if what in ("opened", "clicked"):
        types = (EventType.OPEN, EventType.CLICK) if what == "opened" else (EventType.CLICK,)
        first: dict[int, datetime] = {}
        for part in _chunks([h.enrollment_id for h in here]):
            q = select(Delivery.occurrence, func.min(Event.occurred_at)).join(Event, Event.delivery_id == Delivery.id) \
                .where(Delivery.campaign_id == c.id, Delivery.occurrence.in_(part), Event.type.in_(types),
                       Event.is_machine.is_(False)).group_by(Delivery.occurrence)
            if step.get("of"):
                q = q.where(Delivery.step == index_of(journey)[step["of"]])
            first.update(dict(session.execute(q).all()))
        return {h.visit_id for h in here if h.enrollment_id in first and first[h.enrollment_id] <= h.due_at}
    if what == "filter":
        try:
            where = compile_where(step["filter"], settings, now, session=session)
        except InputError:  # a segment it names was deleted since: the condition cannot hold
            return set()
        hit: set[int] = set()
        for part in _chunks(sorted({h.contact_id for h in here})):
            hit.update(session.scalars(select(Contact.id).where(Contact.id.in_(part), where)))
        return {h.visit_id for h in here if h.contact_id in hit}
    since = min(h.enrolled_at for h in here)
    seen: dict[int, list[tuple[str, datetime]]] = {}
    for part in _chunks(sorted({h.contact_id for h in here})):
        if what == "purchased":
            found = select(Purchase.contact_id, Purchase.id, Purchase.occurred_at).where(
                Purchase.contact_id.in_(part), Purchase.occurred_at > since, Purchase.occurred_at <= now)
            prefix = "purchase"
        else:
            found = select(CustomEvent.contact_id, CustomEvent.id, CustomEvent.occurred_at).where(
                CustomEvent.contact_id.in_(part), CustomEvent.name == name, CustomEvent.occurred_at > since,
                CustomEvent.occurred_at <= now)
            prefix = "event"
        for cid, oid, at in session.execute(found):
            seen.setdefault(cid, []).append((f"{prefix}:{oid}", at))
    return {h.visit_id for h in here
            if any(key != h.occurrence and h.enrolled_at < at <= h.due_at for key, at in seen.get(h.contact_id, []))}
