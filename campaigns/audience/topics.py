"""Topics: what a campaign is about ("news", "offers"), so a contact can leave one and keep the
channel. The topic rows live here; who left which topic is the consent ledger's
(audience/consent.py), and the messageable rule reads it there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from campaigns.errors import ConflictError, InputError, NotFoundError
from campaigns.store.models import Campaign, ConsentEvent, Topic
from campaigns.timespec import utcnow
from campaigns.vocab import CampaignStatus

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,59}$")


@dataclass(frozen=True)
class TopicRow:
    """A topic with the campaigns on it, for `topics list`."""

    id: int
    name: str
    description: str | None
    campaigns: int
    created_at: datetime


def check_name(name: str, what: str = "NAME") -> str:
    """A topic name: lowercase letters, digits, '_' or '-' (it becomes part of the List-Id)."""
    if not _NAME.match(name):
        raise InputError(f"{what}: '{name}' must be lowercase letters, digits, '_' or '-' (up to 60), starting with a letter or digit")
    return name


def create_topic(session: Session, name: str, description: str | None = None) -> Topic:
    """A new topic; its name must be free."""
    check_name(name)
    if session.scalar(select(Topic.id).where(Topic.name == name)) is not None:
        raise ConflictError(f"a topic named {name} already exists")
    topic = Topic(name=name, description=(description or "").strip() or None, created_at=utcnow())
    session.add(topic)
    session.flush()
    return topic


def get_topic(session: Session, name: str, what: str = "--topic") -> Topic:
    """A topic by name, or NotFoundError naming the option."""
    topic = session.scalar(select(Topic).where(Topic.name == name))
    if topic is None:
        raise NotFoundError(f"{what}: no topic '{name}' (see `campaigns topics list`)")
    return topic


def list_topics(session: Session) -> list[TopicRow]:
    """Every topic with the number of campaigns on it (who left one is the ledger's: consent.left_count)."""
    out = []
    for t in session.scalars(select(Topic).order_by(Topic.name)):
        campaigns = session.scalar(select(func.count()).select_from(Campaign).where(Campaign.topic_id == t.id)) or 0
        out.append(TopicRow(t.id, t.name, t.description, campaigns, t.created_at))
    return out


def delete_topic(session: Session, name: str) -> None:
    """Delete a topic nothing refers to: refused while a campaign (not archived) carries it or the
    ledger names it. Archived campaigns keep its name (Campaign.topic_name) and lose the reference."""
    topic = get_topic(session, name, "NAME")
    users = list(session.scalars(select(Campaign.name).where(Campaign.topic_id == topic.id, Campaign.status != CampaignStatus.ARCHIVED)
                                 .order_by(Campaign.name).limit(4)))
    if users:
        raise ConflictError(f"topic {name} is used by campaign {', '.join(users[:3])}{' and others' if len(users) > 3 else ''}; "
                            "give those campaigns another topic first")
    if session.scalar(select(ConsentEvent.id).where(ConsentEvent.topic_id == topic.id).limit(1)) is not None:
        raise ConflictError(f"topic {name} is in the consent ledger (someone left or rejoined it); "
                            "the ledger is append-only, so the topic stays")
    session.execute(update(Campaign).where(Campaign.topic_id == topic.id)  # archived ones only, by now
                    .values(topic_name=func.coalesce(Campaign.topic_name, topic.name), topic_id=None))
    session.delete(topic)
    session.flush()
