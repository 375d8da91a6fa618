"""Exit and goal: a drip's `--exit-when` and `--goal` filters, checked just before a step goes.

Right after a batch is claimed (before it is rendered and handed over), the rows of drips
with an exit or goal filter are checked against it at that moment: a contact who matches
leaves the journey. The row and every later step of that enrolment are cancelled, and the
enrolment records when and why ("goal: FILTER" counts as a conversion in the report,
"exit: FILTER" as an exit). The goal is checked first: a contact who reached it converted.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from campaigns.context import App
from campaigns.errors import InputError
from campaigns.segments import compile_where
from campaigns.store.db import session_scope
from campaigns.store.models import Campaign, Contact, Delivery, DripEnrollment
from campaigns.vocab import JOURNEY_EXIT_NOTES, DeliveryState
from scheduler.outbox import Claimed

log = logging.getLogger("campaigns.dispatcher")
WAITING = (DeliveryState.QUEUED, DeliveryState.RETRY_WAIT, DeliveryState.CLAIMED)
LEFT, LEFT_BEFORE = JOURNEY_EXIT_NOTES


def _matching(session: Session, app: App, text: str, ids: list[int], now: datetime) -> set[int]:
    try:
        where = compile_where(text, app.settings, now, session=session)
    except InputError as exc:  # a segment it names was deleted since: say so, let the step go
        log.warning("exit/goal filter %r no longer compiles: %s", text, exc)
        return set()
    return set(session.scalars(select(Contact.id).where(Contact.id.in_(ids), where)))


def _leave(session: Session, rows: list[Claimed], occurrence: dict[int, int], reason: str, now: datetime) -> None:
    """Cancel these rows and the rest of their enrolments' steps; record why on the enrolments."""
    enrolments = sorted({occurrence[r.id] for r in rows if occurrence.get(r.id)})
    # The step where they left says so (the per-step report counts exits there); later steps say "before".
    session.execute(update(Delivery).where(Delivery.id.in_([r.id for r in rows]))
                    .values(state=DeliveryState.CANCELLED, error=f"{LEFT}{reason}"[:500], lease_until=None, updated_at=now))
    if enrolments:
        session.execute(update(Delivery).where(Delivery.occurrence.in_(enrolments), Delivery.state.in_(WAITING),
                                               Delivery.campaign_id.in_({r.campaign_id for r in rows}))
                        .values(state=DeliveryState.CANCELLED, error=f"{LEFT_BEFORE}{reason}"[:500], lease_until=None,
                                updated_at=now))
        session.execute(update(DripEnrollment).where(DripEnrollment.id.in_(enrolments), DripEnrollment.exited_at.is_(None))
                        .values(exited_at=now, exit_reason=reason[:300]))


def check(app: App, batch: list[Claimed], now: datetime) -> list[Claimed]:
    """The batch without the rows whose contact left their journey (those are cancelled)."""
    ids = {r.campaign_id for r in batch}
    with session_scope(app.engine, immediate=True) as session:
        rules = {cid: (goal, exit_when) for cid, goal, exit_when in session.execute(
            select(Campaign.id, Campaign.goal, Campaign.exit_when).where(
                Campaign.id.in_(ids), (Campaign.goal.is_not(None)) | (Campaign.exit_when.is_not(None))))}
        if not rules:
            return batch
        ruled = [r for r in batch if r.campaign_id in rules]
        occurrence = dict(session.execute(select(Delivery.id, Delivery.occurrence).where(
            Delivery.id.in_([r.id for r in ruled]))).all())
        gone: set[int] = set()
        for cid, (goal, exit_when) in rules.items():
            rows = [r for r in ruled if r.campaign_id == cid]
            for kind, text in (("goal", goal), ("exit", exit_when)):
                if not text:
                    continue
                left = [r for r in rows if r.id not in gone]
                hit = _matching(session, app, text, sorted({r.contact_id for r in left}), now)
                leaving = [r for r in left if r.contact_id in hit]
                if leaving:
                    _leave(session, leaving, occurrence, f"{kind}: {text}", now)
                    gone.update(r.id for r in leaving)
        return [r for r in batch if r.id not in gone]
