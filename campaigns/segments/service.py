"""Segments: named filters stored as text, compiled when used (never a stale list)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import ColumnElement

from campaigns.config import Settings
from campaigns.errors import ConflictError, InputError, NotFoundError
from campaigns.segments.compiler import Compiler, ExpansionBudget
from campaigns.segments.parser import parse, segment_references
from campaigns.segments.sqlfuncs import parens
from campaigns.store.models import Campaign, Contact, Segment
from campaigns.timespec import utcnow
from campaigns.vocab import CampaignStatus

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def compile_where(
    text: str, settings: Settings, at: datetime | None = None, *, session: Session | None = None,
) -> ColumnElement[bool]:
    """A filter as a boolean SQL expression over Contact; InputError names the column.

    `in_segment("x")` needs `session` (to read x's definition); without one it is an error.
    """
    at = at or utcnow()
    resolver = _Resolver(session, settings, at, []) if session is not None else None
    return Compiler(settings, at, resolver).compile(parse(text))


class _Resolver:
    """Compiles in_segment() references, refusing cycles (a -> b -> a)."""

    def __init__(self, session: Session | None, settings: Settings, at: datetime, stack: list[str]) -> None:
        self.session, self.settings, self.at, self.stack = session, settings, at, stack
        self.budget = ExpansionBudget()  # shared by every Compiler of this expansion

    def __call__(self, name: str, col: int) -> ColumnElement[bool]:
        if name in self.stack:
            chain = " -> ".join([*self.stack[self.stack.index(name):], name])
            raise InputError(f"column {col}: segments refer to each other in a cycle: {chain}")
        assert self.session is not None
        seg = self.session.scalar(select(Segment).where(Segment.name == name))
        if seg is None:
            raise InputError(f"column {col}: unknown segment '{name}' in in_segment()")
        return self.expression(seg)

    def expression(self, seg: Segment) -> ColumnElement[bool]:
        """The compiled definition of a stored segment, with this resolver for its references."""
        self.stack.append(seg.name)
        try:
            # in parentheses: or-ing 80 references to a segment of 120 or-ed conditions must not
            # become one chain of 9,600 (SQLite refuses expressions over 1,000 deep)
            return parens(Compiler(self.settings, self.at, self).compile(parse(seg.definition)))
        except InputError as exc:
            message = str(exc)
            if message.startswith("segment '") or "in a cycle" in message:
                raise
            raise InputError(f"segment '{seg.name}': {message}") from None
        finally:
            self.stack.pop()


def _segment(session: Session, segment: Segment | str) -> Segment:
    if isinstance(segment, Segment):
        return segment
    found = session.scalar(select(Segment).where(Segment.name == segment))
    if found is None:
        raise NotFoundError(f"no segment '{segment}' (see `campaigns segments list`)")
    return found


def members_query(
    session: Session, segment: Segment | str, settings: Settings, at: datetime | None = None,
) -> Select:
    """SELECT Contact.id of the segment's current members (erased contacts never)."""
    seg = _segment(session, segment)
    where = _Resolver(session, settings, at or utcnow(), []).expression(seg)
    return select(Contact.id).where(Contact.erased_at.is_(None), where)


def create_segment(
    session: Session, settings: Settings, name: str, definition: str, description: str | None = None,
) -> Segment:
    """Store a named filter after compiling it (so a bad filter is refused now, not at send time)."""
    name = name.strip()
    if not _NAME.match(name):
        raise InputError(f"segment name '{name}': use letters, digits, '_', '-' or '.', up to 100 characters")
    if session.scalar(select(Segment.id).where(Segment.name == name)) is not None:
        raise ConflictError(f"a segment named '{name}' already exists")
    definition = definition.strip()
    if name in segment_references(parse(definition)):
        raise InputError(f"segment '{name}' cannot contain itself (in_segment(\"{name}\"))")
    compile_where(definition, settings, session=session)
    now = utcnow()
    seg = Segment(name=name, definition=definition, description=description, created_at=now, updated_at=now)
    session.add(seg)
    session.flush()
    return seg


def get_segment(session: Session, name: str) -> Segment:
    """A segment by name (NotFoundError when there is none)."""
    return _segment(session, name)


def list_segments(session: Session) -> list[Segment]:
    """All segments by name."""
    return list(session.scalars(select(Segment).order_by(Segment.name)))


def count_segment(session: Session, segment: Segment | str, settings: Settings, at: datetime | None = None) -> int:
    """How many contacts are in the segment now (or at `at`)."""
    q = members_query(session, segment, settings, at).subquery()
    return int(session.scalar(select(func.count()).select_from(q)) or 0)


def sample_segment(
    session: Session, segment: Segment | str, settings: Settings, limit: int = 10, at: datetime | None = None,
) -> list[Contact]:
    """A few members (lowest ids first: stable between runs)."""
    ids = members_query(session, segment, settings, at).order_by(Contact.id).limit(limit)
    return list(session.scalars(select(Contact).where(Contact.id.in_(ids.scalar_subquery())).order_by(Contact.id)))


@dataclass(frozen=True)
class Usage:
    """Who depends on a segment."""

    campaigns: list[str]
    segments: list[str]


def segment_usage(session: Session, segment: Segment | str) -> Usage:
    """Campaigns targeting the segment and segments referring to it with in_segment().

    An archived campaign does not use it: archiving kept a copy of what it targeted.
    """
    seg = _segment(session, segment)
    campaigns = list(session.scalars(select(Campaign.name).where(
        Campaign.segment_id == seg.id, Campaign.status != CampaignStatus.ARCHIVED).order_by(Campaign.name)))
    referring = []
    for other in session.scalars(select(Segment).where(Segment.id != seg.id).order_by(Segment.name)):
        try:
            if seg.name in segment_references(parse(other.definition)):
                referring.append(other.name)
        except InputError:  # a stored definition that no longer parses refers to nothing
            continue
    return Usage(campaigns, referring)


def delete_segment(session: Session, segment: Segment | str) -> None:
    """Delete a segment no campaign or other segment uses (ConflictError names the users)."""
    seg = _segment(session, segment)
    usage = segment_usage(session, seg)
    if usage.campaigns:
        raise ConflictError(f"segment '{seg.name}' is used by campaign(s) {', '.join(usage.campaigns)}; "
                            "change or delete them first")
    if usage.segments:
        raise ConflictError(f"segment '{seg.name}' is used by segment(s) {', '.join(usage.segments)} "
                            "through in_segment(); delete those first")
    # Archived campaigns keep their snapshot; the schema's ON DELETE SET NULL says the same.
    session.execute(update(Campaign).where(Campaign.segment_id == seg.id).values(segment_id=None))
    session.delete(seg)
    session.flush()



def edit_definition(session: Session, settings: Settings, segment: Segment | str, where: str, sample: int = 10) -> dict[str, Any]:
    """Give the segment a new filter in `session` (the caller commits or rolls back) and say
    who joins and who leaves: counts, up to `sample` of each by address, and its campaigns."""
    seg = _segment(session, segment)
    definition = where.strip()
    if seg.name in segment_references(parse(definition)):
        raise InputError(f"--where: segment '{seg.name}' cannot contain itself")
    before = {int(i) for i in session.scalars(members_query(session, seg, settings))}
    old = seg.definition
    seg.definition = definition
    session.flush()
    # Compiling the stored segment again catches a cycle through other segments.
    after = {int(i) for i in session.scalars(members_query(session, seg, settings))}
    joins, leaves = sorted(after - before), sorted(before - after)
    shown = {c.id: c.email or c.phone or f"#{c.id}" for c in session.scalars(
        select(Contact).where(Contact.id.in_(joins[:sample] + leaves[:sample])))}
    return {"name": seg.name, "old": old, "new": definition, "before": len(before), "after": len(after),
            "joins": len(joins), "leaves": len(leaves), "used_by_campaigns": segment_usage(session, seg).campaigns,
            "sample_joins": [shown[i] for i in joins[:sample]], "sample_leaves": [shown[i] for i in leaves[:sample]]}
