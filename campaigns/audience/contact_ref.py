"""One way to say which contact: the resolver the CLI, the purchases CSV import and the
purchase webhook share, so `"contact": "a@b.com"` means the same everywhere.

A reference is a (column, value) pair. The columns `external_id`, `email` and `phone` match
that field only. The column `contact` takes any of them, tried in this order: `#id`, an
external_id, an email (has an @, compared lower-cased), a phone (starts with +, E.164), a
bare number as the contact id. External ids come first because a shop's own ids may look
like anything, including a number.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.errors import NotFoundError
from campaigns.store.models import Contact

Ref = tuple[str, str]
COLUMNS = ("external_id", "email", "phone", "contact")
_BATCH = 500  # values per IN (...) list: well under every database's parameter limit


def _id_of(value: str) -> int | None:
    """'#12' or '12' -> 12; None for anything else, including digits that are not ASCII
    ('²'.isdigit() is True) and numbers past a 64-bit id (the database refuses them)."""
    digits = value[1:] if value.startswith("#") else value
    return int(digits) if digits.isascii() and digits.isdigit() and len(digits) <= 18 else None


def _lookup(session: Session, column: str, values: set[str]) -> dict[str, int]:
    """{value: contact id} for the contacts whose `column` is one of `values` (lowest id wins)."""
    col = {"external_id": Contact.external_id, "email": Contact.email, "phone": Contact.phone}[column]
    found: dict[str, int] = {}
    ordered = sorted(values)
    for i in range(0, len(ordered), _BATCH):
        for cid, value in session.execute(select(Contact.id, col).where(col.in_(ordered[i:i + _BATCH])).order_by(Contact.id)):
            if value is not None:
                found.setdefault(value, cid)
    return found


def _existing_ids(session: Session, ids: set[int]) -> set[int]:
    ordered = sorted(ids)
    return {cid for i in range(0, len(ordered), _BATCH)
            for cid in session.scalars(select(Contact.id).where(Contact.id.in_(ordered[i:i + _BATCH])))}


def resolve_refs(session: Session, refs: Iterable[Ref]) -> dict[Ref, int]:
    """{reference: contact id} for every reference that names a contact (a few queries per batch)."""
    wanted = {(column, value.strip()): (column, value) for column, value in refs}
    unknown = {c for c, _ in wanted.values()} - set(COLUMNS)
    if unknown:
        raise ValueError(f"not a contact reference column: {sorted(unknown)}")
    asked: dict[str, set[str]] = {"external_id": set(), "email": set(), "phone": set()}
    ids: set[int] = set()
    for column, value in wanted:
        if column == "contact":
            asked["external_id"].add(value)
            if "@" in value:
                asked["email"].add(value.lower())
            if value.startswith("+"):
                asked["phone"].add(value)
            if (n := _id_of(value)) is not None:
                ids.add(n)
        else:
            asked[column].add(value.lower() if column == "email" else value)
    by = {column: _lookup(session, column, values) if values else {} for column, values in asked.items()}
    real_ids = _existing_ids(session, ids) if ids else set()
    found: dict[Ref, int] = {}
    for (column, value), original in wanted.items():
        if column == "contact":
            n = _id_of(value)
            candidates = [
                n if value.startswith("#") and n in real_ids else None,
                None if value.startswith("#") else by["external_id"].get(value),
                by["email"].get(value.lower()) if "@" in value else None,
                by["phone"].get(value) if value.startswith("+") else None,
                n if n in real_ids else None,
            ]
            cid = next((c for c in candidates if c is not None), None)
        else:
            cid = by[column].get(value.lower() if column == "email" else value)
        if cid is not None:
            found[original] = cid
    return found


def resolve_ref(session: Session, column: str, value: str) -> int | None:
    """The contact id one reference names, or None."""
    return resolve_refs(session, [(column, value)]).get((column, value))


def find_contact(session: Session, ref: str) -> Contact:
    """The contact `ref` names (see the module docstring), or NotFoundError in one line."""
    cid = resolve_ref(session, "contact", ref)
    contact = session.get(Contact, cid) if cid is not None else None
    if contact is None:
        raise NotFoundError(f"no contact '{ref.strip()}' (give an email, external_id, +phone or #id)")
    return contact
