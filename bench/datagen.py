"""Seeded synthetic shop data for benchmarks and the demo: contacts, consent, purchases.

`populate` bulk-inserts straight through SQLAlchemy Core (it is a generator, not an
import: it skips validation so it can make a million contacts quickly);
`write_contacts_csv` writes a CSV for the import path, optionally with invalid rows.
"""

from __future__ import annotations

import csv
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert

from campaigns.config import Settings
from campaigns.signing import address_hash
from campaigns.store.models import ConsentEvent, Contact, Purchase

ZONES = ["America/New_York", "America/Chicago", "America/Los_Angeles", "Europe/London",
         "Europe/Paris", "Europe/Berlin", "Asia/Shanghai", "Asia/Tokyo", "Australia/Sydney"]
CITIES = ["Shanghai", "Hangzhou", "Paris", "Berlin", "London", "New York", "Chicago", "Tokyo", "Sydney"]
FIRST = ["Ann", "Bob", "Chen", "Dana", "Eli", "Fay", "Gus", "Hana", "Ivan", "Jia", "Kai", "Lea", "Mo", "Nia"]
LAST = ["Lee", "Smith", "Wang", "Garcia", "Muller", "Dubois", "Sato", "Kim", "Brown", "Rossi"]
AREAS = ["415", "212", "312", "646", "617", "206", "303", "512"]
BATCH = 10_000


def _contact(i: int, rng: random.Random) -> dict[str, Any]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    return {
        "external_id": f"C{i:07d}",
        "email": f"{first.lower()}.{last.lower()}.{i}@example.com",
        "phone": f"+1{rng.choice(AREAS)}555{i % 10000:04d}",
        "name": f"{first} {last}",
        "timezone": rng.choice(ZONES),
        "locale": rng.choice(["en", "en", "fr", "de", "zh", "ja"]),
        "attributes": {"city": rng.choice(CITIES), "age": rng.randint(18, 80)},
        "tags": rng.sample(["vip", "newsletter", "wholesale", "app"], k=rng.randint(0, 2)),
    }


def populate(
    engine: Engine, settings: Settings, *, contacts: int, orders: int, seed: int = 1,
    email_consent: float = 0.8, sms_consent: float = 0.5, now: datetime | None = None,
) -> dict[str, int]:
    """Insert `contacts` contacts, their consent and `orders` purchases over the past year."""
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    counts = {"contacts": 0, "consent_events": 0, "orders": 0}
    with engine.begin() as conn:
        first_id = None
        for start in range(0, contacts, BATCH):
            rows = []
            for i in range(start, min(start + BATCH, contacts)):
                row = _contact(i, rng)
                created = now - timedelta(days=rng.uniform(0, 730))
                row.update(
                    email_hash=address_hash(settings, "email", row["email"]),
                    phone_hash=address_hash(settings, "sms", row["phone"]),
                    created_at=created, updated_at=created,
                )
                rows.append(row)
            ids = conn.execute(insert(Contact).returning(Contact.id, sort_by_parameter_order=True), rows).scalars().all()
            first_id = ids[0] if first_id is None else first_id
            consent = []
            for cid, row in zip(ids, rows, strict=True):
                for channel, share in (("email", email_consent), ("sms", sms_consent)):
                    if rng.random() < share:
                        consent.append({
                            "contact_id": cid, "channel": channel, "action": "granted", "source": "datagen",
                            "occurred_at": row["created_at"], "recorded_at": row["created_at"],
                        })
            if consent:
                conn.execute(insert(ConsentEvent), consent)
            counts["contacts"] += len(ids)
            counts["consent_events"] += len(consent)
        if first_id is None or orders <= 0:
            return counts
        # About 60% of contacts ever buy; how often follows a heavy tail, like real shops.
        buyers = [first_id + i for i in range(contacts) if rng.random() < 0.6] or [first_id]
        weights = [rng.paretovariate(1.5) for _ in buyers]
        chosen = rng.choices(buyers, weights=weights, k=orders)
        batch: list[dict[str, Any]] = []
        for n, cid in enumerate(chosen):
            batch.append({
                "order_id": f"O{seed}-{n:08d}", "contact_id": cid,
                "amount_cents": int(rng.lognormvariate(8.3, 0.6)), "currency": settings.currency,
                "occurred_at": now - timedelta(days=rng.uniform(0.01, 365)), "source": "datagen",
                "created_at": now,
            })
            if len(batch) >= BATCH:
                conn.execute(insert(Purchase), batch)
                counts["orders"] += len(batch)
                batch = []
        if batch:
            conn.execute(insert(Purchase), batch)
            counts["orders"] += len(batch)
    return counts


def write_contacts_csv(path: Path, n: int, seed: int = 1, invalid_every: int = 0) -> Path:
    """A contacts CSV of `n` rows; every `invalid_every`-th row gets a bad email, phone or zone."""
    rng = random.Random(seed)
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["external_id", "email", "phone", "name", "timezone", "locale", "city", "age"])
        for i in range(n):
            row = _contact(i, rng)
            email, phone, zone = row["email"], row["phone"], row["timezone"]
            if invalid_every and i % invalid_every == invalid_every - 1:
                kind = (i // invalid_every) % 3
                email = "not-an-email" if kind == 0 else email
                phone = "12" if kind == 1 else phone
                zone = "Mars/Olympus_Mons" if kind == 2 else zone
            writer.writerow([row["external_id"], email, phone, row["name"], zone, row["locale"],
                             row["attributes"]["city"], row["attributes"]["age"]])
    return path
