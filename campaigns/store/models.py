"""Typed ORM models: the whole data picture of DESIGN.md. UTC everywhere.

Money is stored in minor units (cents) as integers: exact on both databases.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from campaigns.store.db import UTCDateTime
from campaigns.timespec import format_duration, utcnow
from campaigns.vocab import (
    CampaignStatus,
    Channel,
    ConsentAction,
    DeliveryState,
    EventType,
    RunStatus,
    SuppressionReason,
    WinnerMetric,
    values,
)

# The stored strings, from the one vocabulary (campaigns/vocab.py); the check constraints
# below are built from them, so the database refuses a state or type the code does not know.
CHANNELS = values(Channel)
CONSENT_ACTIONS = values(ConsentAction)
DELIVERY_STATES = values(DeliveryState)
CAMPAIGN_STATUSES = values(CampaignStatus)

_naming = MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})


class Base(DeclarativeBase):
    metadata = _naming
    if TYPE_CHECKING:  # every model here is a Table, which insert() and friends want (not any FromClause)
        __table__: ClassVar[Table]
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}  # noqa: RUF012 - read once by SQLAlchemy


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Contact(Base):
    """A person we may message; personal fields are emptied by erasure."""

    __tablename__ = "contact"
    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    email: Mapped[str | None] = mapped_column(String(320), unique=True)
    phone: Mapped[str | None] = mapped_column(String(32), index=True)
    # Keyed hashes of the addresses: suppression matches on these, so an erased
    # address (kept only as a hash) still blocks a re-imported contact.
    email_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    phone_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    timezone: Mapped[str | None] = mapped_column(String(64))
    locale: Mapped[str | None] = mapped_column(String(35))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    tags: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    erased_at: Mapped[datetime | None]

    @property
    def first_name(self) -> str:
        """The first word of the name, or '' when there is none."""
        return first_word(self.name)


def first_word(name: str | None) -> str:
    """A contact's first name: the first word of the name, or '' when there is none."""
    return name.split(" ")[0] if name else ""


class Topic(Base):
    """What a campaign is about ("news", "offers"): a contact can leave one and keep the channel."""

    __tablename__ = "topic"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ConsentEvent(Base):
    """Append-only ledger: the current consent is the latest non-pending event.

    A row with `topic_id` is topic-level (left or rejoined that topic, whatever the channel);
    channel-level consent reads only the rows without one."""

    __tablename__ = "consent_event"
    __table_args__ = (
        CheckConstraint(_in("channel", CHANNELS), name="channel"),
        CheckConstraint(_in("action", CONSENT_ACTIONS), name="action"),
        Index("ix_consent_event_current", "contact_id", "channel", "occurred_at", "id"),
        Index("ix_consent_event_topic", "topic_id", "contact_id", "occurred_at", "id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(10))
    action: Mapped[str] = mapped_column(String(12))
    source: Mapped[str] = mapped_column(String(200))
    consent_text: Mapped[str | None] = mapped_column(Text)
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(500))
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Double opt-in: a pending event carries the hash of its token; the confirming
    # event points back at it, and the unique key makes a token single-use.
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    token_expires_at: Mapped[datetime | None]
    confirms_event_id: Mapped[int | None] = mapped_column(ForeignKey("consent_event.id"), unique=True)
    # Topic-level consent: `channel` then says where the person said it (the ledger's provenance).
    topic_id: Mapped[int | None] = mapped_column(ForeignKey("topic.id"))


class Suppression(Base):
    """An address never to be messaged on a channel; matched by keyed hash."""

    __tablename__ = "suppression"
    __table_args__ = (
        UniqueConstraint("channel", "address_hash"),
        CheckConstraint(_in("channel", CHANNELS), name="channel"),
        CheckConstraint(_in("reason", values(SuppressionReason)), name="reason"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(10))
    address: Mapped[str | None] = mapped_column(String(320))  # None after erasure
    address_hash: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(40))  # a SuppressionReason
    note: Mapped[str | None] = mapped_column(Text)
    since: Mapped[datetime] = mapped_column(default=utcnow)


class Purchase(Base):
    """One order: the fact RFM, lifecycle and attribution read."""

    __tablename__ = "purchase"
    # amount_cents rides along so RFM/segment aggregates are index-only scans
    # (measured: 16 s -> 3.5 s for an RFM segment count over 5M purchases on SQLite).
    __table_args__ = (Index("ix_purchase_contact_time", "contact_id", "occurred_at", "amount_cents"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[str] = mapped_column(String(200), unique=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"))
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    occurred_at: Mapped[datetime] = mapped_column(index=True)
    items: Mapped[list[Any] | None] = mapped_column(JSON)
    utm_campaign: Mapped[str | None] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(40), default="import")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Segment(Base):
    """A named filter, evaluated when a campaign runs (never a stored list)."""

    __tablename__ = "segment"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    definition: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Template(Base):
    """A registered message template; the version hash pins what was sent."""

    __tablename__ = "template"
    __table_args__ = (CheckConstraint(_in("channel", CHANNELS), name="channel"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    channel: Mapped[str] = mapped_column(String(10))
    subject: Mapped[str | None] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    body_text: Mapped[str | None] = mapped_column(Text)
    source_path: Mapped[str | None] = mapped_column(String(500))
    version_hash: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Campaign(Base):
    """Who (segment), what (templates, channel), when (schedule) and how carefully."""

    __tablename__ = "campaign"
    __table_args__ = (
        CheckConstraint(_in("channel", CHANNELS), name="channel"),
        CheckConstraint(_in("status", CAMPAIGN_STATUSES), name="status"),
        CheckConstraint(f"winner_by IS NULL OR {_in('winner_by', values(WinnerMetric))}", name="winner_by"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    channel: Mapped[str] = mapped_column(String(10))
    # None only once archived: archiving frees the segment, and deleting it sets this to NULL
    segment_id: Mapped[int | None] = mapped_column(ForeignKey("segment.id", ondelete="SET NULL"))
    # What an archived campaign targeted, as it was when archived (`show` and `report` read it)
    segment_name: Mapped[str | None] = mapped_column(String(100))
    segment_definition: Mapped[str | None] = mapped_column(Text)
    template_name: Mapped[str | None] = mapped_column(String(100))
    # [{"name": "A", "template": "welcome_a", "weight": 50}, ...]; empty = one template
    variants: Mapped[list[Any]] = mapped_column(JSON, default=list)
    schedule_kind: Mapped[str] = mapped_column(String(10))  # once | cron | drip | manual
    send_at: Mapped[datetime | None]
    cron: Mapped[str | None] = mapped_column(String(100))
    # [{"offset_seconds": 0, "template": "welcome"}, ...] for drips
    steps: Mapped[list[Any]] = mapped_column(JSON, default=list)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    local_time: Mapped[bool] = mapped_column(Boolean, default=False)
    # local time: recipients whose moment had passed when the campaign was created: skip | send
    late_policy: Mapped[str] = mapped_column(String(10), default="skip", server_default="skip")
    quiet_hours: Mapped[str | None] = mapped_column(String(20))
    frequency_cap: Mapped[str | None] = mapped_column(String(20))
    throttle_per_minute: Mapped[int | None] = mapped_column(Integer)
    holdout_pct: Mapped[float] = mapped_column(Float, default=0.0)
    # A/B test then winner: this share of the audience is split across the variants; after
    # winner_after_seconds the rest is sent the variant that won by winner_by (scheduler/winner.py)
    test_share_pct: Mapped[float | None] = mapped_column(Float)
    winner_after_seconds: Mapped[int | None] = mapped_column(Integer)
    winner_by: Mapped[str | None] = mapped_column(String(12))
    attribution_window_seconds: Mapped[int] = mapped_column(Integer, default=7 * 86400)
    utm: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    marketing: Mapped[bool] = mapped_column(Boolean, default=True)
    grace_seconds: Mapped[int | None] = mapped_column(Integer)
    cost_per_message: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(12), default=CampaignStatus.DRAFT.value)
    status_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column()  # `campaigns activate`: nothing fires before it
    # What enrols a contact in a drip's steps (scheduler/triggers.py): None or "segment" (entering
    # the segment), "purchase", "event:NAME", "lifecycle:STAGE", "date:attributes.FIELD".
    trigger: Mapped[str | None] = mapped_column(String(120))
    trigger_offset_seconds: Mapped[int | None] = mapped_column(Integer)  # date triggers: --offset -7d
    trigger_clock: Mapped[str | None] = mapped_column(String(5))  # date triggers: "09:00" in the contact's zone
    exit_when: Mapped[str | None] = mapped_column(Text)  # a filter: matching contacts leave before a step goes
    goal: Mapped[str | None] = mapped_column(Text)  # a filter: matching contacts converted (and leave)
    reentry: Mapped[str | None] = mapped_column(String(20))  # never | always | after:30d (None: the trigger's default)
    # What the campaign is about: contacts who left this topic are not messaged (audience/messageable.py).
    # Archiving frees it like the segment: the name is kept in topic_name, and deleting the topic sets NULL.
    topic_id: Mapped[int | None] = mapped_column(ForeignKey("topic.id", ondelete="SET NULL"))
    topic_name: Mapped[str | None] = mapped_column(String(60))
    # A branching journey (`new --journey FILE.toml`, campaigns/journey_defs.py): {"start": ID, "steps": [...]};
    # its steps are run per enrolment by scheduler/journeys.py instead of `steps`.
    journey: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    segment: Mapped[Segment | None] = relationship(lazy="joined")
    topic: Mapped[Topic | None] = relationship(lazy="joined")

    def target(self) -> tuple[str | None, str | None]:
        """The segment's name and definition: the snapshot once archived, else the live segment."""
        if self.status == CampaignStatus.ARCHIVED.value and self.segment_name is not None:
            return self.segment_name, self.segment_definition
        if self.segment is not None:
            return self.segment.name, self.segment.definition
        return self.segment_name, self.segment_definition

    def winner_settings(self) -> dict[str, Any]:
        """The A/B test-then-winner settings as plain values (empty without a test share)."""
        if self.test_share_pct is None:
            return {}
        after = format_duration(timedelta(seconds=self.winner_after_seconds or 0))
        return {"test_share_pct": self.test_share_pct, "winner_after": after, "winner_by": self.winner_by}


class CampaignRun(Base):
    """One firing of a campaign: unique per (campaign, scheduled_for), so it happens once."""

    __tablename__ = "campaign_run"
    __table_args__ = (
        UniqueConstraint("campaign_id", "scheduled_for"),
        CheckConstraint(_in("status", values(RunStatus)), name="status"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    scheduled_for: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(12), default=RunStatus.PLANNING.value)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # {"in_segment": n, "planned": n, "held_out": n, "skipped": {"no_consent": n, ...}}
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The A/B winner decision for this firing (winner, metric, p-values, when, why), once made
    ab_decision: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    # Triggered drips: the highest purchase or custom event id already looked at (incremental evaluation).
    watermark: Mapped[int | None] = mapped_column(BigInteger)


class CustomEvent(Base):
    """Something a contact did, told us by the shop (`track event`, `events import`, the webhook).

    `idempotency_key` is unique: a retried webhook or a file imported twice records nothing new.
    Trigger evaluation reads new rows by id (a watermark), so the id only grows.
    """

    __tablename__ = "custom_event"
    __table_args__ = (Index("ix_custom_event_contact_name_time", "contact_id", "name", "occurred_at"),
                      Index("ix_custom_event_name_id", "name", "id"))
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    properties: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    occurred_at: Mapped[datetime]
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    source: Mapped[str] = mapped_column(String(20), default="cli")
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)


class DripEnrollment(Base):
    """One contact entering a drip (or triggered) campaign: the clock its steps count from.

    `occurrence` names what brought them ("" for entering the segment, "purchase:12",
    "event:40", "date:2027"); unique with the contact, so an occurrence enrols once.
    """

    __tablename__ = "drip_enrollment"
    # The second index answers "which of these occurrences were seen" without the contact (triggers).
    __table_args__ = (UniqueConstraint("campaign_id", "contact_id", "occurrence"),
                      Index("ix_drip_enrollment_campaign_occurrence", "campaign_id", "occurrence"))
    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"))
    entered_at: Mapped[datetime]
    occurrence: Mapped[str] = mapped_column(String(200), default="", server_default="")
    context: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # what the template sees: {"purchase": {...}}
    exited_at: Mapped[datetime | None]
    exit_reason: Mapped[str | None] = mapped_column(String(300))  # "exit: FILTER" | "goal: FILTER"


class StageMember(Base):
    """Who was in a `lifecycle:STAGE` campaign's stage (within its segment) at its last evaluation:
    a contact enrols on the move into the stage (in now, not in then), not for being in it."""

    __tablename__ = "stage_member"
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"), primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"), primary_key=True)


class JourneyVisit(Base):
    """One enrolment at one step of a branching journey: when it got there, when it left, how.

    Unique per (enrolment, step): a journey has no cycle, so a step is visited once per
    enrolment, and a daemon killed mid-evaluation cannot move a contact on twice. The open
    visit (left_at NULL) is where the contact is; `due_at` is when it is looked at again (a
    wait's end, a branch's window end; a branch is also decided earlier when its condition holds).
    """

    __tablename__ = "journey_visit"
    __table_args__ = (UniqueConstraint("enrollment_id", "step"),
                      Index("ix_journey_visit_open", "campaign_id", "left_at", "due_at"))
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    enrollment_id: Mapped[int] = mapped_column(ForeignKey("drip_enrollment.id", ondelete="CASCADE"))
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)  # the step's number in the journey (Delivery.step of its message)
    entered_at: Mapped[datetime]
    due_at: Mapped[datetime]
    left_at: Mapped[datetime | None]
    # sent (handed to the outbox) | waited | yes | no | exit | end | left (the enrolment left: exit rule or goal)
    outcome: Mapped[str | None] = mapped_column(String(12))


class Delivery(Base):
    """The outbox: one message (or holdout record) per (run, contact, step)."""

    __tablename__ = "delivery"
    __table_args__ = (
        UniqueConstraint("run_id", "contact_id", "step", "occurrence"),
        CheckConstraint(_in("channel", CHANNELS), name="channel"),
        CheckConstraint(_in("state", DELIVERY_STATES), name="state"),
        Index("ix_delivery_due", "state", "due_at"),
        Index("ix_delivery_campaign_contact", "campaign_id", "contact_id"),
        Index("ix_delivery_contact_sent", "contact_id", "sent_at"),
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("campaign_run.id", ondelete="CASCADE"))
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(10))
    step: Mapped[int] = mapped_column(Integer, default=0)
    # 0, or the drip_enrollment id of a triggered occurrence (a contact may be in a journey twice).
    occurrence: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    variant: Mapped[str | None] = mapped_column(String(40))
    template_name: Mapped[str | None] = mapped_column(String(100))
    is_holdout: Mapped[bool] = mapped_column(Boolean, default=False)
    # Held back from an A/B test share (state 'waiting'), later sent the winner; not part of the test
    ab_remainder: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(12), default=DeliveryState.QUEUED.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[datetime]
    lease_until: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    sent_at: Mapped[datetime | None]
    # No longer written (the address lives on the contact; rendering reads it there). The column goes
    # with the next regeneration of migration 0001, once the branches in flight have landed.
    address: Mapped[str | None] = mapped_column(String(320))
    provider_message_id: Mapped[str | None] = mapped_column(String(200))
    error: Mapped[str | None] = mapped_column(Text)
    # Snapshot at planning time, so reports can break down by what the contact was then.
    lifecycle_stage: Mapped[str | None] = mapped_column(String(20))
    rfm_segment: Mapped[str | None] = mapped_column(String(30))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Event(Base):
    """A response tied back to a delivery; `dedup_key` makes replays count once."""

    __tablename__ = "event"
    __table_args__ = (
        CheckConstraint(_in("type", values(EventType)), name="type"),
        Index("ix_event_delivery_type", "delivery_id", "type"),
        # Both cover what the campaign report reads (docs/reports.md): by type and time (the
        # timeline, the listing of responses) and by delivery (the funnel and breakdowns).
        Index("ix_event_campaign_type", "campaign_id", "type", "occurred_at", "delivery_id", "is_machine"),
        Index("ix_event_campaign_delivery", "campaign_id", "delivery_id", "type", "is_machine"),
        Index("ix_event_contact", "contact_id", "occurred_at"),
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    delivery_id: Mapped[int | None] = mapped_column(ForeignKey("delivery.id", ondelete="CASCADE"))
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(20))
    url: Mapped[str | None] = mapped_column(Text)
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    user_agent: Mapped[str | None] = mapped_column(String(500))
    ip: Mapped[str | None] = mapped_column(String(64))
    is_machine: Mapped[bool] = mapped_column(Boolean, default=False)
    dedup_key: Mapped[str] = mapped_column(String(200), unique=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Attribution(Base):
    """A purchase credited (at most once) to a delivery or a holdout member."""

    __tablename__ = "attribution"
    id: Mapped[int] = mapped_column(primary_key=True)
    purchase_id: Mapped[int] = mapped_column(ForeignKey("purchase.id", ondelete="CASCADE"), unique=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("delivery.id", ondelete="CASCADE"))
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"), index=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"))
    is_holdout: Mapped[bool] = mapped_column(Boolean, default=False)
    rule: Mapped[str] = mapped_column(String(20))  # utm | click | open | delivery | holdout
    credited_cents: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TrackedLink(Base):
    """A destination URL some message was built with; click links name it by id."""

    __tablename__ = "tracked_link"
    id: Mapped[int] = mapped_column(primary_key=True)
    url_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of the URL
    url: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Coupon(Base):
    """One code of a pool; handed to exactly one delivery."""

    __tablename__ = "coupon"
    # A delivery gets one code per pool: a retried render finds the same code again.
    __table_args__ = (UniqueConstraint("pool", "code"), UniqueConstraint("pool", "delivery_id"))
    id: Mapped[int] = mapped_column(primary_key=True)
    pool: Mapped[str] = mapped_column(String(100))
    code: Mapped[str] = mapped_column(String(200))
    delivery_id: Mapped[int | None] = mapped_column(ForeignKey("delivery.id", ondelete="SET NULL"))
    assigned_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SendWindow(Base):
    """Messages handed over in one minute for one throttle scope ("all", "campaign:7",
    "domain:gmail.com"): the shared record that lets every worker keep the same rate."""

    __tablename__ = "send_window"
    __table_args__ = (UniqueConstraint("scope", "minute"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(300))
    minute: Mapped[datetime]
    count: Mapped[int] = mapped_column(Integer, default=0)


class ProcessHeartbeat(Base):
    """Daemons and workers report here, so `campaigns status` can show who is running."""

    __tablename__ = "process_heartbeat"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)  # role@host:pid
    role: Mapped[str] = mapped_column(String(20))  # daemon | worker
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)
    info: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
