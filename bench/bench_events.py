"""Custom events: ingesting a JSON-lines file and evaluating an event-triggered journey on
SQLite, against a bare insert loop of the same rows.

Ours: `events import` (every row validated, contacts resolved, idempotency keys checked,
one transaction), then one tick of a campaign triggered by the event (`plan_triggered`:
rows above the watermark -> enrolments -> one outbox row per event), then a second import
of the same file (nothing new) and a second tick (nothing new). Baseline: the same events
as dicts with their contact ids already known, inserted by `executemany` in one
transaction. The issue asks for 100,000 events a minute ingested and evaluated.

    python -m bench.bench_events [small|default]
"""

from __future__ import annotations

import json
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, insert, select

from campaigns.audience.custom_events import import_events
from campaigns.campaign_defs import CampaignSpec, create_campaign
from campaigns.config import load_settings
from campaigns.segments import create_segment
from campaigns.store import schema
from campaigns.store.db import make_engine, session_scope
from campaigns.store.models import Campaign, ConsentEvent, Contact, CustomEvent, Delivery
from scheduler.triggers import plan_triggered

SCALES = {"small": (2_000, 20_000), "default": (10_000, 100_000)}  # (contacts, events)
REPO_TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
T0 = datetime(2026, 6, 1, tzinfo=UTC)


def _fresh(folder: Path, name: str, contacts: int):  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{folder / name}")
    schema.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(insert(Contact), [{"email": f"c{i}@example.com", "external_id": f"C{i}", "attributes": {}, "tags": [],
                                        "created_at": T0, "updated_at": T0} for i in range(contacts)])
        conn.execute(insert(ConsentEvent), [{"contact_id": i + 1, "channel": "email", "action": "granted", "source": "bench",
                                             "occurred_at": T0, "recorded_at": T0} for i in range(contacts)])
    return engine


def run(scale: str = "default") -> dict[str, float]:
    """Events per second and per minute both ways, the ratio, the evaluation time, peak memory."""
    contacts, n = SCALES[scale]
    folder = Path(tempfile.mkdtemp(prefix="bench-events-"))
    shutil.copytree(REPO_TEMPLATES, folder / "templates")
    (folder / "config.toml").write_text('secret_key = "bench-secret-key-of-at-least-32-bytes"\n')
    settings = load_settings(folder / "config.toml", environ={})
    stamps = [T0 + timedelta(seconds=i * 30 * 86400 // n) for i in range(n)]
    path = folder / "events.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for i, at in enumerate(stamps):
            fh.write(json.dumps({"external_id": f"C{i % contacts}", "name": "cart_abandoned", "id": f"e{i}",
                                 "occurred_at": at.isoformat(), "properties": {"sku": f"S{i % 97}", "total": i % 500}}) + "\n")

    bare_engine = _fresh(folder, "bare.db", contacts)
    rows = [{"contact_id": i % contacts + 1, "name": "cart_abandoned", "properties": {"sku": f"S{i % 97}", "total": i % 500},
             "occurred_at": at, "idempotency_key": f"id:e{i}", "source": "bench", "recorded_at": T0}
            for i, at in enumerate(stamps)]
    t0 = time.perf_counter()
    with bare_engine.begin() as conn:
        for i in range(0, n, 1000):
            conn.execute(insert(CustomEvent), rows[i:i + 1000])
    bare = time.perf_counter() - t0

    engine = _fresh(folder, "ours.db", contacts)
    with session_scope(engine) as s:
        create_segment(s, settings, "subscribers", "consent.email")
        create_campaign(s, settings, "cart", CampaignSpec(segment="subscribers", channel="email", trigger="event:cart_abandoned",
                                                          steps=["1h:welcome"], quiet_hours="none", cap="none"),
                        now=T0 - timedelta(days=1), activate=True)
        s.execute(Campaign.__table__.update().values(created_at=T0 - timedelta(days=1), activated_at=T0 - timedelta(days=1)))
    t0 = time.perf_counter()
    with session_scope(engine) as s:
        result = import_events(s, settings, path)
    ingest = time.perf_counter() - t0
    assert result.created == n, result
    now = T0 + timedelta(days=31)
    t0 = time.perf_counter()
    with session_scope(engine) as s:
        campaign = s.scalar(select(Campaign))
        assert campaign is not None
        plan_triggered(s, settings, campaign, now)
    evaluate = time.perf_counter() - t0
    t0 = time.perf_counter()
    with session_scope(engine) as s:
        again = import_events(s, settings, path)
        campaign = s.scalar(select(Campaign))
        assert campaign is not None
        plan_triggered(s, settings, campaign, now)
    replay = time.perf_counter() - t0
    with session_scope(engine) as s:
        planned = s.scalar(select(func.count()).select_from(Delivery))
    assert again.created == 0 and planned == n, (again, planned)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    shutil.rmtree(folder, ignore_errors=True)
    return {
        "events": n,
        "ours_ingest_events_per_s": round(n / ingest),
        "ours_evaluate_events_per_s": round(n / evaluate),
        "ours_ingest_and_evaluate_events_per_min": round(n / (ingest + evaluate) * 60),
        "bare_insert_events_per_s": round(n / bare),
        "ratio_ours_ingest_to_bare": round(bare / ingest, 3),
        "ratio_ours_ingest_and_evaluate_to_bare": round(bare / (ingest + evaluate), 3),
        "replay_seconds_file_and_tick": round(replay, 2),
        "peak_rss_mb": round(peak_mb, 1),
    }


if __name__ == "__main__":
    for key, value in run(sys.argv[1] if len(sys.argv) > 1 else "default").items():
        print(f"{key}: {value}")
