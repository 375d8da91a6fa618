"""Orders import: the facts RFM, lifecycle and attribution read. Idempotent by order_id.

Columns: order_id, a contact (external_id, email or contact), amount (e.g. 12.50),
currency (default from config), occurred_at (ISO date/time; naive values are read in
the configured time zone), optional items (a JSON list) and utm_campaign.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from campaigns.audience.contact_ref import resolve_refs
from campaigns.audience.contacts import normalise_email
from campaigns.audience.csvimport import CsvSource, ImportResult, Progress, Reject, Rejections, run_import
from campaigns.config import Settings
from campaigns.errors import InputError, RowError
from campaigns.store import stats
from campaigns.store.models import Contact, Purchase
from campaigns.timespec import parse_datetime, utcnow

_CURRENCY = re.compile(r"^[A-Z]{3}$")

# Called after each chunk with the ids of purchases it created or changed (attribution hooks in here).
PurchaseHook = Callable[[Session, list[int]], object]  # called per chunk; what it returns is ignored


@dataclass
class PurchaseData:
    """One validated order row."""

    line: int
    order_id: str
    contact_ref: tuple[str, str]  # (column, value)
    amount_cents: int
    currency: str
    occurred_at: datetime
    items: list[Any] | None
    utm_campaign: str | None


def parse_amount(raw: str) -> int:
    """'12.50' -> 1250 cents; refuses negatives, more than two decimals and non-numbers."""
    try:
        value = Decimal(raw.replace(",", "")) if raw else None
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite():
        raise InputError(f"'{raw}' is not an amount like 12.50")
    if value < 0:
        raise InputError(f"'{raw}' is negative (record refunds in your shop, not here)")
    cents = value * 100
    if cents != cents.to_integral_value():
        raise InputError(f"'{raw}' has more than two decimals")
    if cents > 10**15:
        raise InputError(f"'{raw}' is too large")
    return int(cents)


def parse_purchase_row(row: dict[str, str], line: int, settings: Settings) -> PurchaseData:
    """Validate one order row; RowError on the first problem."""
    if "__error__" in row:
        raise RowError(line, None, row["__error__"])
    order_id = row.get("order_id", "")
    if not order_id:
        raise RowError(line, "order_id", "is empty")
    if len(order_id) > 200:
        raise RowError(line, "order_id", "is longer than 200 characters")
    ref: tuple[str, str] | None = None
    for column in ("external_id", "email", "contact"):
        if row.get(column):
            ref = (column, row[column])
            break
    if ref is None:
        raise RowError(line, "external_id", "no contact: give external_id, email or contact")
    if ref[0] == "email":
        try:
            ref = ("email", normalise_email(ref[1]))
        except InputError as exc:
            raise RowError(line, "email", str(exc)) from None
    try:
        cents = parse_amount(row.get("amount", ""))
    except InputError as exc:
        raise RowError(line, "amount", str(exc)) from None
    currency = (row.get("currency") or settings.currency).upper()
    if not _CURRENCY.match(currency):
        raise RowError(line, "currency", f"'{row.get('currency')}' is not a 3-letter currency code")
    if not row.get("occurred_at"):
        raise RowError(line, "occurred_at", "is empty")
    try:
        occurred = parse_datetime(row["occurred_at"], settings.timezone, "occurred_at")
    except InputError as exc:
        raise RowError(line, "occurred_at", str(exc).split(": ", 1)[-1]) from None
    if occurred > utcnow():
        raise RowError(line, "occurred_at", f"'{row['occurred_at']}' is in the future")
    items = None
    if row.get("items"):
        try:
            items = json.loads(row["items"])
        except ValueError:
            raise RowError(line, "items", "is not valid JSON") from None
        if not isinstance(items, list):
            raise RowError(line, "items", "must be a JSON list")
    utm = row.get("utm_campaign") or None
    return PurchaseData(line, order_id, ref, cents, currency, occurred, items, utm)


def import_purchases(
    session: Session, settings: Settings, path: Path, *, encoding: str = "utf-8",
    skip_invalid: bool = False, progress: Progress | None = None, force: bool = False, on_chunk: PurchaseHook | None = None,
) -> ImportResult:
    """Stream an orders CSV in one transaction; bad rows fail the whole file unless skipped."""
    src = CsvSource(Path(path), encoding, required_any=("order_id",), progress=progress)
    rejections = Rejections(src, skip_invalid, force)  # force: replace an old rejects file
    seen: set[str] = set()

    def validate(row: dict[str, str], line: int) -> PurchaseData:
        data = parse_purchase_row(row, line, settings)
        if data.order_id in seen:
            raise RowError(line, "order_id", f"'{data.order_id}' appears twice in this file")
        seen.add(data.order_id)
        return data

    result = run_import(src, rejections, validate,
                        lambda chunk, result, reject: _write_chunk(session, chunk, result, reject, on_chunk))
    stats.after_bulk_write(session, [Purchase.__table__], result.created + result.updated)
    return result


def _resolve_contacts(session: Session, chunk: list[PurchaseData]) -> dict[tuple[str, str], int]:
    return resolve_refs(session, [d.contact_ref for d in chunk])


def _write_chunk(
    session: Session, chunk: list[PurchaseData], result: ImportResult,
    reject: Reject, on_chunk: PurchaseHook | None,
) -> None:
    contacts = _resolve_contacts(session, chunk)
    existing = {p.order_id: p for p in session.scalars(select(Purchase).where(Purchase.order_id.in_([d.order_id for d in chunk])))}
    new_rows: list[dict[str, Any]] = []
    touched: list[int] = []
    now = utcnow()
    for d in chunk:
        cid = contacts.get(d.contact_ref)
        if cid is None:
            reject(RowError(d.line, d.contact_ref[0], f"no contact with {d.contact_ref[0]} '{d.contact_ref[1]}'"))
            continue
        values = {
            "contact_id": cid, "amount_cents": d.amount_cents, "currency": d.currency,
            "occurred_at": d.occurred_at, "items": d.items, "utm_campaign": d.utm_campaign,
        }
        old = existing.get(d.order_id)
        if old is None:
            new_rows.append({"order_id": d.order_id, "source": "import", "created_at": now, **values})
        elif any(getattr(old, k) != v for k, v in values.items()):
            for k, v in values.items():
                setattr(old, k, v)
            result.updated += 1
            touched.append(old.id)
        else:
            result.unchanged += 1
    if new_rows:
        table = Purchase.__table__
        ids = session.connection().execute(
            insert(table).returning(table.c.id, sort_by_parameter_order=True), new_rows).scalars().all()
        result.created += len(ids)
        touched.extend(ids)
    session.flush()
    if on_chunk is not None and touched:
        on_chunk(session, touched)
    session.expunge_all()


def recent(session: Session, contact_id: int | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Orders, newest first (one contact's when `contact_id` is given), as rows for a table."""
    q = select(Purchase, Contact.email).join(Contact, Contact.id == Purchase.contact_id)
    if contact_id is not None:
        q = q.where(Purchase.contact_id == contact_id)
    return [{
        "order_id": p.order_id, "contact": email or f"#{p.contact_id}", "amount": p.amount_cents / 100,
        "currency": p.currency, "occurred_at": p.occurred_at, "utm_campaign": p.utm_campaign,
    } for p, email in session.execute(q.order_by(Purchase.occurred_at.desc()).limit(limit))]


def totals(session: Session, contact_id: int) -> tuple[int, int]:
    """(how many orders, their sum in cents) for one contact."""
    count, cents = session.execute(select(func.count(Purchase.id), func.coalesce(func.sum(Purchase.amount_cents), 0))
                                   .where(Purchase.contact_id == contact_id)).one()
    return int(count), int(cents)
