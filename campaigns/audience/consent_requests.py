"""Double opt-in requests, sent by the product itself through the normal transport.

Every path that records a pending consent (`consent grant`, `contacts add`, `contacts
import` under double opt-in) makes sure a system campaign exists for the channel:
`confirm-email` (template `confirm`: a link to /confirm/<token>, whose GET shows a button
and whose POST confirms) or `confirm-sms` (template `confirm-sms`: the configurable
`[consent] sms_request_text`, answered by "YES"). They are ordinary transactional
campaigns firing every few minutes, so the planner gives requests the recipient's quiet
hours, the throttle and at-most-once delivery like any message; their audience is "has an
open request not yet asked" instead of "has consent" (`audience_clause`), and nothing
else is ever sent under it.

A request's token is derived from its ledger event with the pinned hashing key, so the
sender can put it in the message without the database ever holding it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime

from sqlalchemy import ColumnElement, Connection, and_, exists, or_, select
from sqlalchemy.orm import Session, aliased

from campaigns.config import Settings
from campaigns.store.models import Campaign, ConsentEvent, Contact, Delivery

CAMPAIGNS = {"email": "confirm-email", "sms": "confirm-sms"}
TEMPLATES = {"email": "confirm", "sms": "confirm-sms"}
EVERY = "*/5 * * * *"
_AUDIENCE = {"email": 'email contains "@"', "sms": 'phone contains "+"'}


def token_for(settings: Settings, event_id: int) -> str:
    """The single-use token of a pending ledger event (starts with 'c', never with '-')."""
    mac = hmac.new(settings.hashing_key, f"confirm\x00{event_id}".encode(), hashlib.sha256).digest()
    return "c" + base64.urlsafe_b64encode(mac[:24]).rstrip(b"=").decode()


def is_request_campaign(c: Campaign) -> bool:
    """True for the system campaigns that carry double opt-in requests."""
    return CAMPAIGNS.get(c.channel) == c.name and not c.marketing


def ensure_campaign(session: Session, settings: Settings, channel: str) -> Campaign:
    """The channel's request campaign, created (scheduled, transactional) the first time."""
    from campaigns.campaign_defs import CampaignSpec, create_campaign
    from campaigns.segments.service import create_segment
    from campaigns.store.models import Segment

    name = CAMPAIGNS[channel]
    found = session.scalar(select(Campaign).where(Campaign.name == name))
    if found is not None:
        return found
    _install_template(settings, TEMPLATES[channel])
    segment = f"{name}-audience"
    if session.scalar(select(Segment.id).where(Segment.name == segment)) is None:
        create_segment(session, settings, segment, _AUDIENCE[channel],
                       "Everyone reachable on the channel; the request campaign narrows it to open requests")
    return create_campaign(session, settings, name, CampaignSpec(
        segment=segment, channel=channel, template=TEMPLATES[channel], cron=EVERY, cap="none", transactional=True), activate=True)


def _install_template(settings: Settings, name: str) -> None:
    """Copy the shipped request template into the templates folder when it is not there yet
    (a marketer may edit the copy; theirs is kept)."""
    import shutil

    from campaigns.messages.templates_store import shipped_templates, templates_root

    target = templates_root(settings) / name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(shipped_templates() / name, target)


def open_request_clause(channel: str, at: datetime) -> ColumnElement[bool]:
    """SQL: the unanswered, unexpired pending events of a channel as of `at`."""
    answer = aliased(ConsentEvent)
    return and_(ConsentEvent.channel == channel, ConsentEvent.action == "pending", ConsentEvent.occurred_at <= at,
                or_(ConsentEvent.token_expires_at.is_(None), ConsentEvent.token_expires_at >= at),
                ~exists().where(answer.confirms_event_id == ConsentEvent.id))


def audience_clause(c: Campaign, at: datetime) -> ColumnElement[bool] | None:
    """SQL condition on Contact for a request campaign: an open request this campaign has not
    asked yet (None for every other campaign, whose audience needs consent)."""
    if not is_request_campaign(c):
        return None
    asked = exists().where(Delivery.campaign_id == c.id, Delivery.contact_id == Contact.id,
                           Delivery.created_at >= ConsentEvent.occurred_at)
    return exists().where(ConsentEvent.contact_id == Contact.id, open_request_clause(c.channel, at), ~asked)


def still_open(session_or_conn: Session | Connection, campaign_id: int, contact_ids: list[int], at: datetime) -> set[int]:
    """Of these contacts, those with an open request on the request campaign's channel (the
    claim's check for request rows: a confirmed or revoked request is not sent)."""
    channel = session_or_conn.scalar(select(Campaign.channel).where(Campaign.id == campaign_id))
    if channel is None:
        return set()
    return set(session_or_conn.scalars(select(ConsentEvent.contact_id).where(
        ConsentEvent.contact_id.in_(contact_ids), open_request_clause(channel, at))))


def request_campaign_ids(session_or_conn: Session | Connection) -> set[int]:
    """Ids of the request campaigns that exist."""
    return set(session_or_conn.scalars(select(Campaign.id).where(
        Campaign.name.in_(list(CAMPAIGNS.values())), Campaign.marketing.is_(False))))


def context(session: Session, settings: Settings, contact: Contact, channel: str, at: datetime) -> dict[str, str]:
    """What a request template may use: `confirm_url` (email) and `request_text` (SMS)."""
    from campaigns.audience.consent import open_request
    from campaigns.messages import links

    pending = open_request(session, contact.id, channel, at)
    url = links.confirm_url(settings, token_for(settings, pending.id)) if pending is not None else ""
    return {"confirm_url": url, "request_text": settings.consent.sms_request_text}
