"""Purchases -> the campaign delivery that most plausibly caused them; holdout baseline.

Rules (pure, in `choose`): an order carrying `utm_campaign` goes to that campaign's latest
delivery to the buyer. Otherwise, among deliveries sent to the buyer within their
campaign's attribution window before the order, a click beats a human open beats a plain
delivery, and the latest touch wins among equals. With no such touch, an order inside the
window of a holdout record (a contact held out of a campaign) is credited to the holdout.
Each purchase is credited at most once; recomputing gives the same answer.

Credit is for revenue reporting only: a campaign's lift is measured intention-to-treat
from purchases and holdout records (reports/campaign.py), never from these credits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from campaigns.config import Settings
from campaigns.store.models import Attribution, Campaign, Delivery, Event, Purchase

RANK = {"click": 3, "open": 2, "delivery": 1}


@dataclass(frozen=True)
class Touch:
    """One delivery as a candidate for credit."""

    delivery_id: int
    campaign_id: int
    sent_at: datetime
    window: timedelta
    click_at: datetime | None = None
    open_at: datetime | None = None
    is_holdout: bool = False
    campaign_names: tuple[str, ...] = ()


def choose(order_at: datetime, utm: str | None, touches: list[Touch]) -> tuple[Touch, str] | None:
    """The credited touch and its rule, or None. Pure: the whole rule lives here."""
    live = [t for t in touches if not t.is_holdout and t.sent_at <= order_at]
    if utm:
        named = [t for t in live if utm in t.campaign_names]
        if named:
            return max(named, key=lambda t: (t.sent_at, t.delivery_id)), "utm"
    ranked = []
    for t in live:
        if order_at - t.sent_at > t.window:
            continue
        if t.click_at is not None and t.click_at <= order_at:
            ranked.append((RANK["click"], t.click_at, t.delivery_id, t, "click"))
        elif t.open_at is not None and t.open_at <= order_at:
            ranked.append((RANK["open"], t.open_at, t.delivery_id, t, "open"))
        else:
            ranked.append((RANK["delivery"], t.sent_at, t.delivery_id, t, "delivery"))
    if ranked:
        best = max(ranked, key=lambda r: (r[0], r[1], r[2]))
        return best[3], best[4]
    held = [t for t in touches if t.is_holdout and t.sent_at <= order_at and order_at - t.sent_at <= t.window]
    if held:
        return max(held, key=lambda t: (t.sent_at, t.delivery_id)), "holdout"
    return None


def _touches(session: Session, contact_id: int, before: datetime) -> list[Touch]:
    d = Delivery
    rows = session.execute(
        select(d.id, d.campaign_id, d.is_holdout, d.sent_at, d.due_at,
               Campaign.attribution_window_seconds, Campaign.name, Campaign.utm)
        .join(Campaign, Campaign.id == d.campaign_id)
        .where(d.contact_id == contact_id, or_(d.state == "sent", d.is_holdout.is_(True)))).all()
    if not rows:
        return []
    ids = [r.id for r in rows]
    firsts = {(did, typ): at for did, typ, at in session.execute(
        select(Event.delivery_id, Event.type, func.min(Event.occurred_at))
        .where(Event.delivery_id.in_(ids), Event.type.in_(("click", "open")), Event.is_machine.is_(False),
               Event.occurred_at <= before)
        .group_by(Event.delivery_id, Event.type))}
    out = []
    for r in rows:
        # A holdout member "would have been sent" when the others were due.
        when = r.sent_at if not r.is_holdout else r.due_at
        if when is None:
            continue
        names = tuple(n for n in (r.name, (r.utm or {}).get("campaign")) if n)
        out.append(Touch(r.id, r.campaign_id, when, timedelta(seconds=r.attribution_window_seconds),
                         firsts.get((r.id, "click")), firsts.get((r.id, "open")), bool(r.is_holdout), names))
    return out


def attribute_purchases(session: Session, settings: Settings, purchase_ids: list[int]) -> list[Attribution]:
    """Credit each not-yet-credited purchase (at most once)."""
    done = set(session.scalars(select(Attribution.purchase_id).where(Attribution.purchase_id.in_(purchase_ids))))
    out = []
    for p in session.scalars(select(Purchase).where(Purchase.id.in_(purchase_ids)).order_by(Purchase.id)):
        if p.id in done:
            continue
        pick = choose(p.occurred_at, p.utm_campaign, _touches(session, p.contact_id, p.occurred_at))
        if pick is None:
            continue
        touch, rule = pick
        a = Attribution(purchase_id=p.id, delivery_id=touch.delivery_id, campaign_id=touch.campaign_id,
                        contact_id=p.contact_id, is_holdout=touch.is_holdout, rule=rule, credited_cents=p.amount_cents)
        session.add(a)
        out.append(a)
    session.flush()
    return out


def recompute_campaign(session: Session, settings: Settings, campaign_id: int) -> int:
    """Drop and redo every credit that this campaign's audience could touch; returns credits now held."""
    contacts = select(Delivery.contact_id).where(Delivery.campaign_id == campaign_id)
    purchase_ids = list(session.scalars(select(Purchase.id).where(Purchase.contact_id.in_(contacts))))
    for i in range(0, len(purchase_ids), 900):
        session.execute(delete(Attribution).where(Attribution.purchase_id.in_(purchase_ids[i:i + 900])))
    for i in range(0, len(purchase_ids), 900):
        attribute_purchases(session, settings, purchase_ids[i:i + 900])
    return session.scalar(select(func.count()).select_from(Attribution).where(Attribution.campaign_id == campaign_id)) or 0
