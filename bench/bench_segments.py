"""Counting a segment that uses RFM and a purchase window, against one hand-written query.

Question: how many (not erased) contacts have R >= 4, M >= 4 and at least two orders in
the last 90 days? Ours: `count_segment` over the filter
`rfm.r >= 4 and rfm.m >= 4 and purchases.count(last=90d) >= 2`. Baseline: the same
question as one hand-written SQL query (the same quintile rule, docs/segments.md). Both run
on the same SQLite file in the same process, alternating, best of N; both must give the same count.

The database is generated once per scale with bench.datagen and kept in
$CAMPAIGNS_BENCH_DIR (default /tmp/campaigns-bench) for later runs.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from bench.datagen import populate
from campaigns.config import load_settings
from campaigns.segments import count_segment
from campaigns.store import schema
from campaigns.store.db import make_engine, session_scope
from campaigns.store.models import Segment

SCALES = {"small": (20_000, 100_000), "medium": (200_000, 1_000_000), "default": (1_000_000, 5_000_000)}
FILTER = "rfm.r >= 4 and rfm.m >= 4 and purchases.count(last=90d) >= 2"
NOW = datetime(2026, 6, 1, tzinfo=UTC)  # datagen's purchases end here: results do not drift with the clock
# The quintile rule of docs/segments.md, written out by hand: ROW_NUMBER over the value,
# ties split by the other two figures and then contact id (more orders, more spent, more
# recent rank higher), so every score holds a fifth of the buyers. (This query used RANK()
# over the value alone, the rule before equal-size quintiles: ties then shared the lowest
# rank and it counted 2 fewer members than the product at the medium scale.)
HANDMADE = """
WITH b AS (
  SELECT contact_id, MAX(occurred_at) AS last_at, COUNT(*) AS orders, SUM(amount_cents) AS total,
         SUM(CASE WHEN occurred_at > :since THEN 1 ELSE 0 END) AS recent
  FROM purchase WHERE occurred_at <= :at GROUP BY contact_id
), s AS (
  SELECT contact_id, recent,
         1 + 5 * (ROW_NUMBER() OVER (ORDER BY last_at, orders, total, contact_id) - 1) / COUNT(*) OVER () AS r,
         1 + 5 * (ROW_NUMBER() OVER (ORDER BY total, orders, last_at, contact_id) - 1) / COUNT(*) OVER () AS m
  FROM b
)
SELECT COUNT(*) FROM contact c JOIN s ON s.contact_id = c.id
WHERE c.erased_at IS NULL AND s.r >= 4 AND s.m >= 4 AND s.recent >= 2
"""


def _database(scale: str):  # type: ignore[no-untyped-def]
    contacts, orders = SCALES[scale]
    folder = Path(os.environ.get("CAMPAIGNS_BENCH_DIR", "/tmp/campaigns-bench"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"segments-{scale}.db"
    settings = load_settings(environ={"CAMPAIGNS_SECRET_KEY": "bench-secret-key-of-at-least-32-bytes"})
    if not path.exists():
        partial = path.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        engine = make_engine(f"sqlite:///{partial}")
        schema.upgrade(engine)
        populate(engine, settings, contacts=contacts, orders=orders, now=NOW)
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
        engine.dispose()
        partial.rename(path)
    return make_engine(f"sqlite:///{path}"), settings


def run(scale: str = "default", repeats: int = 3) -> dict[str, float]:
    """Best-of-N seconds for ours and the hand-made query, their ratio and the count."""
    engine, settings = _database(scale)
    at = NOW
    with session_scope(engine) as session:
        session.query(Segment).filter(Segment.name == "bench").delete()
        session.add(Segment(name="bench", definition=FILTER))
    ours_times, hand_times = [], []
    ours_count = hand_count = -1
    for _ in range(repeats):
        t0 = time.perf_counter()
        with session_scope(engine) as session:
            ours_count = count_segment(session, "bench", settings, at)
        ours_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with engine.connect() as conn:
            # SQLite holds our timestamps as this text, so the parameters use the same shape
            stamp = "%Y-%m-%d %H:%M:%S.%f"
            params = {"since": (at - timedelta(days=90)).strftime(stamp), "at": at.strftime(stamp)}
            hand_count = conn.execute(text(HANDMADE), params).scalar_one()
        hand_times.append(time.perf_counter() - t0)
    if ours_count != hand_count:
        raise AssertionError(f"ours counted {ours_count}, the hand-made query {hand_count}")
    ours, hand = min(ours_times), min(hand_times)
    engine.dispose()
    return {
        "contacts": SCALES[scale][0], "purchases": SCALES[scale][1], "members": ours_count,
        "ours_seconds": round(ours, 3), "handmade_seconds": round(hand, 3), "ratio_ours_to_handmade": round(ours / hand, 3),
    }


if __name__ == "__main__":
    figures = run(sys.argv[1] if len(sys.argv) > 1 else "default")
    for key, value in figures.items():
        print(f"{key}: {value}")
