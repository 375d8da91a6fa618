"""Custom events: what a contact did, told us by the shop. Idempotent by key.

One validation for every way in (`campaigns track event`, `campaigns events import` from
CSV or JSON lines, the signed `POST /webhooks/event`): a contact reference (resolved by
campaigns/audience/contact_ref.py), a name, properties (a flat JSON object), the time it
happened, and an id. The id is the idempotency key: a retried webhook or a file imported
twice records nothing new. Without an id the key is a hash of what the event says
(contact, name, time, properties), so the same line read twice is still one event.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from campaigns.audience.contact_ref import resolve_refs
from campaigns.audience.csvimport import CsvSource, ImportResult, Progress, Reject, Rejections, run_import
from campaigns.config import Settings
from campaigns.errors import InputError, RowError
from campaigns.store import stats
from campaigns.store.models import CustomEvent
from campaigns.timespec import parse_datetime, utcnow

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,99}$")
MAX_PROPERTIES_BYTES = 8000
MAX_JSON_LINE = 65_536  # one event in a JSON-lines file (a CSV field's limit is 131,072)
REF_COLUMNS = ("contact", "external_id", "email", "phone")


@dataclass
class EventData:
    """One validated event, its contact not yet resolved."""

    line: int
    contact_ref: tuple[str, str]
    name: str
    properties: dict[str, Any]
    occurred_at: datetime
    key: str


@dataclass
class Recorded:
    """What recording a batch did: ids of the new rows, and how many were already there."""

    created: list[int] = field(default_factory=list)
    unchanged: int = 0


def check_name(name: str, line: int = 1) -> str:
    """An event name: a letter, then letters, digits or _ (it is also a segment field: events.NAME)."""
    if not NAME.match(name or ""):
        raise RowError(line, "name", f"'{name[:60]}' is not an event name (a letter, then letters, digits or _; "
                                     "at most 100)")
    return name


def _properties(raw: Any, line: int) -> dict[str, Any]:
    if raw in (None, ""):
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise RowError(line, "properties", "is not valid JSON (expected an object like {\"sku\": \"A1\"})") from None
    if not isinstance(raw, dict):
        raise RowError(line, "properties", "must be a JSON object")
    for k, v in raw.items():
        if v is not None and not isinstance(v, str | int | float | bool):
            raise RowError(line, "properties", f"'{k}' must be text, a number, true/false or null (nothing nested)")
        if "\x00" in k or (isinstance(v, str) and "\x00" in v):  # PostgreSQL's JSON cannot hold U+0000
            raise RowError(line, "properties", "a key or value contains a NUL character (0x00)")
    if len(json.dumps(raw)) > MAX_PROPERTIES_BYTES:
        raise RowError(line, "properties", f"is larger than {MAX_PROPERTIES_BYTES} bytes")
    return raw


def _text(row: dict[str, Any], key: str, line: int) -> str:
    value = row.get(key)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise RowError(line, key, "expected text")
    text = str(value).strip()
    if len(text) > 320 or any(ord(c) < 32 for c in text):
        raise RowError(line, key, "is too long or has control characters")
    return text


def default_key(ref: tuple[str, str], name: str, occurred_at: datetime, properties: dict[str, Any]) -> str:
    """The key of an event sent without an id: what it says, hashed (the same line twice is one event)."""
    text = json.dumps([ref[0], ref[1].lower(), name, occurred_at.isoformat(), properties], sort_keys=True)
    return "h:" + hashlib.sha256(text.encode()).hexdigest()


def parse_event_row(row: dict[str, Any], line: int, settings: Settings, now: datetime | None = None,
                    *, default_now: bool = False) -> EventData:
    """Validate one event (CSV row, JSON line, webhook body or CLI); RowError naming the first bad field."""
    if "__error__" in row:
        raise RowError(line, None, str(row["__error__"]))
    ref = next(((c, v) for c in REF_COLUMNS if (v := _text(row, c, line))), None)
    if ref is None:
        raise RowError(line, "contact", "no contact: give contact, email, external_id or phone")
    name = check_name(_text(row, "name", line), line)
    properties = _properties(row.get("properties"), line)
    now = now or utcnow()
    when = _text(row, "occurred_at", line)
    if not when:
        if not default_now:
            raise RowError(line, "occurred_at", "is empty")
        occurred = now
    else:
        try:
            occurred = parse_datetime(when, settings.timezone, "occurred_at")
        except InputError as exc:
            raise RowError(line, "occurred_at", str(exc).split(": ", 1)[-1]) from None
        if occurred > now:
            raise RowError(line, "occurred_at", f"'{when}' is in the future")
    key = _text(row, "id", line)
    if len(key) > 190:
        raise RowError(line, "id", "is longer than 190 characters")
    return EventData(line, ref, name, properties, occurred, f"id:{key}" if key else default_key(ref, name, occurred, properties))


def record(session: Session, events: list[EventData], source: str) -> tuple[Recorded, list[RowError]]:
    """Insert the events whose key is new (one batch); unknown contacts come back as row errors."""
    out, errors = Recorded(), list[RowError]()
    if not events:
        return out, errors
    contacts = resolve_refs(session, [e.contact_ref for e in events])
    seen = set(session.scalars(select(CustomEvent.idempotency_key).where(
        CustomEvent.idempotency_key.in_({e.key for e in events}))))
    rows, now = [], utcnow()
    for e in events:
        cid = contacts.get(e.contact_ref)
        if cid is None:
            errors.append(RowError(e.line, e.contact_ref[0], f"no contact '{e.contact_ref[1][:80]}'"))
            continue
        if e.key in seen:
            out.unchanged += 1
            continue
        seen.add(e.key)
        rows.append({"contact_id": cid, "name": e.name, "properties": e.properties, "occurred_at": e.occurred_at,
                     "idempotency_key": e.key, "source": source, "recorded_at": now})
    if rows:
        table = CustomEvent.__table__
        out.created = list(session.connection().execute(
            insert(table).returning(table.c.id, sort_by_parameter_order=True), rows).scalars())
    return out, errors


def track(session: Session, settings: Settings, contact: str, name: str, properties: dict[str, Any],
          at: str | None = None, key: str | None = None, source: str = "cli") -> tuple[int | None, bool]:
    """Record one event (`campaigns track event`): (its id, created?). InputError in one line."""
    row: dict[str, Any] = {"contact": contact, "name": name, "properties": properties, "occurred_at": at or "", "id": key or ""}
    try:
        data = parse_event_row(row, 1, settings, default_now=True)
    except RowError as err:
        raise InputError(f"{err.field}: {err.reason}") from None
    done, errors = record(session, [data], source)
    if errors:
        raise InputError(f"{errors[0].field}: {errors[0].reason}")
    if done.created:
        return done.created[0], True
    return session.scalar(select(CustomEvent.id).where(CustomEvent.idempotency_key == data.key)), False


class _JsonLines:
    """A JSON-lines file read like a CsvSource: (line, object) pairs; a bad line is one error."""

    def __init__(self, path: Path, encoding: str) -> None:
        self.path, self.encoding = path, encoding
        self.header = ["contact", "external_id", "email", "phone", "name", "occurred_at", "id", "properties"]

    def rows(self) -> Iterator[tuple[int, dict[str, Any]]]:
        if not self.path.is_file():
            raise InputError(f"{self.path}: no such file")
        with open(self.path, encoding=self.encoding, errors="strict") as fh:
            try:
                line = 0
                while text := fh.readline(MAX_JSON_LINE + 1):
                    line += 1
                    if len(text) > MAX_JSON_LINE and not text.endswith("\n"):  # skip the rest, never held whole
                        while (rest := fh.readline(MAX_JSON_LINE)) and not rest.endswith("\n"):
                            pass
                        yield line, {"__error__": f"is longer than {MAX_JSON_LINE:,} characters"}
                        continue
                    if not text.strip():
                        continue
                    try:
                        obj = json.loads(text)
                    except (ValueError, RecursionError):
                        yield line, {"__error__": "is not a JSON object"}
                        continue
                    yield line, obj if isinstance(obj, dict) else {"__error__": "is not a JSON object"}
            except UnicodeDecodeError:
                raise InputError(f"{self.path}: not valid {self.encoding} text; save the file as UTF-8 or pass --encoding") from None


def _is_json_lines(path: Path) -> bool:
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        return True
    try:
        with open(path, "rb") as fh:
            return fh.read(64).lstrip().startswith(b"{")
    except OSError:
        return False


def import_events(session: Session, settings: Settings, path: Path, *, encoding: str = "utf-8",
                  skip_invalid: bool = False, force: bool = False, progress: Progress | None = None) -> ImportResult:
    """Stream a CSV or JSON-lines file of events in one transaction; any bad row fails it unless skipped."""
    path = Path(path)
    csv_source = CsvSource(path, encoding, required_any=("name",), progress=progress)
    source: Any = _JsonLines(path, encoding) if path.exists() and _is_json_lines(path) else csv_source
    rejections = Rejections(source, skip_invalid, force)
    now = utcnow()

    def write(chunk: list[EventData], result: ImportResult, reject: Reject) -> None:
        done, errors = record(session, chunk, "import")
        result.created += len(done.created)
        result.unchanged += done.unchanged
        for err in errors:
            reject(err)

    result = run_import(source, rejections, lambda row, line: parse_event_row(row, line, settings, now), write)
    stats.after_bulk_write(session, [CustomEvent.__table__], result.created)
    return result
