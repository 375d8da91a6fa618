"""Links in messages: destinations registered once in `tracked_link` (with UTM tags, cached
by process) and rewritten to signed click URLs.

A link id is cached only after the transaction that created or read it commits: a
rolled-back insert must never leave a cached id pointing at nothing (SQLite may even hand
that rowid to another URL later).
"""

from __future__ import annotations

import hashlib
import html as htmllib
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy import event, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from campaigns.config import Settings
from campaigns.errors import InputError
from campaigns.messages import links
from campaigns.store.models import TrackedLink
from campaigns.timespec import utcnow

_PENDING = "campaigns.messages.link_registry.pending"
_DB_KEY = "campaigns.messages.link_registry.db"
_CACHE: dict[tuple[str, str], int] = {}
_CACHE_MAX = 100_000
MAX_URL = 4000
_TABLE = TrackedLink.__table__
_HREF = re.compile(r"""(<(?:a|area)\b[^>]*?\bhref\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)
_URL = re.compile(r"""https?://[^\s<>"'\])]+""")


def with_utm(url: str, utm: Mapping[str, Any] | None) -> str:
    """The URL with utm_* parameters added (ones already in the URL are kept as written)."""
    if not utm:
        return url
    return _with_utm(url, utm_pairs(utm))


def utm_pairs(utm: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """A campaign's UTM tags as the key `_with_utm` is cached by (empty values dropped)."""
    return tuple((k, str(v)) for k, v in utm.items() if v not in (None, ""))


@lru_cache(maxsize=4096)  # the same few links in every message of a campaign
def _with_utm(url: str, utm: tuple[tuple[str, str], ...]) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    present = {k for k, _ in query}
    for key, value in utm:  # empty values were dropped by with_utm
        name = key if key.startswith("utm_") else f"utm_{key}"
        if name not in present:
            query.append((name, value))
            present.add(name)
    return urlunsplit(parts._replace(query=urlencode(query)))


def _db_key(session: Session) -> str:
    key = session.info.get(_DB_KEY)
    if key is None:  # rendering the URL is slow next to a dict look-up; once per session
        bind = session.get_bind()
        engine = bind.engine  # a Session may be bound to a Connection; both know their Engine
        key = session.info[_DB_KEY] = engine.url.render_as_string(hide_password=True)
    return key


def link_id(session: Session, url: str) -> int:
    """The tracked_link id of `url`, inserting it the first time (safe under concurrency)."""
    key = (_db_key(session), url)
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    pending: dict[tuple[str, str], int] = session.info.setdefault(_PENDING, {})
    if key in pending:
        return pending[key]
    if len(url) > MAX_URL:
        raise InputError(f"link {url[:60]}... is longer than {MAX_URL} characters")
    url_hash = hashlib.sha256(url.encode()).hexdigest()
    conn = session.connection()  # Core, not ORM: this runs for every new link of every message
    ins = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    # ON CONFLICT DO NOTHING: the URL may be known already, or a concurrent worker may register it first.
    found = conn.execute(ins(_TABLE).values(url_hash=url_hash, url=url, created_at=utcnow())
                         .on_conflict_do_nothing().returning(_TABLE.c.id)).scalar()
    if found is None:
        found = conn.execute(select(_TABLE.c.id).where(_TABLE.c.url_hash == url_hash)).scalar()
    assert found is not None
    pending[key] = found
    return found


class LinkRewriter:
    """Rewrites http(s) destinations in one delivery's HTML or text to signed click URLs.

    Links to the tracking server itself (unsubscribe) and other schemes (mailto:, tel:,
    #anchors) are left as written.
    """

    def __init__(self, session: Session, settings: Settings, delivery_id: int, utm: Mapping[str, Any]) -> None:
        self.session, self.settings, self.delivery_id = session, settings, delivery_id
        self.utm = utm_pairs(utm) if utm else None  # once per message, not per link
        self.base = settings.tracking.public_url.rstrip("/") + "/"
        self._seen: dict[str, str] = {}  # the HTML and text parts link to the same places: sign each once

    def tracks(self, url: str) -> bool:
        """Whether `url` becomes a click URL (http or https, and not the tracking server's own)."""
        return url.lower().startswith(("http://", "https://")) and not url.startswith(self.base)

    def track(self, url: str) -> str:
        """The click URL for one destination (registered on first sight)."""
        if not self.tracks(url):
            return url
        click = self._seen.get(url)
        if click is None:
            click = self._seen[url] = links.click_url(self.settings, self.delivery_id,
                                                      link_id(self.session, _with_utm(url, self.utm) if self.utm is not None else url))
        return click

    def html(self, doc: str) -> str:
        """Every <a>/<area> href rewritten (entities decoded first, the new URL escaped)."""
        def swap(m: re.Match[str]) -> str:
            dest = htmllib.unescape(m.group(3).strip())
            new = self.track(dest)
            return m.group(0) if new == dest else f"{m.group(1)}{m.group(2)}{htmllib.escape(new)}{m.group(2)}"
        return _HREF.sub(swap, doc)

    def text(self, doc: str) -> str:
        """Every bare URL in plain text rewritten; trailing sentence punctuation stays outside."""
        def swap(m: re.Match[str]) -> str:
            url = m.group(0)
            cut = len(url.rstrip(".,;:!?"))
            return self.track(url[:cut]) + url[cut:]
        return _URL.sub(swap, doc)


_URLS: dict[tuple[str, int], str] = {}


def link_url(session: Session, link: int) -> str | None:
    """The destination of a registered link (what the click endpoint may redirect to).

    Cached by process: a tracked_link row is never deleted, and updated only by erasure
    (`contacts erase` scrubs a URL carrying the person's address; a click recorded for an
    erased contact keeps no URL), so once read from committed data its URL is that id's (not cached while this session has link
    inserts of its own pending, which a rollback could undo).
    """
    key = (_db_key(session), link)
    url = _URLS.get(key)
    if url is None:
        url = session.scalar(select(TrackedLink.url).where(TrackedLink.id == link))
        if url is not None and not session.info.get(_PENDING):
            if len(_URLS) > _CACHE_MAX:
                _URLS.clear()
            _URLS[key] = url
    return url


@event.listens_for(Session, "after_commit")
def _publish(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    if pending:
        if len(_CACHE) > _CACHE_MAX:
            _CACHE.clear()
        _CACHE.update(pending)


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_PENDING, None)
