"""Intention-to-treat outcomes of one campaign: who was assigned what, and who bought when.

A contact's clock starts at each of their deliveries in the campaign: the send time, or
the due time for a held-out contact (and for an assigned one the send never reached).
They convert when any purchase falls inside the campaign's window after one of those
times (both ends inclusive), whatever other campaigns did; their revenue is the sum of
those purchases. A contact's assignment (holdout, variant) is the one of their earliest
delivery whose clock has started. Attribution (credit) plays no part here.

Computed in SQL without reading every delivery into Python: one grouped query counts the
contacts per (holdout, variant) (or the caller counts them in its own pass over the
deliveries, with `earliest`); one join finds the purchases made after a clock started
(a few rows per buyer), whose window end is then checked exactly in Python so that both
ends stay inclusive to the microsecond on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Subquery, and_, case, func, select
from sqlalchemy.orm import Session

from campaigns.reports.stats import Group
from campaigns.store.models import Campaign, Delivery, Purchase
from campaigns.vocab import DeliveryState

_IN_CHUNK = 900  # under SQLite's bound-parameter limit


@dataclass(frozen=True)
class Outcome:
    """One contact's assignment and result (revenue_cents None: did not convert)."""

    held_out: bool
    variant: str | None
    revenue_cents: int | None


@dataclass
class Summary:
    """Contacts per (held_out, variant), and each converting contact's revenue in cents."""

    contacts: dict[tuple[bool, str | None], int] = field(default_factory=dict)
    buyers: dict[tuple[bool, str | None], list[int]] = field(default_factory=dict)

    def variants(self, held_out: bool) -> set[str | None]:
        """The variants with at least one contact on that side."""
        return {v for (h, v), n in self.contacts.items() if h is held_out and n}


def summarise(found: dict[int, Outcome]) -> Summary:
    """The summary of per-contact outcomes (for callers that hold them one by one)."""
    out = Summary()
    for o in found.values():
        key = (o.held_out, o.variant)
        out.contacts[key] = out.contacts.get(key, 0) + 1
        if o.revenue_cents is not None:
            out.buyers.setdefault(key, []).append(o.revenue_cents)
    return out


def started(d: Any, c: Campaign, now: datetime, *, run_id: int | None = None, test_only: bool = False) -> tuple[Any, ...]:
    """The conditions on delivery `d` (the model or an alias) for a clock of `c` that has started.

    A row still waiting for an A/B winner has no treatment yet, so it is left out until the
    winner is decided; `test_only` keeps only an A/B test share (not the winner's remainder),
    `run_id` one firing.
    """
    out: tuple[Any, ...] = (d.campaign_id == c.id, func.coalesce(d.sent_at, d.due_at) <= now, d.state != DeliveryState.WAITING)
    if run_id is not None:
        out += (d.run_id == run_id,)
    if test_only:
        out += (d.ab_remainder.is_(False),)
    return out


def earliest(c: Campaign, **where: tuple[Any, ...]) -> Subquery:
    """Per contact of `c`, the lowest delivery id meeting each named set of conditions (NULL: none does).

    Joined back to the deliveries on the contact, `delivery.id == earliest.c.NAME` marks one
    delivery per contact, so summing it counts distinct contacts in any grouping of the rows.
    """
    d = Delivery
    return (select(d.contact_id, *(func.min(case((and_(*conditions), d.id))).label(name) for name, conditions in where.items()))
            .where(d.campaign_id == c.id).group_by(d.contact_id).subquery())


@dataclass(frozen=True)
class Clocks:
    """What a caller's own pass over the deliveries found of the `started` ones: how many,
    and the earliest and latest clock start (None: no clock has started)."""

    started: int
    first: datetime | None
    last: datetime | None


def summary(session: Session, c: Campaign, now: datetime, *, run_id: int | None = None, test_only: bool = False,
            contacts: dict[tuple[bool, str | None], int] | None = None, clocks: Clocks | None = None) -> Summary:
    """Every contact whose clock has started (due time passed; see `started`), grouped by assignment.

    `contacts`: the contacts per (held_out, variant) when the caller has counted them already
    (a count of the deliveries that are `earliest` among the `started`); else one grouped query counts them.
    `clocks`: the started deliveries' count and span, when the caller has them: then the
    purchases are read from whichever side has fewer rows (`_spent`).
    """
    d, window = Delivery, timedelta(seconds=c.attribution_window_seconds)
    mine = started(d, c, now, run_id=run_id, test_only=test_only)
    out = Summary()
    if contacts is not None:
        out.contacts = {k: n for k, n in contacts.items() if n}
    else:
        first = select(func.min(d.id).label("id")).where(*mine).group_by(d.contact_id).subquery()
        for held, variant, n in session.execute(select(d.is_holdout, d.variant, func.count())
                                                .join(first, first.c.id == d.id).group_by(d.is_holdout, d.variant)):
            key = (bool(held), variant)
            out.contacts[key] = out.contacts.get(key, 0) + int(n)
    spent = _spent(session, mine, window, clocks)
    ids = sorted(spent)
    for i in range(0, len(ids), _IN_CHUNK):
        part = ids[i:i + _IN_CHUNK]
        firsts = (select(d.contact_id, func.min(d.id).label("id")).where(*mine, d.contact_id.in_(part))
                  .group_by(d.contact_id).subquery())
        for contact_id, held, variant in session.execute(select(firsts.c.contact_id, d.is_holdout, d.variant)
                                                         .join(firsts, firsts.c.id == d.id)):
            out.buyers.setdefault((bool(held), variant), []).append(spent[contact_id])
    return out


_SLACK = timedelta(seconds=1)  # around the purchases' time range: the exact ends are checked in Python


def _spent(session: Session, mine: tuple[Any, ...], window: timedelta, clocks: Clocks | None) -> dict[int, int]:
    """Per contact, the cents of the purchases inside the window after one of their clocks
    (`mine`), each purchase once.

    Either the started deliveries are walked and each contact's purchases looked up, or,
    when fewer purchases fall between the first clock and the last one's window end than
    there are started deliveries (`clocks` tells), those purchases are read and their
    contacts' clocks looked up, 900 contacts a query. SQLite's planner, without statistics,
    always walks the deliveries (200,000 deliveries and 10,000 purchases: 0.33 s against
    0.05 s)."""
    d = Delivery
    start = func.coalesce(d.sent_at, d.due_at)
    pairs: Any = None
    if clocks is not None and clocks.first is not None and clocks.last is not None:
        in_range = (Purchase.occurred_at >= clocks.first - _SLACK, Purchase.occurred_at <= clocks.last + window + _SLACK)
        if (session.scalar(select(func.count()).select_from(Purchase).where(*in_range)) or 0) < clocks.started:
            pairs = _by_purchase(session, mine, start, in_range)
    if pairs is None:
        pairs = session.execute(select(d.contact_id, Purchase.id, Purchase.occurred_at, Purchase.amount_cents, start)
                                .join(Purchase, Purchase.contact_id == d.contact_id).where(*mine, Purchase.occurred_at >= start))
    spent: dict[int, int] = {}
    seen: set[int] = set()
    for contact_id, purchase_id, occurred_at, cents, at in pairs:
        if purchase_id not in seen and at <= occurred_at <= at + window:
            seen.add(purchase_id)
            spent[contact_id] = spent.get(contact_id, 0) + int(cents)
    return spent


def _by_purchase(session: Session, mine: tuple[Any, ...], start: Any, in_range: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """(contact, purchase, occurred_at, cents, clock start) for every purchase in range and
    every started clock of its contact."""
    d = Delivery
    bought: dict[int, list[tuple[int, datetime, int]]] = {}
    for pid, contact_id, occurred_at, cents in session.execute(
            select(Purchase.id, Purchase.contact_id, Purchase.occurred_at, Purchase.amount_cents).where(*in_range)):
        bought.setdefault(contact_id, []).append((pid, occurred_at, cents))
    ids = sorted(bought)
    out: list[tuple[Any, ...]] = []
    for i in range(0, len(ids), _IN_CHUNK):
        for contact_id, at in session.execute(select(d.contact_id, start).where(*mine, d.contact_id.in_(ids[i:i + _IN_CHUNK]))):
            out.extend((contact_id, pid, occurred_at, cents, at) for pid, occurred_at, cents in bought[contact_id])
    return out


def group(found: Summary | dict[int, Outcome], held_out: bool, variant: str | None = None) -> Group:
    """The treated (or held-out) group, optionally one variant's share of it."""
    s = found if isinstance(found, Summary) else summarise(found)
    keys = [k for k in set(s.contacts) | set(s.buyers) if k[0] is held_out and (variant is None or k[1] == variant)]
    # Sorted: the buyers' order must not depend on the query plan (the interval reads them as a sample).
    buyers = tuple(sorted(cents / 100 for k in keys for cents in s.buyers.get(k, ())))
    return Group(sum(s.contacts.get(k, 0) for k in keys), len(buyers), sum(buyers), buyers)
