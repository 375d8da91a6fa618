"""Contacts: validate, import (streaming, all-or-nothing), add, find, list and erase.

An import upserts by external_id, then by email; re-importing the same file changes
nothing. Columns email, phone, name, timezone, locale, external_id, tags (separated by
';' or ','), consent_email and consent_sms are known; every other column becomes an
attribute (whole numbers and decimals are stored as numbers, leading zeros stay text).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field, fields
from functools import lru_cache
from operator import attrgetter
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote_plus

import phonenumbers
from phonenumbers.timezone import time_zones_for_number
from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from campaigns import csv_output
from campaigns.audience import consent as ledger
from campaigns.audience import phone_fast
from campaigns.audience.csvimport import CsvSource, ImportResult, Progress, Reject, Rejections, run_import
from campaigns.audience.emails import normalise_email
from campaigns.audience.suppression import add_hash, check_channel
from campaigns.config import Settings
from campaigns.errors import ConflictError, InputError, RowError
from campaigns.signing import address_hash, address_hasher
from campaigns.store import stats
from campaigns.store.bulk import among, bulk_cache, insert_rows
from campaigns.store.models import (
    Campaign,
    ConsentEvent,
    Contact,
    CustomEvent,
    Delivery,
    DripEnrollment,
    Event,
    Segment,
    Suppression,
    TrackedLink,
)
from campaigns.timespec import check_timezone, utcnow

FIELDS = ("external_id", "email", "phone", "name", "timezone", "locale")
KNOWN_COLUMNS = {*FIELDS, "tags", "consent_email", "consent_sms"}
YES = {"yes", "y", "true", "1", "granted", "opt-in", "optin"}
NO = {"no", "n", "false", "0", "revoked", "opt-out", "optout"}
_LOCALE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")
_INT = re.compile(r"^-?(0|[1-9]\d{0,15})$")
_DEC = re.compile(r"^-?(0|[1-9]\d{0,12})\.\d{1,6}$")


def normalise_phone(value: str, region: str) -> str:
    """A possible phone number in E.164 form; national numbers use the default region.

    Parse and validation cost about 15 us a number even with `phone_fast`'s shortcuts (more
    than a bare import's whole row), so answers are remembered by (text, region): a
    re-import, or a file where a household or a switchboard number repeats, pays once per
    number."""
    key = (value, region)
    found = _PHONES.get(key)
    if found is None:
        if len(_PHONES) > 16384:  # bounded (about 3 MB): a long-running daemon imports too
            _PHONES.clear()
        try:
            found = _normalise_phone(value, region)
        except InputError as exc:
            found = exc
        _PHONES[key] = found
    if isinstance(found, InputError):
        raise InputError(str(found))
    return found


_PHONES: dict[tuple[str, str], str | InputError] = {}
# phonenumbers compiles each metadata pattern again (through re's small cache) for every test
# it makes, about 20 per number; its own cache keeps them (bounded by the metadata) and takes
# a number's parse and validation from about 22 to 18 us.
phonenumbers.enable_pattern_cache()


def _normalise_phone(value: str, region: str) -> str:
    try:
        number = phone_fast.parse(value.strip(), region or None)
    except phonenumbers.NumberParseException:
        raise InputError(f"'{value}' is not a phone number") from None
    if not phone_fast.is_valid(number):
        raise InputError(f"'{value}' is not a valid phone number for region {region}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def timezone_for_phone(e164: str) -> str | None:
    """The time zone of a phone number when phonenumbers' data names exactly one, else None.

    +1 415 gives America/Los_Angeles and +33 Europe/Paris, while an Australian mobile
    (eight zones) or +1 800 (non-geographic) give None: the contact keeps no zone and the
    campaign's (by default the configured one) applies. The library's answer depends on the
    country and area prefix (at most 9 digits) and the number's type, so answers are cached
    by the first 9 digits: an import pays the lookup once per area, not once per row.
    """
    key = e164[:10]
    if key not in _ZONE_BY_PREFIX:
        if len(_ZONE_BY_PREFIX) > 65536:  # bounded: a long-running daemon imports too
            _ZONE_BY_PREFIX.clear()
        try:
            zones = time_zones_for_number(phonenumbers.parse(e164))
        except phonenumbers.NumberParseException:
            zones = ()
        _ZONE_BY_PREFIX[key] = zones[0] if len(zones) == 1 and zones[0] != "Etc/Unknown" else None
    return _ZONE_BY_PREFIX[key]


_ZONE_BY_PREFIX: dict[str, str | None] = {}


def timezone_origin(contact: Contact, default: str) -> str:
    """Where a contact's send-time zone comes from, as shown by `customers show`."""
    if contact.timezone is None:
        return f"none: each campaign's zone applies (by default {default})"
    if contact.phone and timezone_for_phone(contact.phone) == contact.timezone:
        return f"{contact.timezone} (matches the phone number's area)"
    return f"{contact.timezone} (given)"


@lru_cache(maxsize=4096)
def _known_zone(name: str) -> bool:
    """Whether check_timezone accepts the name (a file has a few zones on many rows)."""
    try:
        check_timezone(name)
    except InputError:
        return False
    return True


def _attribute_value(raw: str) -> Any:
    if _INT.match(raw):
        return int(raw)
    if _DEC.match(raw):
        return float(raw)
    return raw


def _consent_flag(raw: str, column: str, line: int) -> str | None:
    value = raw.strip().lower()
    if not value:
        return None
    if value in YES:
        return "granted"
    if value == "confirmed":
        return "confirmed"
    if value in NO:
        return "revoked"
    raise RowError(line, column, f"'{raw}' is not yes/no (or granted, confirmed, revoked)")


@dataclass
class ContactData:
    """One validated contact row."""

    line: int
    external_id: str | None = None
    email: str | None = None
    phone: str | None = None
    name: str | None = None
    timezone: str | None = None
    timezone_from_phone: str | None = None  # used only when the contact has no zone of its own
    locale: str | None = None
    tags: list[str] | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    consent: dict[str, str] = field(default_factory=dict)  # channel -> granted|confirmed|revoked
    email_hash: str | None = None  # the addresses' keyed hashes, when the import's validator made them
    phone_hash: str | None = None

    def __reduce__(self) -> tuple[type[ContactData], tuple[Any, ...]]:
        # Rebuilt by the constructor from a tuple: an import's worker sends every row back, and
        # pickle's default for a dataclass (its __dict__ set afterwards) took the main process
        # 0.94 s per 100,000 rows to unpickle against 0.34 s this way.
        return (ContactData, _FIELD_VALUES(self))


_FIELD_VALUES = attrgetter(*(f.name for f in fields(ContactData)))


def parse_row(row: dict[str, str], line: int, settings: Settings) -> ContactData:
    """Validate and normalise one CSV row (or `contacts add` options); RowError on the first problem."""
    if "__error__" in row:
        raise RowError(line, None, row["__error__"])
    data = ContactData(line=line)
    if row.get("external_id"):
        if len(row["external_id"]) > 200:
            raise RowError(line, "external_id", "is longer than 200 characters")
        data.external_id = row["external_id"]
    if row.get("email"):
        try:
            data.email = normalise_email(row["email"])
        except InputError as exc:
            raise RowError(line, "email", str(exc)) from None
    if row.get("phone"):
        try:
            data.phone = normalise_phone(row["phone"], settings.default_region)
        except InputError as exc:
            raise RowError(line, "phone", str(exc)) from None
    if not (data.email or data.phone):
        raise RowError(line, "email", "a contact needs an email or a phone number")
    if row.get("name"):
        if len(row["name"]) > 200:
            raise RowError(line, "name", "is longer than 200 characters")
        data.name = row["name"]
    if row.get("timezone"):
        if not _known_zone(row["timezone"]):
            raise RowError(line, "timezone", f"'{row['timezone']}' is not a known IANA time zone (e.g. Europe/Paris)")
        data.timezone = row["timezone"]
    elif data.phone:
        data.timezone_from_phone = timezone_for_phone(data.phone)
    if row.get("locale"):
        if not _LOCALE.match(row["locale"]):
            raise RowError(line, "locale", f"'{row['locale']}' is not a locale like en or pt-BR")
        data.locale = row["locale"].replace("_", "-")
    if row.get("tags"):
        data.tags = sorted({t.strip() for t in re.split(r"[;,]", row["tags"]) if t.strip()})
    for channel in ("email", "sms"):
        flag = _consent_flag(row.get(f"consent_{channel}", ""), f"consent_{channel}", line)
        if flag:
            if flag != "revoked" and not (data.email if channel == "email" else data.phone):
                raise RowError(line, f"consent_{channel}", f"consent for {channel} but no {'email' if channel == 'email' else 'phone'}")
            data.consent[channel] = flag
    for key, value in row.items():
        if key not in KNOWN_COLUMNS and value != "":
            data.attributes[key] = _attribute_value(value)
    return data


@dataclass
class _ConsentPlan:
    channels: tuple[str, ...]
    source: str
    text: str | None


def import_contacts(
    session: Session, settings: Settings, path: Path, *, encoding: str = "utf-8",
    consent_channels: Iterable[str] = (), source: str | None = None, consent_text: str | None = None,
    skip_invalid: bool = False, progress: Progress | None = None, force: bool = False,
) -> ImportResult:
    """Stream a contacts CSV into the database in one transaction (the caller commits).

    Without `skip_invalid`, any bad row raises ImportFailed listing every bad row, and the
    caller's rollback leaves the database as it was.
    """
    channels = tuple(check_channel(c) for c in consent_channels)
    if channels and not (source and source.strip()):
        raise InputError("--source: say where the consent in this file came from (e.g. 'shop signup form')")
    plan = _ConsentPlan(channels, (source or f"import:{path.name}").strip(), consent_text)
    src = CsvSource(Path(path), encoding, required_any=("email", "phone"), progress=progress)
    rejections = Rejections(src, skip_invalid, force)  # force: replace an old rejects file
    hash_of = address_hasher(settings)

    def validate(row: dict[str, str], line: int) -> ContactData:
        # Pure (the row and the settings): a large file is validated, and its addresses'
        # HMACs made, in the import's worker process (csvimport._validated).
        data = parse_row(row, line, settings)
        data.email_hash, data.phone_hash = _hashes(hash_of, data.email, data.phone)
        return data

    with bulk_cache(session):
        result = run_import(
            src, rejections, validate,
            lambda chunk, result, reject: _write_chunk(session, settings, chunk, plan, result, reject, hash_of),
            keys=_match_keys, pure=True)
    stats.after_bulk_write(session, [Contact.__table__, ConsentEvent.__table__], result.created + result.updated)
    return result


def _match_keys(data: ContactData) -> set[str]:
    """What a row matches an existing contact by: two rows sharing one go to different chunks."""
    return {k for k in (
        f"x:{data.external_id}" if data.external_id else "",
        f"e:{data.email}" if data.email else "",
        f"p:{data.phone}" if data.phone and not data.email and not data.external_id else "",
    ) if k}


def _hashes(hash_of: Callable[[str, str], str], email: str | None, phone: str | None) -> tuple[str | None, str | None]:
    """(email_hash, phone_hash) of a contact's addresses."""
    return (hash_of("email", email) if email else None, hash_of("sms", phone) if phone else None)


def _write_chunk(
    session: Session, settings: Settings, chunk: list[ContactData], plan: _ConsentPlan,
    result: ImportResult, reject: Reject, hash_of: Callable[[str, str], str],
) -> None:
    ext_ids = [d.external_id for d in chunk if d.external_id]
    emails = [d.email for d in chunk if d.email]
    # Rows with neither external_id nor email are matched by phone, so they re-import cleanly.
    phones = [d.phone for d in chunk if d.phone and not d.external_id and not d.email]
    dialect = session.get_bind().dialect.name
    conditions = [
        *([among(dialect, Contact.external_id, ext_ids)] if ext_ids else []),
        *([among(dialect, Contact.email, emails)] if emails else []),
        *([among(dialect, Contact.phone, phones)] if phones else []),
    ]
    # The matched contacts as plain objects (`_apply` changes them like ORM ones; the changed
    # ones are written in one executemany below): loading ORM contacts was most of a re-import.
    existing = [SimpleNamespace(**row._mapping) for row in session.execute(
        select(*_LOADED).where(or_(*conditions)).order_by(Contact.id))] if conditions else []
    by_ext = {c.external_id: c for c in existing if c.external_id}
    by_email = {c.email: c for c in existing if c.email}
    by_phone: dict[str, SimpleNamespace] = {}
    for c in existing:
        if c.phone and c.erased_at is None:
            by_phone.setdefault(c.phone, c)
    now = utcnow()
    new_rows: list[dict[str, Any]] = []
    new_data: list[ContactData] = []
    targets: list[tuple[ContactData, Any]] = []
    changed: dict[int, Any] = {}
    for d in chunk:
        by_x = by_ext.get(d.external_id) if d.external_id else None
        by_e = by_email.get(d.email) if d.email else None
        if by_x is None and by_e is None and d.phone and not d.external_id and not d.email:
            by_x = by_phone.get(d.phone)
        if by_x is not None and by_e is not None and by_x.id != by_e.id:
            err = RowError(d.line, "email", f"{d.email} already belongs to another contact (external_id {by_e.external_id or by_e.id})")
        elif by_x is None and by_e is not None and d.external_id and by_e.external_id and by_e.external_id != d.external_id:
            err = RowError(d.line, "email", f"{d.email} already belongs to the contact with external_id {by_e.external_id}")
        else:
            err = None
        if err is not None:
            reject(err)
            continue
        target = by_x or by_e
        if target is None:
            new_rows.append({
                "external_id": d.external_id, "email": d.email, "phone": d.phone, "name": d.name,
                "timezone": d.timezone or d.timezone_from_phone, "locale": d.locale, "attributes": d.attributes, "tags": d.tags or _NO_TAGS,
                "created_at": now, "updated_at": now, "email_hash": d.email_hash, "phone_hash": d.phone_hash,
            })
            new_data.append(d)
        else:
            if _apply(settings, target, d, now, hash_of):
                result.updated += 1
                changed[target.id] = target
            else:
                result.unchanged += 1
            targets.append((d, target))
    if new_rows:
        # One driver executemany; on SQLite the new rows' ids and keys come back with it (the
        # rows above the largest id before), elsewhere they are looked up (RETURNING in
        # parameter order would be one statement per row); either way each new row's id is
        # found by the key it was matched on.
        keyed = insert_rows(session.connection(), Contact.__table__, new_rows, returning=("id", *_KEY_COLUMNS))
        ids = _new_ids(session, new_data) if keyed is None else _ids_by_key(new_data, keyed)
        result.created += len(ids)
        targets.extend((d, _Ref(i)) for d, i in zip(new_data, ids, strict=True))
    if changed:
        table = Contact.__table__
        session.execute(update(table).where(table.c.id == bindparam("_id")),
                        [{"_id": c.id, **{k: getattr(c, k) for k in _UPDATED}} for c in changed.values()])
    session.flush()
    events, requests = _record_import_consent(session, settings, targets, plan, now,
                                              new={ref.id for _d, ref in targets if isinstance(ref, _Ref)})
    result.consent_events += events
    result.consent_requests += requests
    session.expunge_all()  # keep memory flat on large files


_KEY_COLUMNS = ("external_id", "email", "phone")
# What an import reads of a matched contact, and what it writes back when the row changed it.
_LOADED = (Contact.id, Contact.external_id, Contact.email, Contact.phone, Contact.name, Contact.timezone,
           Contact.locale, Contact.attributes, Contact.tags, Contact.erased_at)
_UPDATED = (*FIELDS, "attributes", "tags", "email_hash", "phone_hash", "updated_at")
_NO_TAGS: list[str] = []  # one object for every new row without tags: insert_rows serialises it once


def _row_key(external_id: str | None, email: str | None, phone: str | None) -> tuple[str, str | None]:
    """What a new row is found by: its external_id, else its email, else its phone."""
    return ("x", external_id) if external_id else ("e", email) if email else ("p", phone)


def _ids_by_key(new: list[ContactData], returned: list[tuple[Any, ...]]) -> list[int]:
    """The ids of a chunk's new contacts, in order, from the (id, *_KEY_COLUMNS) rows the
    insert returned (in no particular order; a chunk holds each key once)."""
    by_key = {_row_key(x, e, p): cid for cid, x, e, p in returned}
    return [by_key[_row_key(d.external_id, d.email, d.phone)] for d in new]


def _new_ids(session: Session, new: list[ContactData]) -> list[int]:
    """The ids of a chunk's just-inserted contacts, in order.

    Each new row is found by the key it was matched on: its external_id, else its email
    (both unique), else its phone among contacts with neither (a phone-only row joins an
    existing such contact instead of being new, and a chunk holds each key once)."""
    by_key: dict[tuple[str, str | None], int] = {}
    ext = [d.external_id for d in new if d.external_id]
    emails = [d.email for d in new if d.email and not d.external_id]
    phones = [d.phone for d in new if d.phone and not d.email and not d.external_id]
    for i in range(0, len(ext), 900):
        by_key.update((("x", k), cid) for cid, k in session.execute(
            select(Contact.id, Contact.external_id).where(Contact.external_id.in_(ext[i:i + 900]))))
    for i in range(0, len(emails), 900):
        by_key.update((("e", k), cid) for cid, k in session.execute(
            select(Contact.id, Contact.email).where(Contact.email.in_(emails[i:i + 900]))))
    for i in range(0, len(phones), 900):
        by_key.update((("p", k), cid) for cid, k in session.execute(
            select(Contact.id, Contact.phone).where(Contact.phone.in_(phones[i:i + 900]), Contact.email.is_(None),
                                                    Contact.external_id.is_(None), Contact.erased_at.is_(None))))
    return [by_key[_row_key(d.external_id, d.email, d.phone)] for d in new]


@dataclass
class _Ref:
    id: int
    email: str | None = None
    phone: str | None = None


def _apply(settings: Settings, contact: Contact | SimpleNamespace, d: ContactData, now: Any,
           hash_of: Callable[[str, str], str] | None = None) -> bool:
    """Copy non-empty values onto an existing contact (an ORM one, or an import's loaded
    row); True when anything changed."""
    changed = False
    for name in FIELDS:
        value = getattr(d, name)
        if value is not None and getattr(contact, name) != value:
            setattr(contact, name, value)
            changed = True
    if contact.timezone is None and d.timezone_from_phone:
        contact.timezone = d.timezone_from_phone
        changed = True
    if d.attributes:
        merged = {**(contact.attributes or {}), **d.attributes}
        if merged != contact.attributes:
            contact.attributes = merged
            changed = True
    if d.tags is not None and sorted(contact.tags or []) != d.tags:
        contact.tags = d.tags
        changed = True
    if changed:
        contact.email_hash, contact.phone_hash = _hashes(hash_of or address_hasher(settings), contact.email, contact.phone)
        contact.updated_at = now
    return changed


def _record_import_consent(
    session: Session, settings: Settings, targets: list[tuple[ContactData, Any]], plan: _ConsentPlan, now: Any,
    new: Collection[int] = (),
) -> tuple[int, int]:
    """The file's consent, through the ledger: (events appended, double opt-in requests queued).
    `new`: contacts this chunk created, which have no ledger rows to look up."""
    wanted: list[tuple[int, str, str]] = []
    for d, contact in targets:
        for channel in plan.channels:
            has_address = d.email if channel == "email" else d.phone
            if has_address and channel not in d.consent:
                wanted.append((contact.id, channel, "granted"))
        for channel, action in d.consent.items():
            wanted.append((contact.id, channel, action))
    return ledger.record_import(session, settings, wanted, plan.source, plan.text, now, new=new)


def add_contact(session: Session, settings: Settings, values: dict[str, str]) -> Contact:
    """Create one contact from option values; refuses a duplicate external_id or email."""
    data = parse_row({k: v for k, v in values.items() if v is not None}, 0, settings) if values else None
    assert data is not None
    for column, value in (("external_id", data.external_id), ("email", data.email)):
        if value and session.scalar(select(Contact.id).where(getattr(Contact, column) == value)):
            raise ConflictError(f"a contact with {column} {value} already exists")
    now = utcnow()
    email_hash, phone_hash = _hashes(address_hasher(settings), data.email, data.phone)
    contact = Contact(
        external_id=data.external_id, email=data.email, phone=data.phone, name=data.name,
        timezone=data.timezone or data.timezone_from_phone, locale=data.locale, attributes=data.attributes,
        tags=data.tags or [], created_at=now, updated_at=now, email_hash=email_hash, phone_hash=phone_hash,
    )
    session.add(contact)
    session.flush()
    return contact


def find_contact(session: Session, ref: str, settings: Settings | None = None) -> Contact:
    """A contact by '#id', external_id, email, phone (E.164) or numeric id (campaigns.audience.contact_ref)."""
    from campaigns.audience.contact_ref import find_contact as by_ref

    return by_ref(session, ref)


def list_contacts(session: Session, search: str | None = None, limit: int = 50, offset: int = 0) -> tuple[int, list[Contact]]:
    """(total matching, one page of contacts ordered by id); `search` matches email, name or external_id."""
    q = select(Contact).where(Contact.erased_at.is_(None))
    if search:
        like = f"%{search.lower()}%"
        q = q.where(or_(func.lower(Contact.email).like(like), func.lower(Contact.name).like(like),
                        func.lower(Contact.external_id).like(like)))
    total = session.scalar(select(func.count()).select_from(q.subquery())) or 0
    return total, list(session.scalars(q.order_by(Contact.id).limit(limit).offset(offset)))


def erase_contact(session: Session, settings: Settings, contact: Contact, on_step: Callable[[str], None] | None = None) -> list[str]:
    """Remove personal data; keep keyed hashes on the suppression list so a re-import stays suppressed.
    Returns the filters that quoted the address and now say "(erased)" ('segment NAME', 'campaign NAME')."""
    if contact.erased_at is not None:
        raise ConflictError(f"contact #{contact.id} was already erased")
    # The address and phone as the person gave them, and as they appear inside URLs and
    # free-form data (a query string encodes them); `personal` adds the name.
    addresses = [v for v in (contact.email, contact.phone, contact.phone and contact.phone.lstrip("+")) if v]
    contact_name = contact.name
    personal = [*addresses, contact_name] if contact_name else list(addresses)
    addresses += [quote_plus(v) for v in addresses if quote_plus(v) != v]
    if contact.email:
        add_hash(session, "email", address_hash(settings, "email", contact.email), "erased")
    if contact.phone:
        add_hash(session, "sms", address_hash(settings, "sms", contact.phone), "erased")
    hashes = [h for h in (contact.email_hash, contact.phone_hash) if h]
    for column in ("external_id", "email", "phone", "name", "timezone", "locale", "email_hash", "phone_hash"):
        setattr(contact, column, None)
    contact.attributes, contact.tags = {}, []
    contact.erased_at = contact.updated_at = utcnow()
    for row in session.scalars(select(Suppression).where(Suppression.address_hash.in_(hashes))):
        row.note = _scrub(row.note, personal)
    for d in session.scalars(select(Delivery).where(Delivery.contact_id == contact.id)):
        d.address, d.error = None, _scrub(d.error, personal)
    for e in session.scalars(select(Event).where(Event.contact_id == contact.id)):
        # What stays is proof without the person: the event's type, time, campaign and how it came.
        e.ip = e.user_agent = None
        e.url = _scrub(e.url, addresses)
        e.data = {k: _scrub(v, personal) if isinstance(v, str) else v for k, v in (e.data or {}).items() if k in _KEPT_EVENT_KEYS}
    for entry in session.scalars(select(ConsentEvent).where(ConsentEvent.contact_id == contact.id)):
        # The wording and source stay as proof, without the person's address or phone quoted in
        # them, or the IP and user agent that came with them.
        entry.ip = entry.user_agent = None
        entry.consent_text = _scrub(entry.consent_text, addresses)
        entry.source = _scrub(entry.source, addresses) or entry.source
    for ce in session.scalars(select(CustomEvent).where(CustomEvent.contact_id == contact.id)):
        ce.properties = _scrub_data(ce.properties, addresses, contact_name)
        if _scrub(ce.idempotency_key, addresses) != ce.idempotency_key:  # a shop's id that names the person
            ce.idempotency_key = f"erased:{ce.id}"
    for en in session.scalars(select(DripEnrollment).where(DripEnrollment.contact_id == contact.id)):
        en.context = _scrub_data(en.context, addresses, contact_name)
    _scrub_links(session, addresses)
    changed = _scrub_filters(session, addresses)
    session.flush()
    return changed


def _scrub_filters(session: Session, addresses: list[str]) -> list[str]:
    """Segment and campaign filters written for this person (`email = "ann@example.com"`):
    the address becomes "(erased)", a string that still parses and matches nobody."""
    if not addresses:
        return []
    changed = []
    for segment in session.scalars(select(Segment).where(or_(*(Segment.definition.contains(a, autoescape=True) for a in addresses)))):
        segment.definition = _scrub(segment.definition, addresses) or segment.definition
        changed.append(f"segment {segment.name}")
    columns = (Campaign.segment_definition, Campaign.exit_when, Campaign.goal)
    hits = or_(*(col.contains(a, autoescape=True) for col in columns for a in addresses))
    for c in session.scalars(select(Campaign).where(hits)):
        c.segment_definition, c.exit_when, c.goal = (_scrub(c.segment_definition, addresses), _scrub(c.exit_when, addresses),
                                                      _scrub(c.goal, addresses))
        changed.append(f"campaign {c.name}")
    return changed


def _scrub_data(value: Any, addresses: list[str], name: str | None) -> Any:
    """JSON data with the address and phone replaced by '(erased)' inside every text, and a
    text that is the person's name as a whole replaced too (a name is too short to search for)."""
    if isinstance(value, str):
        return "(erased)" if name and value.strip().lower() == name.lower() else _scrub(value, addresses)
    if isinstance(value, dict):
        return {k: _scrub_data(v, addresses, name) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub_data(v, addresses, name) for v in value]
    return value


def _scrub_links(session: Session, addresses: list[str]) -> None:
    """Tracked links whose URL carries the person's address (a template that pre-fills a form
    with it): the URL is scrubbed, and its hash no longer matches any URL a message could
    register. A tracking process that read the URL before keeps it in memory until it restarts."""
    if not addresses:
        return
    hits = session.scalars(select(TrackedLink).where(or_(*(TrackedLink.url.contains(a, autoescape=True) for a in addresses))))
    for link in hits:
        link.url = _scrub(link.url, addresses) or ""
        link.url_hash = hashlib.sha256(f"erased\x00{link.id}\x00{link.url}".encode()).hexdigest()


# Event data that is not personal: where an event came from, and a bounce's status code.
_KEPT_EVENT_KEYS = ("source", "all_channels", "detail")


def _scrub(text: str | None, personal: list[str]) -> str | None:
    """`text` with every personal value in it replaced by '(erased)'."""
    if not text:
        return text
    for value in personal:
        text = re.sub(re.escape(value), "(erased)", text, flags=re.IGNORECASE)
    return text


def edit_contact(session: Session, settings: Settings, contact: Contact, values: dict[str, str],
                 unset_attributes: list[str] | None = None) -> bool:
    """Change a contact's fields and attributes with the import's checks; True when anything changed.

    An email or external_id that belongs to another contact is refused; `unset_attributes`
    removes attributes by name.
    """
    if contact.erased_at is not None:
        raise ConflictError(f"contact #{contact.id} was erased")
    merged = {"email": contact.email or "", "phone": contact.phone or "", **values}
    try:
        data = parse_row(merged, 0, settings)
    except RowError as exc:
        raise InputError(f"--{(exc.field or 'value').replace('_', '-')}: {exc.reason}") from None
    for column, value in (("external_id", data.external_id), ("email", data.email)):
        if value and session.scalar(select(Contact.id).where(getattr(Contact, column) == value, Contact.id != contact.id)):
            raise ConflictError(f"--{column.replace('_', '-')}: {value} belongs to another contact")
    changed = _apply(settings, contact, data, utcnow())
    gone = [k for k in unset_attributes or [] if k in (contact.attributes or {})]
    if gone:
        contact.attributes = {k: v for k, v in (contact.attributes or {}).items() if k not in gone}
        contact.updated_at = utcnow()
        changed = True
    session.flush()
    return changed


def retag_contact(contact: Contact, add: list[str], remove: list[str]) -> list[str]:
    """Add and remove tags (sorted, unique); returns the contact's tags."""
    tags = (set(contact.tags or []) | {t.strip() for t in add if t.strip()}) - {t.strip() for t in remove}
    if sorted(tags) != sorted(contact.tags or []):
        contact.tags, contact.updated_at = sorted(tags), utcnow()
    return list(contact.tags or [])


EXPORT_FIELDS = ("external_id", "email", "phone", "name", "timezone", "locale", "tags")


def export_contacts(session: Session, out: Any, tag: str | None = None) -> int:
    """Write contacts (erased ones never) as a CSV `contacts import` reads back; returns the count.

    Attributes become columns after the fields; consent is not exported (it is evidence
    kept in the ledger, and re-importing a file must not re-grant it).
    """
    q = select(Contact).where(Contact.erased_at.is_(None)).order_by(Contact.id)
    keys: set[str] = set()
    for attributes in session.scalars(select(Contact.attributes).where(Contact.erased_at.is_(None))):
        keys.update((attributes or {}).keys())
    attr_keys = sorted(keys - set(EXPORT_FIELDS))
    writer = csv_output.writer(out)  # formula cells get a leading ' (the import takes it off)
    writer.writerow([*EXPORT_FIELDS, *attr_keys])
    count = 0
    for c in session.scalars(q.execution_options(yield_per=1000)):
        if tag and tag not in (c.tags or []):
            continue
        attrs = c.attributes or {}
        writer.writerow([c.external_id or "", c.email or "", c.phone or "", c.name or "", c.timezone or "",
                         c.locale or "", ";".join(c.tags or []), *["" if attrs.get(k) is None else attrs[k] for k in attr_keys]])
        count += 1
    return count
