"""What enrols a contact in a campaign's steps: the `--trigger` grammar, `--reentry`, pure of I/O.

    segment                 entering the campaign's segment (a drip, as before triggers existed)
    purchase                each purchase (the template sees purchase.amount, purchase.order_id ...)
    event:NAME              each custom event NAME (the template sees event.properties)
    lifecycle:STAGE         moving into a lifecycle stage (e.g. at_risk), within the segment
    date:attributes.FIELD   each year on that date (MM-DD or YYYY-MM-DD), at --at's wall-clock
                            time in the contact's zone, moved by --offset (e.g. -7d)

The evaluation is in scheduler/triggers.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

from campaigns.errors import InputError
from campaigns.segments.metrics import LIFECYCLE_STAGES
from campaigns.timespec import parse_duration

KINDS = ("segment", "purchase", "event", "lifecycle", "date")
# Occurrence triggers enrol again on every occurrence unless told otherwise; segment-like ones once.
OCCURRENCE_KINDS = ("purchase", "event", "date")
_EVENT = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,99}$")
_ATTR = re.compile(r"^attributes\.([A-Za-z0-9_\-]{1,100})$")
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class Trigger:
    """A parsed --trigger: its kind and argument (event name, stage, attribute name, or '')."""

    kind: str
    arg: str = ""

    def __str__(self) -> str:
        if self.kind == "date":
            return f"date:attributes.{self.arg}"
        return f"{self.kind}:{self.arg}" if self.arg else self.kind

    @property
    def by_occurrence(self) -> bool:
        """Each occurrence (a purchase, an event, a birthday) enrols anew."""
        return self.kind in OCCURRENCE_KINDS


def parse_trigger(text: str | None) -> Trigger:
    """'event:cart_abandoned' -> Trigger('event', 'cart_abandoned'); InputError in one line."""
    raw = (text or "segment").strip()
    kind, _, arg = raw.partition(":")
    kind = kind.lower()
    if kind not in KINDS:
        raise InputError(f"--trigger: '{raw}' is not a trigger (use segment, purchase, event:NAME, lifecycle:STAGE "
                         "or date:attributes.FIELD)")
    if kind in ("segment", "purchase"):
        if arg:
            raise InputError(f"--trigger: '{kind}' takes nothing after ':'")
        return Trigger(kind)
    if kind == "event":
        if not _EVENT.match(arg):
            raise InputError(f"--trigger: '{raw}': name the event, as in event:cart_abandoned")
        return Trigger(kind, arg)
    if kind == "lifecycle":
        if arg.lower() not in LIFECYCLE_STAGES:
            raise InputError(f"--trigger: '{raw}': the stage is one of {', '.join(LIFECYCLE_STAGES)}")
        return Trigger(kind, arg.lower())
    m = _ATTR.match(arg)
    if not m:
        raise InputError(f"--trigger: '{raw}': name a date attribute, as in date:attributes.birthday")
    return Trigger(kind, m.group(1))


def parse_clock(text: str) -> str:
    """'9:00' -> '09:00' (the wall-clock time a date trigger sends at)."""
    m = _CLOCK.match(text.strip())
    if not m:
        raise InputError(f"--at: '{text}' is not a time of day like 09:00 (a date trigger sends each year at it)")
    return f"{int(m.group(1)):02d}:{m.group(2)}"


def parse_offset(text: str) -> int:
    """'-7d' -> -604800 seconds (a date trigger's shift: a week before)."""
    raw = text.strip()
    sign = -1 if raw.startswith("-") else 1
    return sign * int(parse_duration(raw.lstrip("+-"), "--offset").total_seconds())


def parse_reentry(text: str, trigger: Trigger) -> str:
    """never | always | after:30d; 'always' only for occurrence triggers (a segment is entered once per pass)."""
    raw = text.strip().lower()
    if raw == "never" or (raw == "always" and trigger.by_occurrence):
        return raw
    if raw == "always":
        raise InputError(f"--reentry: 'always' re-enrols on every tick for a {trigger.kind} trigger; use after:30d")
    if raw.startswith("after:"):
        seconds = int(parse_duration(raw[6:], "--reentry").total_seconds())
        if seconds <= 0:
            raise InputError("--reentry: the wait must be longer than zero")
        return f"after:{raw[6:]}"
    raise InputError(f"--reentry: '{text}' is not never, always or after:30d")


def reentry_wait(reentry: str | None, trigger: Trigger) -> timedelta | None:
    """How long after entering a contact may enter again: None = never, 0 = always."""
    rule = reentry or ("always" if trigger.by_occurrence else "never")
    if rule == "never":
        return None
    if rule == "always":
        return timedelta(0)
    return parse_duration(rule[6:], "--reentry")


def anniversary(value: object, year: int) -> date | None:
    """This year's date of a stored 'MM-DD' or 'YYYY-MM-DD' attribute (29 Feb -> 28 Feb in other years)."""
    if not isinstance(value, str):
        return None
    m = re.match(r"^(?:\d{4}-)?(\d{2})-(\d{2})", value.strip())
    if not m:
        return None
    month, day = int(m.group(1)), int(m.group(2))
    try:
        return date(year, month, day)
    except ValueError:
        if (month, day) == (2, 29):
            return date(year, 2, 28)
        return None
