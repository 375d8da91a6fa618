"""Building a campaign report on a large history, against the bare counting queries.

Setup (not timed): a SQLite file with N contacts, one campaign with N deliveries (a 10%
holdout), about five events per delivery (delivered, human and machine opens, clicks,
a few unsubscribes), and orders attributed to a share of the recipients.
Timed: ours  - `campaign_report` (funnel, rates, lift with its interval, breakdowns by
               variant, lifecycle and RFM segment, the timeline);
       bare  - two hand-written GROUP BY queries that give only the funnel's raw counts
               (deliveries by state, distinct deliveries per event type).
Best of 3 each, alternating, in a fresh child process (`--child`) so that its peak resident
set (VmHWM) is the report's own, not the setup's or an earlier benchmark's in `bench.run`.

    python -m bench.bench_report [small|default]
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, select, text

from bench.bench_send import _vm_hwm_mb

SCALES = {"small": (20_000, 100_000), "default": (200_000, 1_000_000)}
BARE = ["SELECT state, COUNT(*) FROM delivery WHERE campaign_id = :c GROUP BY state",
        "SELECT type, COUNT(DISTINCT delivery_id) FROM event WHERE campaign_id = :c AND is_machine = 0 GROUP BY type"]


def _setup(folder: Path, n: int, events: int):
    from bench.datagen import populate
    from campaigns.campaign_defs import CampaignSpec, create_campaign
    from campaigns.config import load_settings
    from campaigns.context import App
    from campaigns.segments import create_segment
    from campaigns.store import schema
    from campaigns.store.models import (
        Attribution,
        CampaignRun,
        Contact,
        Delivery,
        Event,
        Purchase,
    )

    config = folder / "config.toml"
    root = Path(__file__).resolve().parents[1]
    config.write_text(f'secret_key = "bench-secret-key-of-at-least-32-bytes"\ntemplates_dir = "{root / "templates"}"\n'
                      f'[database]\nurl = "sqlite:///{folder / "bench.db"}"\n', encoding="utf-8")
    app = App(load_settings(config, environ={}))
    schema.upgrade(app.engine)
    populate(app.engine, app.settings, contacts=n, orders=0, email_consent=1.0, sms_consent=0.0)
    rng = random.Random(3)
    sent_at = datetime(2026, 6, 1, 9, tzinfo=UTC)
    with app.session() as s:
        create_segment(s, app.settings, "everyone", 'email contains "@"')
        c = create_campaign(s, app.settings, "big", CampaignSpec(segment="everyone", channel="email", template="welcome",
                                                                 holdout="10%", quiet_hours="none", cap="none"))
        run = CampaignRun(campaign_id=c.id, scheduled_for=sent_at, status="done", started_at=sent_at, finished_at=sent_at)
        s.add(run)
        s.flush()
        cid, rid = c.id, run.id
        contact_ids = list(s.scalars(select(Contact.id)))
    stages, rfm = ["new", "active", "at_risk", "lapsed"], ["champions", "loyal", "at_risk", "hibernating", "lost"]
    with app.engine.begin() as conn:
        rows = []
        for i, contact in enumerate(contact_ids):
            held = i % 10 == 0
            rows.append({"run_id": rid, "campaign_id": cid, "contact_id": contact, "channel": "email", "step": 0,
                         "template_name": "welcome", "is_holdout": held, "state": "held_out" if held else "sent",
                         "attempts": 0 if held else 1, "due_at": sent_at, "sent_at": None if held else sent_at,
                         "lifecycle_stage": rng.choice(stages), "rfm_segment": rng.choice(rfm),
                         "created_at": sent_at, "updated_at": sent_at})
        ids = conn.execute(insert(Delivery).returning(Delivery.id, Delivery.contact_id, Delivery.is_holdout,
                                                      sort_by_parameter_order=True), rows).all()
        treated = [(d, ct) for d, ct, held in ids if not held]
        batch, made = [], 0
        kinds = ["delivered", "open", "open", "click", "open"]
        while made < events:
            d, ct = treated[made % len(treated)]
            kind = kinds[(made // len(treated)) % len(kinds)]
            at = sent_at + timedelta(minutes=rng.uniform(1, 60 * 24 * 5))
            batch.append({"delivery_id": d, "campaign_id": cid, "contact_id": ct, "type": kind, "occurred_at": at,
                          "is_machine": kind == "open" and rng.random() < 0.2, "dedup_key": f"b{made}", "data": {}})
            made += 1
            if len(batch) >= 20_000:
                conn.execute(insert(Event), batch)
                batch = []
        if batch:
            conn.execute(insert(Event), batch)
        buyers = rng.sample(ids, len(ids) // 20)
        purchases = [{"order_id": f"R{i}", "contact_id": ct, "amount_cents": rng.randint(1_000, 20_000), "currency": "USD",
                      "occurred_at": sent_at + timedelta(days=rng.uniform(0, 6)), "source": "bench", "created_at": sent_at}
                     for i, (_d, ct, _h) in enumerate(buyers)]
        pids = conn.execute(insert(Purchase).returning(Purchase.id, sort_by_parameter_order=True), purchases).scalars().all()
        conn.execute(insert(Attribution), [{"purchase_id": p, "delivery_id": d, "campaign_id": cid, "contact_id": ct,
                                            "is_holdout": held, "rule": "holdout" if held else "click",
                                            "credited_cents": row["amount_cents"], "created_at": sent_at}
                                           for p, (d, ct, held), row in zip(pids, buyers, purchases, strict=True)])
    return app, cid


def _child(config: Path, cid: int) -> dict[str, object]:
    """The timed part, in this (child) process: the report and the bare counts, alternated 3 times."""
    from campaigns.config import load_settings
    from campaigns.context import App
    from campaigns.reports.campaign import campaign_report
    from campaigns.store.models import Campaign

    app = App(load_settings(config, environ={}))
    ours, bare = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        with app.session(write=False) as s:
            report = campaign_report(s, app.settings, s.get(Campaign, cid))
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with app.engine.connect() as conn:
            for q in BARE:
                conn.execute(text(q), {"c": cid}).all()
        bare.append(time.perf_counter() - t0)
    app.engine.dispose()
    return {"ours": ours, "bare": bare, "sent": report["funnel"]["sent"], "opened": report["funnel"]["opened"],
            "peak_rss_mb": round(_vm_hwm_mb())}


def run(scale: str = "default") -> dict[str, object]:
    n, events = SCALES[scale]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        app, cid = _setup(Path(tmp), n, events)
        setup_s = time.perf_counter() - t0
        app.engine.dispose()
        out = subprocess.run([sys.executable, "-m", "bench.bench_report", "--child", str(Path(tmp) / "config.toml"),
                              str(cid)], cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True,
                             check=True)
        timed = json.loads(out.stdout.strip().splitlines()[-1])
    ours, bare = timed["ours"], timed["bare"]
    assert timed["sent"] == n - n // 10 and timed["opened"] > 0, timed
    return {"deliveries": n, "events": events, "setup_seconds": round(setup_s, 1), "ours_seconds": round(min(ours), 2),
            "bare_seconds": round(min(bare), 2), "ratio_bare_to_ours": round(min(bare) / min(ours), 3),
            "setup_peak_rss_mb": round(_vm_hwm_mb()), "report_peak_rss_mb": timed["peak_rss_mb"]}


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(_child(Path(sys.argv[2]), int(sys.argv[3]))))
        sys.exit(0)
    for key, value in run(sys.argv[1] if len(sys.argv) > 1 else "default").items():
        print(f"{key}: {value}")
