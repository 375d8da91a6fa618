"""Per-step report of a drip or triggered journey: for each step, how many entered it (had it
planned), were sent it, opened, clicked, converted (attributed purchases, as in the funnel),
and exited there (and why: the goal reached, or the exit rule matched).

A contact who leaves at a step is counted at that step only (scheduler/exits.py marks the
step they left at apart from the later ones they will not get). Grouped SQL, one query per
measure, like the campaign report.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from campaigns.journey_defs import step_label
from campaigns.store.models import Attribution, Campaign, Delivery, Event, JourneyVisit
from campaigns.vocab import JOURNEY_EXIT_NOTES, DeliveryState, EventType

COLUMNS = ["step", "offset", "template", "entered", "sent", "opened", "clicked", "converted", "exited", "exit_reasons"]
# A branching journey's steps: what each does instead of an offset, and the paths its branches sent contacts down.
JOURNEY_COLUMNS = ["step", "what", "template", "entered", "sent", "opened", "clicked", "converted", "paths", "exited",
                   "exit_reasons"]


def columns_of(rows: list[dict[str, Any]]) -> list[str]:
    """The table's columns for these rows (a drip's or a journey's)."""
    return JOURNEY_COLUMNS if rows and "what" in rows[0] else COLUMNS


def _offset(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def step_report(session: Session, c: Campaign) -> list[dict[str, Any]]:
    """One row per step of a drip (empty for other campaigns)."""
    if c.schedule_kind != "drip":
        return []
    d = Delivery
    mine = (d.campaign_id == c.id, d.is_holdout.is_(False))
    entered = dict(session.execute(select(d.step, func.count()).where(*mine).group_by(d.step)).all())
    sent = dict(session.execute(select(d.step, func.count()).where(*mine, d.state == DeliveryState.SENT).group_by(d.step)).all())
    engaged: dict[tuple[int, str], int] = {
        (step, kind): n for step, kind, n in session.execute(
            select(d.step, Event.type, func.count(distinct(Event.delivery_id))).join(Event, Event.delivery_id == d.id)
            .where(*mine, Event.type.in_((EventType.OPEN, EventType.CLICK)), Event.is_machine.is_(False))
            .group_by(d.step, Event.type))}
    converted = dict(session.execute(
        select(d.step, func.count(distinct(Attribution.contact_id))).join(Attribution, Attribution.delivery_id == d.id)
        .where(*mine, Attribution.is_holdout.is_(False)).group_by(d.step)).all())
    left = JOURNEY_EXIT_NOTES[0]
    reasons: dict[int, dict[str, int]] = {}
    for step, error, n in session.execute(
            select(d.step, d.error, func.count()).where(*mine, d.state == DeliveryState.CANCELLED, d.error.like(f"{left}%"))
            .group_by(d.step, d.error)):
        reason = (error or "")[len(left):]
        reasons.setdefault(step, {})[reason] = reasons.get(step, {}).get(reason, 0) + n
    if c.journey:
        return _journey_rows(session, c, entered, sent, engaged, converted, reasons)
    rows = []
    for i, spec in enumerate(c.steps or []):
        why = reasons.get(i, {})
        rows.append({
            "step": i + 1, "offset": _offset(int(spec["offset_seconds"])), "template": spec["template"],
            "entered": entered.get(i, 0), "sent": sent.get(i, 0), "opened": engaged.get((i, EventType.OPEN), 0),
            "clicked": engaged.get((i, EventType.CLICK), 0), "converted": converted.get(i, 0),
            "exited": sum(why.values()), "exit_reasons": why,
        })
    return rows


def _journey_rows(session: Session, c: Campaign, planned: dict[int, int], sent: dict[int, int],
                  engaged: dict[tuple[int, str], int], converted: dict[int, int],
                  reasons: dict[int, dict[str, int]]) -> list[dict[str, Any]]:
    """A journey's steps: entered = contacts who reached the step (journey_visit), paths = branch outcomes,
    exited = left at a send (exit rule, goal) or ended at an exit step."""
    assert c.journey is not None
    v = JourneyVisit
    reached = dict(session.execute(select(v.step, func.count()).where(v.campaign_id == c.id).group_by(v.step)).all())
    paths: dict[int, dict[str, int]] = {}
    for step, outcome, n in session.execute(select(v.step, v.outcome, func.count()).where(
            v.campaign_id == c.id, v.outcome.in_(("yes", "no"))).group_by(v.step, v.outcome)):
        paths.setdefault(step, {})[str(outcome)] = n
    ended = dict(session.execute(select(v.step, func.count()).where(v.campaign_id == c.id, v.outcome == "exit")
                                 .group_by(v.step)).all())
    for step, n in ended.items():
        spec = c.journey["steps"][step]
        reason = f"exit step {spec['id']}" + (f": {spec['reason']}" if spec.get("reason") else "")
        reasons.setdefault(step, {})[reason] = reasons.get(step, {}).get(reason, 0) + n
    rows = []
    for i, spec in enumerate(c.journey["steps"]):
        why = reasons.get(i, {})
        branch = spec["kind"] == "branch"
        rows.append({
            "step": spec["id"], "what": step_label(spec), "template": spec.get("template", ""),
            "entered": reached.get(i, planned.get(i, 0)), "sent": sent.get(i, 0),
            "opened": engaged.get((i, EventType.OPEN), 0), "clicked": engaged.get((i, EventType.CLICK), 0),
            "converted": converted.get(i, 0),
            "paths": {"yes": paths.get(i, {}).get("yes", 0), "no": paths.get(i, {}).get("no", 0)} if branch else {},
            "exited": sum(why.values()), "exit_reasons": why,
        })
    return rows
