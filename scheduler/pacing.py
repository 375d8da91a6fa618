"""Pacing at hand-over: throttles and the frequency cap, checked just before a message goes out.

Planning spreads due times, but a resume, a retry or a second worker can bring many rows
due at once; so every wave is checked here, in the transaction that marks it `sending`:

- throttles: at most `throttle_per_minute` per campaign, `[sending] max_per_minute` in all
  and `[sending] domain_limits` per recipient domain, in any calendar minute (UTC). The
  counts live in `send_window` rows, one per scope and minute, read under a row lock on
  PostgreSQL (the write lock on SQLite), so every worker sees what the others handed over;
- the frequency cap, for marketing messages: the messages a contact was sent (or that are
  in flight) in the cap's window, across campaigns. Queued messages do not count: a
  campaign's future drip steps do not use up another campaign's room.

A row that does not fit goes back to the queue, due when it will fit (the next minute for
a throttle; for the cap, when the oldest counted message leaves the window), with the
reason in its `error`. The cap policy is "wait": a drip step is delayed, never sent over
the cap, and never dropped.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from campaigns.config import Settings
from campaigns.context import App
from campaigns.store.models import Campaign, Contact, Delivery, SendWindow
from campaigns.timespec import Cap, parse_cap
from scheduler.outbox import Claimed, write_transaction

log = logging.getLogger("campaigns.dispatcher")
M = TypeVar("M")

IN_FLIGHT_OR_SENT = ("sending", "sent", "unknown")
KEEP_WINDOWS = timedelta(hours=2)  # minute counters older than this are deleted
_WINDOW = SendWindow.__table__
_DELIVERY = Delivery.__table__


@dataclass(frozen=True)
class Row:
    """What pacing needs of a claimed row."""

    id: int
    campaign_id: int
    contact_id: int


def _minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def _cap_of(settings: Settings, c: Any) -> Cap | None:  # a campaign row (Core) or object
    if not c.marketing:
        return None
    return parse_cap(c.frequency_cap) if c.frequency_cap else parse_cap(settings.policy.frequency_cap)


def _domain(address: str | None) -> str:
    return (address or "").rpartition("@")[2].strip().lower()


def _counters(conn: Connection, scopes: set[str], minute: datetime) -> dict[str, int]:
    """The minute's count per scope, the rows created when missing and locked for this transaction."""
    if not scopes:
        return {}
    table = _WINDOW
    values = [{"scope": s, "minute": minute, "count": 0} for s in sorted(scopes)]
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(insert(table).on_conflict_do_nothing(index_elements=["scope", "minute"]), values)
    q = select(table.c.scope, table.c.count).where(table.c.minute == minute, table.c.scope.in_(scopes)).order_by(table.c.scope)
    if conn.dialect.name == "postgresql":
        q = q.with_for_update()
    return {scope: n for scope, n in conn.execute(q)}


def _recent_sends(conn: Connection, contact_ids: set[int], exclude: set[int], since: datetime) -> dict[int, list[datetime]]:
    """When each contact's marketing messages in the window went out (or were handed over), oldest first."""
    if not contact_ids:
        return {}
    if conn.dialect.name == "postgresql":  # two workers must not both fill the last place for one contact
        conn.execute(select(Contact.id).where(Contact.id.in_(contact_ids)).order_by(Contact.id).with_for_update())
    d = _DELIVERY.c
    when = func.coalesce(d.sent_at, d.updated_at)
    q = (select(d.contact_id, when).join(Campaign, Campaign.id == d.campaign_id)
         .where(d.contact_id.in_(contact_ids), d.state.in_(IN_FLIGHT_OR_SENT), d.is_holdout.is_(False),
                Campaign.marketing.is_(True), when >= since))
    if exclude:
        q = q.where(d.id.not_in(exclude))
    out: dict[int, list[datetime]] = defaultdict(list)
    for contact_id, at in conn.execute(q):
        out[contact_id].append(at)
    for times in out.values():
        times.sort()
    return out


def admit(conn: Connection, settings: Settings, rows: Sequence[Row], now: datetime) -> tuple[list[int], dict[int, tuple[datetime, str]]]:
    """Split rows about to be handed over into (ids that go now, {id: (when it fits, why it waits)}).

    Call inside the transaction that marks the admitted rows `sending`; then `defer` the rest.
    """
    if not rows:
        return [], {}
    sending = settings.sending
    campaigns = {c.id: c for c in conn.execute(select(Campaign).where(Campaign.id.in_({r.campaign_id for r in rows})))}
    caps = {cid: _cap_of(settings, c) for cid, c in campaigns.items()}
    if not (sending.max_per_minute or sending.domain_limits or any(caps.values())
            or any(c.throttle_per_minute for c in campaigns.values())):
        return [r.id for r in rows], {}  # nothing to pace: no counters touched
    addresses = dict(conn.execute(select(Delivery.id, Delivery.address).where(Delivery.id.in_([r.id for r in rows]))).all()) \
        if sending.domain_limits else {}
    limits: dict[str, int] = {}
    scopes_of: dict[int, list[str]] = {}
    domain_limits = {k.lower(): v for k, v in (sending.domain_limits or {}).items()}
    for r in rows:
        scopes = []
        if sending.max_per_minute:
            scopes.append("all")
            limits["all"] = sending.max_per_minute
        c = campaigns[r.campaign_id]
        if c.throttle_per_minute:
            scopes.append(f"campaign:{c.id}")
            limits[f"campaign:{c.id}"] = c.throttle_per_minute
        domain = _domain(addresses.get(r.id))
        if domain in domain_limits:
            scopes.append(f"domain:{domain}")
            limits[f"domain:{domain}"] = domain_limits[domain]
        scopes_of[r.id] = scopes
    minute = _minute(now)
    counts = _counters(conn, set(limits), minute)
    widest = max((cap.window for cap in caps.values() if cap), default=None)
    capped_contacts = {r.contact_id for r in rows if caps[r.campaign_id]}
    recent = _recent_sends(conn, capped_contacts, {r.id for r in rows}, now - widest) if widest else {}
    go: list[int] = []
    wait: dict[int, tuple[datetime, str]] = {}
    for r in rows:
        cap = caps[r.campaign_id]
        if cap is not None:
            times = [t for t in recent.get(r.contact_id, []) if t > now - cap.window]  # one sent exactly a window ago has left it
            if len(times) >= cap.count:  # fits again once enough of these leave the window
                until = times[len(times) - cap.count] + cap.window
                wait[r.id] = (max(until, now + timedelta(seconds=1)), f"frequency cap {cap.count} per {cap.window}")
                continue
        full = [s for s in scopes_of[r.id] if counts.get(s, 0) >= limits[s]]
        if full:
            wait[r.id] = (minute + timedelta(minutes=1), f"throttle {full[0]}: {limits[full[0]]} per minute")
            continue
        for s in scopes_of[r.id]:
            counts[s] = counts.get(s, 0) + 1
        if cap is not None:
            recent.setdefault(r.contact_id, []).append(now)
        go.append(r.id)
    _store(conn, counts, minute, now)
    return go, wait


def _store(conn: Connection, counts: dict[str, int], minute: datetime, now: datetime) -> None:
    table = _WINDOW
    for scope, n in counts.items():
        conn.execute(update(table).where(table.c.scope == scope, table.c.minute == minute).values(count=n))
    if counts:
        conn.execute(table.delete().where(table.c.minute < minute - KEEP_WINDOWS))


def defer(conn: Connection, waits: dict[int, tuple[datetime, str]], now: datetime) -> None:
    """Put rows that must wait back in the queue, due when they fit; the claim's attempt is given back."""
    d = _DELIVERY
    for row_id, (until, why) in waits.items():
        conn.execute(update(d).where(d.c.id == row_id, or_(d.c.state == "claimed", d.c.state == "sending"))
                     .values(state="queued", due_at=until, attempts=d.c.attempts - 1, lease_until=None, claimed_by=None,
                             error=f"waiting: {why}", updated_at=now))


def hold(app: App, messages: list[tuple[Claimed, M]], now: datetime) -> list[tuple[Claimed, M]]:
    """The hand-over hook: the messages that may go now; the others are queued again, due when they fit."""
    if not messages:
        return messages
    with write_transaction(app.engine) as conn:
        go, wait = admit(conn, app.settings, [Row(r.id, r.campaign_id, r.contact_id) for r, _ in messages], now)
        defer(conn, wait, now)
    if wait:
        log.info("%d messages wait for a throttle or the frequency cap (first: %s)", len(wait), next(iter(wait.values()))[1])
    admitted = set(go)
    return [(row, msg) for row, msg in messages if row.id in admitted]
