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

from campaigns.store.models import Attribution, Campaign, Delivery, Event
from campaigns.vocab import JOURNEY_EXIT_NOTES, DeliveryState, EventType

COLUMNS = ["step", "offset", "template", "entered", "sent", "opened", "clicked", "converted", "exited", "exit_reasons"]


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
