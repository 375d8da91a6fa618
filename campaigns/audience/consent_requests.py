"""Double opt-in requests, sent by the product itself through the normal transport.

Every path that records a pending consent (`consent grant`, `contacts add`, `contacts
import` under double opt-in) leaves a request that a system campaign carries (created when
first needed by campaigns/request_campaigns.py, on the daemon's next sync):
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
AUDIENCE = {"email": 'email contains "@"', "sms": 'phone contains "+"'}


def token_for(settings: Settings, event_id: int) -> str:
    """The single-use token of a pending ledger event (starts with 'c', never with '-')."""
    mac = hmac.new(settings.hashing_key, f"confirm\x00{event_id}".encode(), hashlib.sha256).digest()
    return "c" + base64.urlsafe_b64encode(mac[:24]).rstrip(b"=").decode()


def is_request_campaign(c: Campaign) -> bool:
    """True for the system campaigns that carry double opt-in requests."""
    return CAMPAIGNS.get(c.channel) == c.name and not c.marketing


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
