"""What the CLI shows of campaigns, read in one place: the list with outbox counts, one
campaign's outbox and runs, a run's first recipients, who was capped, what still waits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns.store.models import Campaign, CampaignRun, Contact, Delivery
from campaigns.vocab import CampaignStatus, DeliveryState


def outbox_by_campaign(session: Session) -> dict[int, dict[str, int]]:
    """{campaign id: {state: rows}} over the whole outbox (one grouped query)."""
    counts: dict[int, dict[str, int]] = {}
    for cid, state, n in session.execute(select(Delivery.campaign_id, Delivery.state, func.count())
                                         .group_by(Delivery.campaign_id, Delivery.state)):
        counts.setdefault(cid, {})[state] = n
    return counts


def campaigns(session: Session, include_archived: bool = False) -> Sequence[Campaign]:
    """Every campaign, oldest first; archived ones only when asked."""
    q = select(Campaign).order_by(Campaign.id)
    return session.scalars(q if include_archived else q.where(Campaign.status != CampaignStatus.ARCHIVED)).all()


def outbox_of(session: Session, campaign_id: int) -> dict[str, int]:
    """{state: rows} of one campaign's outbox."""
    return {state: n for state, n in session.execute(select(Delivery.state, func.count())
                                                     .where(Delivery.campaign_id == campaign_id).group_by(Delivery.state))}


def runs_of(session: Session, campaign_id: int) -> Sequence[CampaignRun]:
    """One campaign's runs (firings, missed ones, extra sends), in firing order."""
    return session.scalars(select(CampaignRun).where(CampaignRun.campaign_id == campaign_id)
                           .order_by(CampaignRun.scheduled_for)).all()


def run_sample(session: Session, run_id: int, limit: int = 20) -> list[dict[str, Any]]:
    """A run's first `limit` rows as a preview: who, which variant and template, when."""
    return [{"contact": email or phone, "variant": d.variant, "template": d.template_name, "due_at": d.due_at,
             "holdout": d.is_holdout}
            for d, email, phone in session.execute(select(Delivery, Contact.email, Contact.phone)
                                                   .join(Contact, Contact.id == Delivery.contact_id)
                                                   .where(Delivery.run_id == run_id).order_by(Delivery.id).limit(limit))]


def addresses(session: Session, contact_ids: Sequence[int]) -> list[str]:
    """The email (or phone) of each contact, in id order."""
    return [email or phone or "" for email, phone in session.execute(
        select(Contact.email, Contact.phone).where(Contact.id.in_(list(contact_ids))).order_by(Contact.id))]


def still_waiting(session: Session, run_id: int) -> int:
    """Rows of a run still queued or waiting for a retry."""
    return session.scalar(select(func.count()).select_from(Delivery).where(
        Delivery.run_id == run_id, Delivery.state.in_((DeliveryState.QUEUED, DeliveryState.RETRY_WAIT)))) or 0
