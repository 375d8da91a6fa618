"""The shared vocabulary: every state, status, type and reason the database stores.

One place, so a typo is an AttributeError at import rather than a row no query finds, and
the schema's check constraints are built from the same lists. The values are the strings
the database holds; a `StrEnum` member compares equal to its string, so code and rows that
still carry plain strings keep working.
"""

from __future__ import annotations

from enum import StrEnum


class Channel(StrEnum):
    """A way to reach a contact."""

    EMAIL = "email"
    SMS = "sms"


class ConsentAction(StrEnum):
    """A consent ledger event's action."""

    GRANTED = "granted"
    PENDING = "pending"  # a double opt-in request: changes nothing until confirmed
    CONFIRMED = "confirmed"
    REVOKED = "revoked"


class DeliveryState(StrEnum):
    """Where one outbox row stands (see scheduler/dispatcher.py for the moves)."""

    QUEUED = "queued"
    CLAIMED = "claimed"
    SENDING = "sending"
    SENT = "sent"
    RETRY_WAIT = "retry_wait"
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    UNKNOWN = "unknown"
    HELD_OUT = "held_out"
    CANCELLED = "cancelled"
    WAITING = "waiting"  # held back by an A/B test share until the winner is decided (scheduler/winner.py)


class CampaignStatus(StrEnum):
    """A campaign's status."""

    DRAFT = "draft"
    SCHEDULED = "scheduled"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    COMPLETED = "completed"
    ARCHIVED = "archived"  # finished and put away: hidden from `campaigns list`, never sent again
    SENT = "sent"  # a manual campaign whose run has gone out


class WinnerMetric(StrEnum):
    """What decides an A/B test's winner before the rest of the audience is sent it."""

    CLICKS = "clicks"
    CONVERSIONS = "conversions"
    REVENUE = "revenue"


class RunStatus(StrEnum):
    """One firing's status."""

    PLANNING = "planning"
    PLANNED = "planned"
    DONE = "done"
    MISSED = "missed"


class EventType(StrEnum):
    """A response tied back to a delivery."""

    DELIVERED = "delivered"
    OPEN = "open"
    CLICK = "click"
    UNSUBSCRIBE = "unsubscribe"
    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    REPLY = "reply"
    STOP = "stop"
    START = "start"


class SkipReason(StrEnum):
    """Why planning left a segment member out."""

    INVALID_ADDRESS = "invalid_address"
    NO_CONSENT = "no_consent"
    SUPPRESSED = "suppressed"
    CAPPED = "capped"
    LEFT_TOPIC = "left_topic"  # consented on the channel, but left the campaign's topic


class SuppressionReason(StrEnum):
    """Why an address is on the suppression list."""

    MANUAL = "manual"
    HARD_BOUNCE = "hard_bounce"
    COMPLAINT = "complaint"
    ERASED = "erased"
    STOP = "stop"
    UNSUBSCRIBE = "unsubscribe"


def values(enum: type[StrEnum]) -> tuple[str, ...]:
    """The stored strings of an enum, in declaration order."""
    return tuple(member.value for member in enum)


# The error a cancelled journey step carries (scheduler/exits.py writes it, reports/steps.py reads it):
# the step at which the contact left, and the later steps they will not get.
JOURNEY_EXIT_NOTES = ("left the journey: ", "left the journey before this step: ")
