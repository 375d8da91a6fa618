"""The system campaigns that carry double opt-in requests, created when first needed.

The consent ledger (campaigns/audience/consent.py) only records a pending request; this
room, above the ledger, the campaign definitions and the templates, makes sure a request
campaign exists for every channel with an open request: `confirm-email` (template
`confirm`) or `confirm-sms` (template `confirm-sms`), transactional, firing every five
minutes (campaigns/audience/consent_requests.py says what they send and to whom). The
daemon calls `ensure` on every sync (each SYNC_SECONDS) and every whole tick does, so a
request recorded by any path (CLI, import, subscribe webhook, inbound SMS) goes out at the
next firing after that. Keeping the creation here, not in the ledger, keeps the arrows one
way: audience knows nothing of campaigns, segments or templates.
"""

from __future__ import annotations

import shutil
from datetime import datetime

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from campaigns.audience.consent_requests import AUDIENCE, CAMPAIGNS, EVERY, TEMPLATES, open_request_clause
from campaigns.campaign_defs import CampaignSpec, create_campaign
from campaigns.config import Settings
from campaigns.messages.templates_store import shipped_templates, templates_root
from campaigns.segments.service import create_segment
from campaigns.store.models import Campaign, Segment
from campaigns.timespec import utcnow


def ensure(session: Session, settings: Settings, at: datetime | None = None) -> list[str]:
    """Create the request campaign of each channel that has an open request and none yet;
    returns the names created (usually none: one indexed look per channel)."""
    at = at or utcnow()
    made = []
    for channel, name in CAMPAIGNS.items():
        if session.scalar(select(Campaign.id).where(Campaign.name == name)) is not None:
            continue
        if not session.scalar(select(exists().where(open_request_clause(channel, at)))):
            continue
        ensure_campaign(session, settings, channel)
        made.append(name)
    return made


def ensure_campaign(session: Session, settings: Settings, channel: str) -> Campaign:
    """The channel's request campaign, created (scheduled, transactional) the first time."""
    name = CAMPAIGNS[channel]
    found = session.scalar(select(Campaign).where(Campaign.name == name))
    if found is not None:
        return found
    _install_template(settings, TEMPLATES[channel])
    segment = f"{name}-audience"
    if session.scalar(select(Segment.id).where(Segment.name == segment)) is None:
        create_segment(session, settings, segment, AUDIENCE[channel],
                       "Everyone reachable on the channel; the request campaign narrows it to open requests")
    return create_campaign(session, settings, name, CampaignSpec(
        segment=segment, channel=channel, template=TEMPLATES[channel], cron=EVERY, cap="none", transactional=True), activate=True)


def _install_template(settings: Settings, name: str) -> None:
    """Copy the shipped request template into the templates folder when it is not there yet
    (a marketer may edit the copy; theirs is kept)."""
    target = templates_root(settings) / name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(shipped_templates() / name, target)


__all__ = ["ensure", "ensure_campaign"]
