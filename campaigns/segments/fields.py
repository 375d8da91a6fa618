"""The whitelist of filter fields: what each one is and which values it compares with."""

from __future__ import annotations

from dataclasses import dataclass

from campaigns.segments.metrics import ABC_CLASSES, LIFECYCLE_STAGES, LOYALTY_KINDS, PROSPECT
from campaigns.segments.rfm import SEGMENT_NAMES

# kind: text | date | number | money | score | rfm_score | enum | bool | tags | topics | attribute
# source: contact (a column or JSON of the contact row), consent, buyers (the purchases relation),
# value (the fitted CLV models)


@dataclass(frozen=True)
class FieldSpec:
    kind: str
    source: str
    column: str  # contact column, or buyers-relation column (windowed ones get a suffix)
    windowed: bool = False
    choices: tuple[str, ...] = ()
    # What a contact who never bought has: 0 for counts and totals, "prospect" for the
    # lifecycle, None (matches nothing) for scores.
    nonbuyer: object = None


FIELDS: dict[str, FieldSpec] = {
    "email": FieldSpec("text", "contact", "email"),
    "phone": FieldSpec("text", "contact", "phone"),
    "name": FieldSpec("text", "contact", "name"),
    "timezone": FieldSpec("text", "contact", "timezone"),
    "locale": FieldSpec("text", "contact", "locale"),
    "external_id": FieldSpec("text", "contact", "external_id"),
    "created_at": FieldSpec("date", "contact", "created_at"),
    "tags": FieldSpec("tags", "contact", "tags"),
    # the topics a contact is in: every topic, less those they left (the consent ledger)
    "topics": FieldSpec("topics", "consent", "topics"),
    "consent.email": FieldSpec("bool", "consent", "email"),
    "consent.sms": FieldSpec("bool", "consent", "sms"),
    "purchases.count": FieldSpec("number", "buyers", "orders", windowed=True, nonbuyer=0),
    "purchases.total": FieldSpec("money", "buyers", "total", windowed=True, nonbuyer=0),
    "purchases.first_at": FieldSpec("date", "buyers", "first_at", windowed=True),
    "purchases.last_at": FieldSpec("date", "buyers", "last_at", windowed=True),
    "rfm.r": FieldSpec("score", "buyers", "r"),
    "rfm.f": FieldSpec("score", "buyers", "f"),
    "rfm.m": FieldSpec("score", "buyers", "m"),
    "rfm.score": FieldSpec("rfm_score", "buyers", "score"),
    "rfm.segment": FieldSpec("enum", "buyers", "segment", choices=SEGMENT_NAMES),
    "lifecycle": FieldSpec("enum", "buyers", "lifecycle", choices=LIFECYCLE_STAGES, nonbuyer=PROSPECT),
    "loyalty": FieldSpec("enum", "buyers", "loyalty", choices=LOYALTY_KINDS),
    # from the fitted CLV models (segments/clv.py), not SQL: "value" fields
    "clv": FieldSpec("money", "value", "clv"),
    "p_alive": FieldSpec("number", "value", "p_alive"),
    "abc": FieldSpec("enum", "buyers", "abc", choices=ABC_CLASSES),
}
ATTRIBUTE = FieldSpec("attribute", "contact", "attributes")
# events.NAME.count(last=7d), events.NAME.last_at: custom events (campaigns/audience/custom_events.py)
EVENT_FIELDS: dict[str, FieldSpec] = {
    "count": FieldSpec("number", "events", "count", windowed=True, nonbuyer=0),
    "last_at": FieldSpec("date", "events", "last_at"),
}

OPERATORS: dict[str, frozenset[str]] = {
    "text": frozenset({"=", "!=", "<", "<=", ">", ">=", "in", "notin", "contains", "between"}),
    "date": frozenset({"=", "!=", "<", "<=", ">", ">=", "between"}),
    "number": frozenset({"=", "!=", "<", "<=", ">", ">=", "in", "notin", "between"}),
    "money": frozenset({"=", "!=", "<", "<=", ">", ">=", "between"}),
    "score": frozenset({"=", "!=", "<", "<=", ">", ">=", "in", "notin", "between"}),
    "rfm_score": frozenset({"=", "!=", "<", "<=", ">", ">=", "in", "notin", "between"}),
    "enum": frozenset({"=", "!=", "in", "notin"}),
    "bool": frozenset({"truth", "=", "!="}),
    "tags": frozenset({"contains", "in", "notin"}),
    "topics": frozenset({"contains", "in", "notin"}),
    "attribute": frozenset({"=", "!=", "<", "<=", ">", ">=", "in", "notin", "contains", "between"}),
}


def field_names() -> list[str]:
    """Every field a filter may name (attributes.NAME stands for any attribute)."""
    return [*sorted(FIELDS), "attributes.NAME", "events.NAME.count", "events.NAME.last_at"]
