"""Contacts who just said stop, heard by every sender before its next hand-over.

Whoever records an unsubscribe, a STOP or a complaint calls `announce` in the same
transaction. When that transaction commits, the contact is in this process's set at once
(the tracking app answers after its commit, so the dispatcher knows before the person
sees "unsubscribed"); on PostgreSQL a `NOTIFY campaigns_stopped` is sent by the commit
itself, and `Listener` adds it to the set of every other worker within milliseconds.
The sender asks `is_stopped` right before handing a message over; the ledger and the
suppression list stay the truth (the set only holds recent news, bounded). A topic left
is news too, under the scope `topic-<id>`: it holds back that topic's messages only.
"""

from __future__ import annotations

import logging
import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import partial

from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session

from campaigns.timespec import utcnow

log = logging.getLogger(__name__)

CHANNEL = "campaigns_stopped"
_TOPIC = re.compile(r"topic-[0-9]{1,18}")
_KEEP = 200_000  # recent stops remembered; older ones were long since seen by planning and claims
_lock = threading.Lock()
_recent: OrderedDict[tuple[int, str], float] = OrderedDict()  # (contact, channel or topic scope) -> when (epoch seconds)
_listening: set[int] = set()


def topic_scope(topic_id: int) -> str:
    """The scope a topic's stops are kept under (no ':' so it fits the notification payload)."""
    return f"topic-{topic_id}"


def announce(session: Session, contact_id: int, channels: Iterable[str]) -> None:
    """Say, as part of this transaction, that `contact_id` must get nothing more on `channels`
    (channel names, or `topic_scope(id)` for a topic they left)."""
    pending: set[tuple[int, str, float]] = session.info.setdefault("campaigns_stopped", set())
    at = utcnow().timestamp()
    for channel in channels:
        pending.add((contact_id, channel, at))
        if session.get_bind().dialect.name == "postgresql":
            # The schema first: shops sharing one database in separate schemas (and the
            # tests, one schema each) hear only their own contacts' stops.
            session.execute(text("SELECT pg_notify(:ch, current_schema() || ':' || :payload)"),
                            {"ch": CHANNEL, "payload": f"{contact_id}:{channel}:{at}"})


def remember(contact_id: int, channel: str, at: float) -> None:
    """Add one stop to this process's set (called on commit and by the listener)."""
    with _lock:
        key = (contact_id, channel)
        _recent[key] = max(at, _recent.get(key, 0.0))
        _recent.move_to_end(key)
        while len(_recent) > _KEEP:
            _recent.popitem(last=False)


def is_stopped(contact_id: int, channel: str, planned_at: datetime) -> bool:
    """True when this contact said stop on this channel (or scope) after a message to them was
    planned (a message planned later, after a new consent, is not held back)."""
    at = _recent.get((contact_id, channel))
    return at is not None and at >= planned_at.astimezone(UTC).timestamp()


def wanted(contact_id: int, channel: str, planned_at: datetime, topic_id: int | None = None) -> bool:
    """The sender's question right before hand-over: may this message (about `topic_id`) still go?"""
    for watch in list(_watches.values()):  # SQLite: another process's commit since the last look is read now
        watch.catch_up()
    if topic_id is not None and is_stopped(contact_id, topic_scope(topic_id), planned_at):
        return False
    return not is_stopped(contact_id, channel, planned_at)


def checker(contact_id: int, channel: str, planned_at: datetime, topic_id: int | None = None) -> Callable[[], bool]:
    """`wanted` bound to one message, for the channel to call right before hand-over."""
    return partial(wanted, contact_id, channel, planned_at, topic_id)


def listen(engine: Engine) -> None:
    """Hear other processes' stops, once per engine. PostgreSQL: LISTEN in a background
    thread. SQLite (workers and the tracking app sharing a file): `_SqliteWatch`, asked by
    every hand-over check and by a background poll every `POLL_SECONDS`."""
    with _lock:
        if id(engine) in _listening:
            return
        _listening.add(id(engine))
    ref = weakref.ref(engine, partial(_forget_engine, id(engine)))
    if engine.dialect.name == "postgresql":
        url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        threading.Thread(target=_listen_forever, args=(ref, url), name="campaigns-stopped-listener", daemon=True).start()
        return
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return  # a private database: no other process writes to it
    watch = _SqliteWatch(ref, database)
    _watches[id(engine)] = watch
    threading.Thread(target=_poll_forever, args=(watch,), name="campaigns-stopped-listener", daemon=True).start()


POLL_SECONDS = 0.02
_watches: dict[int, _SqliteWatch] = {}


def _forget_engine(key: int, _ref: object) -> None:
    _listening.discard(key)
    _watches.pop(key, None)


class _SqliteWatch:
    """Another connection's commits to a SQLite file, seen at once by the hand-over check.

    `PRAGMA data_version` (a few microseconds on a private connection) changes whenever
    another connection commits; then two max(id) lookups say whether a consent event or a
    suppression was added, and only then are the new revocations and suppressions read (two
    primary-key range scans). The version is read before the scans, so a commit after
    them changes it again and is read at the next check. A background poll keeps the set
    fresh too, but the check no longer depends on that thread getting the CPU in time: on a
    loaded machine it once lagged long enough for a message to begin after its
    unsubscribe had been acknowledged."""

    def __init__(self, ref: weakref.ref[Engine], database: str) -> None:
        import sqlite3

        self.ref, self.lock = ref, threading.Lock()
        self.raw = sqlite3.connect(database, check_same_thread=False, timeout=5)
        self.version: int | None = None
        self.seen: tuple[int, int] | None = None  # the newest consent event and suppression ids read

    def catch_up(self) -> None:
        try:
            with self.lock:
                version = self.raw.execute("PRAGMA data_version").fetchone()[0]
                if version == self.version:
                    return
                engine = self.ref()
                if engine is None:
                    return
                tops = self._tops()  # before the scans: a row added after them is read again next time
                if self.seen is not None and tops != self.seen:
                    self._read(engine, self.seen)
                self.seen, self.version = tops, version  # the first look is the baseline: history is the ledger's
        except Exception as exc:  # a locked or vanished file: the pre-wave ledger check still holds
            log.debug("stop check: %s", exc)

    def _tops(self) -> tuple[int, int]:
        """The newest consent event and suppression ids. Most commits (this process's own
        outcome writes among them) add neither, and these two primary-key lookups cost
        microseconds where the read costs half a millisecond."""
        row = self.raw.execute("SELECT (SELECT coalesce(max(id), 0) FROM consent_event), "
                               "(SELECT coalesce(max(id), 0) FROM suppression)").fetchone()
        return int(row[0]), int(row[1])

    def _read(self, engine: Engine, after: tuple[int, int]) -> None:
        """The revocations and suppressions with ids past `after`, into this process's set."""
        from sqlalchemy import select

        from campaigns.audience.messageable import suppression_matches_contact
        from campaigns.store.models import ConsentEvent, Contact, Suppression

        with engine.connect() as conn:
            revoked = conn.execute(select(ConsentEvent.contact_id, ConsentEvent.channel, ConsentEvent.occurred_at,
                                          ConsentEvent.topic_id)
                                   .where(ConsentEvent.id > after[0], ConsentEvent.action == "revoked")).all()
            suppressed = conn.execute(select(Contact.id, Suppression.channel, Suppression.since)
                                      .join(Contact, suppression_matches_contact()).where(Suppression.id > after[1])).all()
        for cid, channel, at, topic_id in revoked:  # a topic left stops that topic only
            remember(cid, channel if topic_id is None else topic_scope(topic_id), at.timestamp())
        for cid, channel, at in suppressed:
            remember(cid, channel, at.timestamp())


def _listen_forever(ref: weakref.ref[Engine], url: str) -> None:
    import time

    import psycopg

    while ref() is not None:
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                row = conn.execute("SELECT current_schema()").fetchone()
                schema = row[0] if row else None
                conn.execute(f"LISTEN {CHANNEL}")
                while ref() is not None:
                    for note in conn.notifies(timeout=1.0):
                        parsed = parse_payload(note.payload, schema)
                        if parsed is not None:
                            remember(*parsed)
        except Exception as exc:  # the database restarted: listen again (claims still check the ledger)
            log.warning("stop listener: %s; reconnecting", exc)
            time.sleep(1.0)


def _poll_forever(watch: _SqliteWatch) -> None:
    import time

    while watch.ref() is not None:
        watch.catch_up()
        time.sleep(POLL_SECONDS)
    watch.raw.close()


def forget_all() -> None:
    """Empty the set (tests; a process that starts fresh has nothing to forget)."""
    with _lock:
        _recent.clear()


def parse_payload(payload: str, schema: str | None = None) -> tuple[int, str, float] | None:
    """'[<schema>:]<contact>:<channel or topic-N>:<epoch>' from a notification, or None for
    anything else, or for another schema's stop when `schema` (the listener's) is given."""
    parts = payload.split(":")
    if len(parts) > 3:
        if schema is not None and ":".join(parts[:-3]) != schema:
            return None
        parts = parts[-3:]
    scope = parts[1] if len(parts) == 3 else ""
    if len(parts) != 3 or not parts[0].isdigit() or not (scope in ("email", "sms") or _TOPIC.fullmatch(scope)):
        return None
    try:
        return int(parts[0]), parts[1], float(parts[2])
    except ValueError:
        return None


@event.listens_for(Session, "after_commit")
def _on_commit(session: Session) -> None:
    for contact_id, channel, at in session.info.pop("campaigns_stopped", set()):
        remember(contact_id, channel, at)


@event.listens_for(Session, "after_rollback")
def _on_rollback(session: Session) -> None:
    session.info.pop("campaigns_stopped", None)
