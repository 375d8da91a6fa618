"""Contacts import rate: `campaigns contacts import` against a bare CSV -> INSERT loop (wall clock and CPU).

Both run from the same process on the same file into a fresh SQLite database. The bare
loop parses the CSV and inserts the raw columns with executemany in one transaction: no
validation, no upsert, no hashing. The ratio says what validation and idempotency cost.
Ours reads and validates a file this large in a forked worker while this process writes:
the CPU figures count both processes.
"""

from __future__ import annotations

import csv
import os
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


def _children_cpu() -> float:
    """CPU seconds of this process's finished children (the import's worker, once joined)."""
    t = os.times()
    return t.children_user + t.children_system


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
    t0, c0, k0 = time.perf_counter(), time.process_time(), _children_cpu()
    with session_scope(ours_engine) as session:
        result = import_contacts(session, settings, path, consent_channels=["email"], source="bench")
    ours, ours_cpu = time.perf_counter() - t0, time.process_time() - c0
    worker_cpu = _children_cpu() - k0  # the forked worker that reads and validates the file
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
        # CPU seconds (SQLite included): ours counts both processes, the main one writing and
        # the worker reading and validating, so this is the work done, not the time taken.
        # On a machine shared with other work, wall-clock ratios swing with the load.
        "cpu_ratio_ours_to_bare": round(bare_cpu / (ours_cpu + worker_cpu), 3),
        "ours_main_cpu_s": round(ours_cpu, 2),
        "ours_worker_cpu_s": round(worker_cpu, 2),
        "bare_cpu_s": round(bare_cpu, 2),
        "ours_seconds": round(ours, 2),
        "peak_rss_mb": round(peak_mb, 1),
    }


if __name__ == "__main__":
    figures = run(sys.argv[1] if len(sys.argv) > 1 else "default")
    for key, value in figures.items():
        print(f"{key}: {value}")
