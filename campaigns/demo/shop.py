"""A believable shop as CSV files, imported through the product's own import paths."""

from __future__ import annotations

import csv
import random
from datetime import datetime, timedelta
from pathlib import Path

ZONES = ["America/New_York", "America/Chicago", "America/Los_Angeles", "Europe/London", "Europe/Paris",
         "Europe/Berlin", "Asia/Tokyo", "Australia/Sydney"]
FIRST = ["Ann", "Ben", "Chloe", "Dev", "Emma", "Finn", "Grace", "Hugo", "Isla", "Jack", "Kira", "Leo", "Mia", "Noah",
         "Olga", "Pablo", "Quinn", "Rosa", "Sam", "Tara", "Uma", "Vic", "Wen", "Yara", "Zoe"]
LAST = ["Adams", "Brown", "Chen", "Dubois", "Evans", "Fischer", "Garcia", "Hughes", "Ito", "Jones", "Kim", "Lopez",
        "Martin", "Novak", "Okafor", "Patel", "Rossi", "Silva", "Tanaka", "Weber"]
CITIES = ["Paris", "Berlin", "London", "New York", "Chicago", "Tokyo", "Sydney", "Austin"]


def write_shop(folder: Path, contacts: int, seed: int, history_end: datetime) -> dict[str, Path]:
    """contacts.csv (with consent columns), orders.csv (a year of repeat behaviour), coupons.csv."""
    rng = random.Random(seed)
    paths = {"contacts": folder / "contacts.csv", "orders": folder / "orders.csv", "coupons": folder / "coupons.csv"}
    orders = []
    with open(paths["contacts"], "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["external_id", "email", "phone", "name", "timezone", "city", "tags", "consent_email", "consent_sms"])
        for i in range(contacts):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            has_phone = rng.random() < 0.55
            phone = f"+1{rng.choice(['415', '212', '312', '646', '206'])}555{i % 10000:04d}" if has_phone else ""
            w.writerow([f"C{i:05d}", f"{first.lower()}.{last.lower()}{i}@example.com", phone, f"{first} {last}",
                        rng.choice(ZONES), rng.choice(CITIES), "newsletter" if rng.random() < 0.4 else "",
                        "yes" if rng.random() < 0.78 else "", "yes" if has_phone and rng.random() < 0.6 else ""])
            orders += _orders(rng, i, history_end)
    with open(paths["orders"], "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["order_id", "external_id", "amount", "occurred_at"])
        for n, (i, amount, at) in enumerate(sorted(orders, key=lambda o: o[2])):
            w.writerow([f"H{n:06d}", f"C{i:05d}", f"{amount:.2f}", at.isoformat(timespec="seconds")])
    with open(paths["coupons"], "w", encoding="utf-8") as fh:
        fh.write("\n".join(f"WB-{rng.randrange(16**6):06X}{n:04d}" for n in range(contacts)) + "\n")
    return paths


def _orders(rng: random.Random, i: int, end: datetime) -> list[tuple[int, float, datetime]]:
    """Some never buy; buyers follow a habit (interval) and may have drifted away (churn)."""
    kind = rng.random()
    if kind < 0.3:
        return []  # prospects
    if kind < 0.4:  # new customers: a first order in the last four weeks
        return [(i, round(rng.lognormvariate(3.7, 0.5), 2), end - timedelta(days=rng.uniform(1, 28)))]
    interval = rng.uniform(20, 90)
    stopped = end - timedelta(days=rng.uniform(0, 300) if rng.random() < 0.45 else rng.uniform(0, 15))
    at = end - timedelta(days=rng.uniform(200, 365))
    out = []
    while at < stopped:
        out.append((i, round(rng.lognormvariate(3.9 if kind > 0.85 else 3.5, 0.5), 2), at))
        at += timedelta(days=max(3.0, rng.gauss(interval, interval / 3)))
    return out or [(i, round(rng.lognormvariate(3.5, 0.5), 2), stopped)]
