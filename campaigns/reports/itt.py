"""Intention-to-treat outcomes of one campaign: who was assigned what, and who bought when.

A contact's clock starts at each of their deliveries in the campaign: the send time, or
the due time for a held-out contact (and for an assigned one the send never reached).
They convert when any purchase falls inside the campaign's window after one of those
times (both ends inclusive), whatever other campaigns did; their revenue is the sum of
those purchases. Attribution (credit) plays no part here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns.models import Campaign, Delivery, Purchase
from campaigns.reports.stats import Group


@dataclass(frozen=True)
class Outcome:
    """One contact's assignment and result (revenue_cents None: did not convert)."""

    held_out: bool
    variant: str | None
    revenue_cents: int | None


def outcomes(session: Session, c: Campaign, now: datetime) -> dict[int, Outcome]:
    """Every contact whose clock has started (due time passed), keyed by contact id."""
    d, window = Delivery, timedelta(seconds=c.attribution_window_seconds)
    start = func.coalesce(d.sent_at, d.due_at)
    clocks: dict[int, tuple[bool, str | None, list[datetime]]] = {}
    for contact_id, held, variant, at in session.execute(select(d.contact_id, d.is_holdout, d.variant, start)
                                                         .where(d.campaign_id == c.id, start <= now)):
        clocks.setdefault(contact_id, (bool(held), variant, []))[2].append(at)
    first = (select(d.contact_id, func.min(start).label("first_at")).where(d.campaign_id == c.id, start <= now)
             .group_by(d.contact_id).subquery())
    spent: dict[int, int] = {}
    for contact_id, occurred_at, cents in session.execute(
            select(Purchase.contact_id, Purchase.occurred_at, Purchase.amount_cents)
            .join(first, first.c.contact_id == Purchase.contact_id).where(Purchase.occurred_at >= first.c.first_at)):
        if any(t <= occurred_at <= t + window for t in clocks[contact_id][2]):
            spent[contact_id] = spent.get(contact_id, 0) + int(cents)
    return {cid: Outcome(held, variant, spent.get(cid)) for cid, (held, variant, _) in clocks.items()}


def group(found: dict[int, Outcome], held_out: bool, variant: str | None = None) -> Group:
    """The treated (or held-out) group, optionally one variant's share of it."""
    members = [o for o in found.values() if o.held_out is held_out and (variant is None or o.variant == variant)]
    buyers = tuple(o.revenue_cents / 100 for o in members if o.revenue_cents is not None)
    return Group(len(members), len(buyers), sum(buyers), buyers)
