"""Contacts import rate: `campaigns contacts import` against a bare CSV -> INSERT loop (wall clock and CPU).

Both run in the same process on the same file into a fresh SQLite database. The bare
loop parses the CSV and inserts the raw columns with executemany in one transaction: no
validation, no upsert, no hashing. The ratio says what validation and idempotency cost.
"""

from __future__ import annotations

import csv
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert

from bench.bench_send import _vm_hwm_mb
from bench.datagen import write_contacts_csv
from campaigns.audience.contacts import import_contacts
from campaigns.config import load_settings
from campaigns.store import schema
from campaigns.store.db import make_engine, session_scope
from campaigns.store.models import Contact

SCALES = {"small": 10_000, "default": 100_000}


def _fresh(folder: Path, name: str):
    engine = make_engine(f"sqlite:///{folder / name}")
    schema.upgrade(engine)
    return engine


def run(scale: str = "default") -> dict[str, float]:
    """Import N contacts both ways; returns rates (rows/s), the ratio and peak memory."""
    n = SCALES[scale]
    folder = Path(tempfile.mkdtemp(prefix="bench-import-"))
    settings = load_settings(environ={"CAMPAIGNS_SECRET_KEY": "bench-secret-key-of-at-least-32-bytes"})
    path = write_contacts_csv(folder / "contacts.csv", n)

    bare_engine = _fresh(folder, "bare.db")
    t0, c0 = time.perf_counter(), time.process_time()
    with open(path, newline="", encoding="utf-8") as fh, bare_engine.begin() as conn:
        reader = csv.DictReader(fh)
        batch: list[dict[str, object]] = []
        for row in reader:
            batch.append({"external_id": row["external_id"], "email": row["email"], "phone": row["phone"],
                          "name": row["name"], "timezone": row["timezone"], "locale": row["locale"],
                          "attributes": {"city": row["city"], "age": row["age"]}, "tags": []})
            if len(batch) == 1000:
                conn.execute(insert(Contact), batch)
                batch = []
        if batch:
            conn.execute(insert(Contact), batch)
    bare, bare_cpu = time.perf_counter() - t0, time.process_time() - c0

    ours_engine = _fresh(folder, "ours.db")
    t0, c0 = time.perf_counter(), time.process_time()
    with session_scope(ours_engine) as session:
        result = import_contacts(session, settings, path, consent_channels=["email"], source="bench")
    ours, ours_cpu = time.perf_counter() - t0, time.process_time() - c0
    assert result.created == n, result

    t0 = time.perf_counter()
    with session_scope(ours_engine) as session:
        again = import_contacts(session, settings, path, consent_channels=["email"], source="bench")
    reimport = time.perf_counter() - t0
    assert again.unchanged == n and again.consent_events == 0, again

    peak_mb = _vm_hwm_mb()  # VmHWM: bench.run runs this bench first, so the peak is its own
    return {
        "rows": n,
        "ours_rows_per_s": round(n / ours),
        "reimport_rows_per_s": round(n / reimport),
        "bare_rows_per_s": round(n / bare),
        "ratio_ours_to_bare": round((n / ours) / (n / bare), 3),
        # The same ratio in CPU seconds (both loops run in this process, SQLite included): on a
        # machine shared with other work, wall-clock ratios swing with the load, CPU ones much less.
        "cpu_ratio_ours_to_bare": round(bare_cpu / ours_cpu, 3),
        "ours_seconds": round(ours, 2),
        "peak_rss_mb": round(peak_mb, 1),
    }


if __name__ == "__main__":
    figures = run(sys.argv[1] if len(sys.argv) > 1 else "default")
    for key, value in figures.items():
        print(f"{key}: {value}")
