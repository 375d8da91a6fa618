"""The one rule for "may we message these contacts on this channel at this time".

A contact is messageable on a channel at a moment when it is not erased, it has an
address on that channel (its keyed hash), its current consent there allows marketing
(`granted` or `confirmed`; only `confirmed` where double opt-in is on), and that address
hash is not on the suppression list; for a campaign with a topic, it has not left that
topic (the ledger's topic-level consent). Planning, the claim, the check just before
hand-over and the `send --dry-run` preview all ask this one builder, so the rule cannot
drift between them; its parts are named so the planner can say *why* a member is skipped.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Connection, and_, exists, false, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from campaigns.audience.consent import consented_contacts, left_topic_contacts
from campaigns.audience.suppression import check_channel
from campaigns.config import Settings
from campaigns.store.models import Campaign, Contact, Suppression
from campaigns.timespec import utcnow
from campaigns.vocab import Channel


def digest_column(channel: str) -> InstrumentedAttribute[str | None]:
    """The contact column holding the keyed hash of its address on `channel`."""
    return Contact.email_hash if check_channel(channel) == Channel.EMAIL else Contact.phone_hash


def suppression_matches_contact() -> ColumnElement[bool]:
    """Join condition: a suppression row names the contact's address on its own channel."""
    return or_(*(and_(Suppression.channel == ch, Suppression.address_hash == digest_column(ch)) for ch in Channel))


@dataclass(frozen=True)
class MessageableRule:
    """The rule's parts, as SQL conditions on `Contact`; `clause` is the whole rule."""

    not_erased: ColumnElement[bool]
    has_address: ColumnElement[bool]
    consented: ColumnElement[bool]
    suppressed: ColumnElement[bool]
    left_topic: ColumnElement[bool]  # always false for a campaign without a topic

    @property
    def clause(self) -> ColumnElement[bool]:
        """True for contacts we may message."""
        return and_(self.not_erased, self.has_address, self.consented, ~self.suppressed, ~self.left_topic)


def rule(channel: str, double_opt_in: bool, at: datetime,
         contact_ids: Collection[int] | None = None, topic_id: int | None = None) -> MessageableRule:
    """The rule on `channel` (and, given `topic_id`, that topic) as of `at`. With `contact_ids`,
    the consent ledger is read for those contacts only (by index), which keeps per-batch
    checks from growing with the audience."""
    digest = digest_column(channel)
    return MessageableRule(
        not_erased=Contact.erased_at.is_(None),
        has_address=digest.is_not(None),
        consented=Contact.id.in_(consented_contacts(channel, double_opt_in, at, contact_ids=contact_ids)),
        suppressed=exists().where(Suppression.channel == channel, Suppression.address_hash == digest),
        left_topic=Contact.id.in_(left_topic_contacts(topic_id, at, contact_ids)) if topic_id is not None else false(),
    )


def messageable_ids(conn: Connection | Session, settings: Settings, channel: str, contact_ids: Collection[int],
                    at: datetime, topic_id: int | None = None) -> set[int]:
    """Which of `contact_ids` may be messaged on `channel` (about `topic_id`, if any) at `at`."""
    ids = list(contact_ids)
    if not ids:
        return set()
    r = rule(channel, settings.consent.double_opt_in, at, contact_ids=ids, topic_id=topic_id)
    return set(conn.scalars(select(Contact.id).where(Contact.id.in_(ids), r.clause)))


def campaign_topics(conn: Connection | Session, campaign_ids: Collection[int]) -> dict[int, int | None]:
    """The topic of each campaign (None: no topic), for checks that group rows by campaign."""
    ids = list(campaign_ids)
    rows = conn.execute(select(Campaign.id, Campaign.topic_id).where(Campaign.id.in_(ids))).all() if ids else []
    return {cid: tid for cid, tid in rows}


def may_message(session: Session, settings: Settings, contact: Contact, channel: str, at: datetime | None = None,
                topic_id: int | None = None) -> bool:
    """Invariant 1 for one contact (the same SQL rule, asked for one id)."""
    return contact.id in messageable_ids(session, settings, channel, [contact.id], at or utcnow(), topic_id)
