"""The CDNOW sample (tests/data/cdnow) loaded as contacts and orders: one order per line."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert

from campaigns.store.models import Contact, Purchase

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "cdnow" / "CDNOW_sample.txt"


def read_sample() -> list[tuple[str, datetime, int]]:
    """(customer, noon UTC of the purchase date, cents) for each line of the sample."""
    out = []
    for line in SAMPLE.read_text().splitlines():
        if line.strip():
            master_id, _sample_id, day, _cds, dollars = line.split()
            out.append((master_id, datetime.strptime(day, "%Y%m%d").replace(hour=12, tzinfo=UTC), round(float(dollars) * 100)))
    return out


def load_sample(app) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Insert the sample; returns contact id by CDNOW customer id."""
    rows = read_sample()
    customers = sorted({c for c, _, _ in rows})
    with app.session() as s:
        conn = s.connection()
        ids = conn.execute(insert(Contact).returning(Contact.id, sort_by_parameter_order=True),
                           [{"external_id": f"cdnow-{c}", "attributes": {}, "tags": []} for c in customers]).scalars().all()
        by_customer = dict(zip(customers, ids, strict=True))
        conn.execute(insert(Purchase), [
            {"order_id": f"cdnow-{n}", "contact_id": by_customer[c], "amount_cents": cents, "currency": "USD",
             "occurred_at": at, "source": "test"} for n, (c, at, cents) in enumerate(rows)])
    return by_customer
