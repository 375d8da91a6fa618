"""Branching journeys on SQLite: moving N contacts through a journey against a linear drip
writing the same number of outbox rows, in the same run.

Ours: a journey (send welcome -> branch on opened within 1d -> send newsletter either way)
for N contacts entering the segment: the first tick enrols them and writes the welcome
rows (`plan_triggered` + `journeys.advance`); a tick an hour later with every contact
waiting in the branch window (the per-minute cost of deciding early); the tick after the
window decides the branch and writes the second rows. Baseline: a drip of the same two
steps (`--step 0d:welcome --step 1d:newsletter`): one tick enrols and writes both rows.

    python -m bench.bench_journeys [small|default]
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from bench.bench_events import REPO_TEMPLATES, T0, _fresh
from campaigns.campaign_defs import CampaignSpec, create_campaign
from campaigns.config import load_settings
from campaigns.segments import create_segment
from campaigns.store.db import session_scope
from campaigns.store.models import Campaign, Delivery
from scheduler.journeys import advance
from scheduler.triggers import plan_triggered

SCALES = {"small": 2_000, "default": 10_000}
JOURNEY = """
[step.welcome]
kind = "send"
template = "welcome"
next = "opened_it"

[step.opened_it]
kind = "branch"
on = "opened"
within = "1d"
yes = "more"
no = "more"

[step.more]
kind = "send"
template = "newsletter"
"""


def _tick(engine, settings, now) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    with session_scope(engine) as s:
        c = s.scalar(select(Campaign))
        assert c is not None
        plan_triggered(s, settings, c, now)
        if c.journey:
            advance(s, settings, c, now)
    return time.perf_counter() - t0


def run(scale: str = "default") -> dict[str, float]:
    n = SCALES[scale]
    folder = Path(tempfile.mkdtemp(prefix="bench-journeys-"))
    shutil.copytree(REPO_TEMPLATES, folder / "templates")
    (folder / "config.toml").write_text('secret_key = "bench-secret-key-of-at-least-32-bytes"\n')
    settings = load_settings(folder / "config.toml", environ={})
    engines = {}
    for name, extra in (("drip", {"steps": ["0d:welcome", "1d:newsletter"]}), ("journey", {"journey": JOURNEY})):
        engine = engines[name] = _fresh(folder, f"{name}.db", n)
        with session_scope(engine) as s:
            create_segment(s, settings, "subscribers", "consent.email")
            create_campaign(s, settings, name, CampaignSpec(segment="subscribers", channel="email", quiet_hours="none",
                                                            cap="none", **extra),  # type: ignore[arg-type]
                            now=T0 - timedelta(minutes=1), activate=True)
    drip = _tick(engines["drip"], settings, T0)
    first = _tick(engines["journey"], settings, T0)
    waiting = _tick(engines["journey"], settings, T0 + timedelta(hours=1))
    decided = _tick(engines["journey"], settings, T0 + timedelta(days=1, minutes=1))
    rows = {}
    for name, engine in engines.items():
        with session_scope(engine) as s:
            rows[name] = s.scalar(select(func.count()).select_from(Delivery))
        engine.dispose()
    assert rows == {"drip": 2 * n, "journey": 2 * n}, rows
    shutil.rmtree(folder, ignore_errors=True)
    return {
        "contacts": n,
        "drip_tick_s": round(drip, 2),
        "journey_first_tick_s": round(first, 2),
        "journey_waiting_tick_s": round(waiting, 2),
        "journey_deciding_tick_s": round(decided, 2),
        "ratio_journey_to_drip": round((first + decided) / drip, 2),
        "journey_contacts_moved_per_s": round(2 * n / (first + decided)),
    }


if __name__ == "__main__":
    for key, value in run(sys.argv[1] if len(sys.argv) > 1 else "default").items():
        print(f"{key}: {value}")
