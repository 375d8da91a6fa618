"""Planning and end-to-end sending, against a bare aiosmtplib loop to the same sink.

Setup (not timed): a SQLite shop of N consenting contacts and a one-off email campaign.
Timed, each in a fresh child process so its peak memory is its own:
  plan   - `plan_firing` for the whole segment (consent, caps, quiet hours, holdout rows);
  bare_plan - the floor for planning: sqlite3 alone reads the contacts' ids in one SELECT and
           writes the same outbox rows with one executemany and a commit, from a copy of the
           same unplanned database (no consent, segment or suppression check, no profiles);
  ours   - the dispatcher sends every planned row: claim, consent re-check, render with
           tracked links and the open pixel, SMTP through the connection pool, record;
  bare   - aiosmtplib alone sends N pre-built messages of the same size over the same
           number of connections, nothing else: the ceiling for this machine and sink;
  cli    - the whole `campaigns send bench --now` process (planning and sending) from the
           unplanned database, its peak resident set the process's own (VmHWM).
The sink is aiosmtpd in a separate process (bench.sink), the same for both; ours and bare are
alternated SEND_ROUNDS times from copies of the same planned database, each figure taken over
all rounds and the ratio of each round listed beside it. A smaller run
sends the same campaign with DKIM off, RSA-SHA256 on, and RSA plus Ed25519 on (each a whole
`ours` process, planning excluded), to show what signing costs; `dkim` runs only that.

    python -m bench.bench_send [small|default|large|dkim|sendnow]
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.sink import Sink, free_port

SCALES = {"small": [5_000], "default": [50_000], "large": [50_000, 200_000], "dkim": [], "sendnow": []}
# planning alone, at a size too slow to also send
PLAN_ONLY = {"small": [], "default": [200_000], "large": [], "dkim": [], "sendnow": []}
# `campaigns send --now` alone (planning and sending 200,000 in one process): its peak memory
SEND_NOW_ONLY = {"small": [], "default": [], "large": [200_000], "dkim": [], "sendnow": [200_000]}
# ours and the bare loop, alternated this many times (each figure over all rounds)
SEND_ROUNDS = 2
# DKIM on against off, same data size, same sink, same run.
DKIM = {"small": [1_000], "default": [5_000], "large": [5_000], "dkim": [5_000], "sendnow": []}
POOL = 8
BARE_PLAN_DB = "bare_plan.db"  # beside the config: the bare planning floor's copy of the unplanned database
ROOT = Path(__file__).resolve().parents[1]
DKIM_KEY = ROOT / "tests" / "support" / "dkim" / "test_a.pem"  # a 2048-bit RSA test key
DKIM_ED25519_KEY = ROOT / "tests" / "support" / "dkim" / "test_ed25519.pem"


def _config(folder: Path, port: int, dkim: bool | str = False) -> Path:
    path = folder / "config.toml"
    signing = (f'dkim_domain = "example.com"\ndkim_selector = "bench"\ndkim_private_key_file = "{DKIM_KEY}"\n'
               if dkim else "")
    if dkim == "ed25519":  # RSA and a second, Ed25519 signature
        signing += f'dkim_ed25519_key_file = "{DKIM_ED25519_KEY}"\n'
    # No secret_key: the default setup, `secret_key_file = "secret.key"` beside the config, as
    # `campaigns init` makes it (setup writes the file).
    path.write_text(f'templates_dir = "{ROOT / "templates"}"\n'
                    f'[database]\nurl = "sqlite:///{folder / "bench.db"}"\n'
                    f'[sending]\ntransport = "smtp"\nbatch_size = 500\nconcurrency = {POOL * 2}\n'
                    f'[smtp]\nhost = "127.0.0.1"\nport = {port}\npool_size = {POOL}\n{signing}'
                    '[policy]\nquiet_hours_email = ""\nfrequency_cap = "none"\n', encoding="utf-8")
    return path


def setup(folder: Path, n: int, port: int, dkim: bool | str = False) -> Path:
    from bench.datagen import populate
    from campaigns.campaign_defs import CampaignSpec, create_campaign
    from campaigns.config import load_settings
    from campaigns.context import App
    from campaigns.segments import create_segment
    from campaigns.store import schema

    config = _config(folder, port, dkim)
    app = App(load_settings(config, environ={}))
    app.settings.ensure_secret_key_file()
    schema.upgrade(app.engine)
    populate(app.engine, app.settings, contacts=n, orders=0, email_consent=1.0, sms_consent=0.0)
    with app.session() as s:
        create_segment(s, app.settings, "everyone", 'email contains "@"')
        create_campaign(s, app.settings, "bench", CampaignSpec(segment="everyone", channel="email", template="welcome",
                                                               quiet_hours="none", cap="none"))
    app.engine.dispose()
    return config


def _child(kind: str, config: str, n: int, port: int) -> dict[str, float]:
    """One measurement, in this (child) process."""
    from campaigns.config import load_settings
    from campaigns.context import App
    from campaigns.store.models import Campaign
    from campaigns.timespec import utcnow

    app = App(load_settings(Path(config), environ={}))
    t0 = time.perf_counter()
    cpu0 = _cpu()
    if kind == "plan":
        from sqlalchemy import select

        from scheduler.planner import plan_firing

        now = utcnow()
        with app.session() as s:
            result = plan_firing(s, app.settings, s.scalar(select(Campaign)), now.replace(microsecond=0), now)
        count = getattr(result, "queued", None) or n
    elif kind == "ours":
        from scheduler.dispatcher import Dispatcher

        async def go() -> int:
            d = Dispatcher(app, worker_name="bench")
            try:
                return (await d.dispatch_once()).counts.get("sent", 0)
            finally:
                await d.close()

        count = asyncio.run(go())
    elif kind == "cli":
        import contextlib
        import io

        from campaigns.cli import main

        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            main(["--config", config, "send", "bench", "--now", "--json"])
        count = json.loads(out.getvalue())["sent"].get("sent", 0)
    elif kind == "bare_plan":
        count = _bare_plan(Path(config).parent / BARE_PLAN_DB)
    else:
        count = asyncio.run(_bare(n, port, Path(config)))
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "count": count, "peak_rss_mb": _vm_hwm_mb(), "cpu_seconds": _cpu() - cpu0}


def _cpu() -> float:
    """CPU seconds of this process and of its children that ended (the DKIM signing process)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _vm_hwm_mb() -> float:
    """This process's peak resident set (ru_maxrss would carry the parent's over exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def product_message(config: Path) -> tuple[str, bytes]:
    """(envelope sender, bytes) of one message of the bench's campaign as the product renders
    it (the first planned delivery; nothing is written: the session is rolled back)."""
    from sqlalchemy import select

    from campaigns.config import load_settings
    from campaigns.context import App
    from campaigns.messages.rendering import RenderedEmail, render_delivery
    from campaigns.messages.templates_store import load_template
    from campaigns.store.models import Campaign, Contact, Delivery

    app = App(load_settings(config, environ={}))
    with app.session() as s:
        row = s.scalars(select(Delivery).order_by(Delivery.id).limit(1)).one()
        campaign = s.get(Campaign, row.campaign_id)
        assert campaign is not None
        message = render_delivery(s, app.settings, load_template(app.settings, campaign.template_name or ""),
                                  contact=s.get(Contact, row.contact_id), delivery_id=row.id, campaign=campaign)
        s.rollback()
    app.engine.dispose()
    assert isinstance(message, RenderedEmail)
    return message.mail_from, message.data


def _bare_plan(db: Path) -> int:
    """The rows planning writes for the bench's campaign, by sqlite3 alone: one SELECT of the
    ids, one executemany into the outbox (its table and indexes as ours), one commit."""
    from datetime import UTC, datetime

    now = datetime.now(UTC).replace(tzinfo=None).isoformat(" ")
    con = sqlite3.connect(db, isolation_level=None)
    ids = [cid for (cid,) in con.execute("SELECT id FROM contact ORDER BY id")]
    con.execute("BEGIN")
    run_id = con.execute("INSERT INTO campaign_run (campaign_id, scheduled_for, status, started_at, counts) "
                         "VALUES (1, ?, 'planning', ?, '{}')", (now, now)).lastrowid
    con.executemany("INSERT INTO delivery (run_id, campaign_id, contact_id, channel, step, occurrence, variant, "
                    "template_name, is_holdout, ab_remainder, state, attempts, due_at, lifecycle_stage, rfm_segment, "
                    "created_at, updated_at) VALUES (?, 1, ?, 'email', 0, 0, NULL, 'welcome', 0, 0, 'queued', 0, ?, "
                    "'prospect', NULL, ?, ?)", ((run_id, cid, now, now, now) for cid in ids))
    con.execute("COMMIT")
    con.close()
    return len(ids)


async def _bare(n: int, port: int, config: Path) -> int:
    import aiosmtplib

    # Copies of one message the product rendered (DKIM as the bench's config says), only the
    # envelope recipient changing: the sink reads the same bytes per message as from ours.
    mail_from, data = product_message(config)
    sent = 0

    async def lane(k: int) -> None:
        nonlocal sent
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port)
        await smtp.connect()
        for i in range(k, n, POOL):
            await smtp.sendmail(mail_from, [f"c{i}@example.com"], data)
            sent += 1
        await smtp.quit()

    # The same number of connections as our pool, one lane each, messages pre-built.
    await asyncio.gather(*(lane(k) for k in range(POOL)))
    return sent


def _measure(kind: str, config: Path, n: int, port: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-m", "bench.bench_send", "--child", kind, str(config), str(n), str(port)],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


DKIM_ROUNDS = 3
_DKIM_VARIANTS: dict[str, bool | str] = {"plain": False, "dkim": True, "dkim_ed25519": "ed25519"}


def _copy_db(src: Path, dst: Path) -> None:
    """A consistent copy of a SQLite database in WAL mode (the backup API reads through the WAL)."""
    for leftover in (dst, dst.with_name(dst.name + "-wal"), dst.with_name(dst.name + "-shm")):
        leftover.unlink(missing_ok=True)
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    a.close()
    b.close()


def _dkim_comparison(n: int) -> dict[str, object]:
    """DKIM off, RSA, RSA+Ed25519: each planned once, then sent DKIM_ROUNDS times in turn
    (plain, rsa, ed25519, plain, ...) from a copy of its planned database, to one sink. On a
    shared machine the load drifts over minutes; alternating keeps each ratio within a round."""
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in _DKIM_VARIANTS}
    with Sink(ROOT) as sink, tempfile.TemporaryDirectory(dir=os.environ.get("CAMPAIGNS_BENCH_DIR")) as tmp:
        port = sink.port
        configs = {}
        for name, dkim in _DKIM_VARIANTS.items():
            folder = Path(tmp) / name
            folder.mkdir()
            configs[name] = setup(folder, n, port, dkim=dkim)
            _measure("plan", configs[name], n, port)
            _copy_db(folder / "bench.db", folder / "planned.db")
        for _ in range(DKIM_ROUNDS):
            for name, config in configs.items():
                _copy_db(config.parent / "planned.db", config.parent / "bench.db")
                runs[name].append(_measure("ours", config, n, port))
    assert all(r["count"] == n for rs in runs.values() for r in rs), runs
    figures: dict[str, object] = {}
    for name, rs in runs.items():
        figures[f"send_{n}_{name}_msgs_per_s"] = round(n * len(rs) / sum(r["seconds"] for r in rs))
        # CPU per message of the sending process and its DKIM signing process.
        figures[f"send_{n}_{name}_cpu_ms_per_msg"] = round(sum(r["cpu_seconds"] for r in rs) * 1000 / (n * len(rs)), 3)
    for name in ("dkim", "dkim_ed25519"):
        ratios = sorted(p["seconds"] / s["seconds"] for p, s in zip(runs["plain"], runs[name], strict=True))
        figures[f"send_{n}_ratio_{name}_to_plain"] = round(sum(r["seconds"] for r in runs["plain"]) / sum(r["seconds"] for r in runs[name]), 3)
        figures[f"send_{n}_ratio_{name}_to_plain_per_round"] = ", ".join(f"{r:.2f}" for r in ratios)
    return figures


def _plan_figures(n: int, config: Path, unplanned: Path, plan: dict[str, float]) -> dict[str, object]:
    """Planning's figures, beside the bare floor measured just after it from a copy of the same
    unplanned database."""
    _copy_db(unplanned, config.parent / BARE_PLAN_DB)
    bare = _measure("bare_plan", config, n, 0)
    assert bare["count"] == n, bare
    return {f"plan_{n}_seconds": round(plan["seconds"], 2), f"plan_{n}_rows_per_s": round(n / plan["seconds"]),
            f"plan_{n}_peak_rss_mb": round(plan["peak_rss_mb"]), f"plan_{n}_bare_seconds": round(bare["seconds"], 2),
            f"plan_{n}_ratio_bare_to_ours": round(bare["seconds"] / plan["seconds"], 3)}


def _send_now_figures(n: int, cli: dict[str, float]) -> dict[str, object]:
    return {f"send_now_{n}_seconds": round(cli["seconds"], 1), f"send_now_{n}_msgs_per_s": round(n / cli["seconds"]),
            f"send_now_{n}_peak_rss_mb": round(cli["peak_rss_mb"])}


def run(scale: str = "default") -> dict[str, object]:
    figures: dict[str, object] = {}
    for n in SCALES[scale]:
        with Sink(ROOT) as sink, tempfile.TemporaryDirectory(dir=os.environ.get("CAMPAIGNS_BENCH_DIR")) as tmp:
            port = sink.port
            config = setup(Path(tmp), n, port)
            _copy_db(Path(tmp) / "bench.db", Path(tmp) / "unplanned.db")
            plan = _plan_figures(n, config, Path(tmp) / "unplanned.db", _measure("plan", config, n, port))
            _copy_db(Path(tmp) / "bench.db", Path(tmp) / "planned.db")
            ours, bare = [], []
            for _ in range(SEND_ROUNDS):  # alternated: the host's drift over minutes falls on both sides
                _copy_db(Path(tmp) / "planned.db", Path(tmp) / "bench.db")
                ours.append(_measure("ours", config, n, port))
                bare.append(_measure("bare", config, n, port))
            _copy_db(Path(tmp) / "unplanned.db", Path(tmp) / "bench.db")
            cli = _measure("cli", config, n, port)
        received = sink.received
        assert all(r["count"] == n for r in [*ours, *bare, cli]) and received == (2 * SEND_ROUNDS + 1) * n, \
            (ours, bare, cli, received)
        ours_s, bare_s = sum(r["seconds"] for r in ours), sum(r["seconds"] for r in bare)
        figures.update({
            **plan,
            f"send_{n}_ours_msgs_per_s": round(n * SEND_ROUNDS / ours_s), f"send_{n}_bare_msgs_per_s": round(n * SEND_ROUNDS / bare_s),
            f"send_{n}_ratio_ours_to_bare": round(bare_s / ours_s, 3),
            f"send_{n}_ratio_ours_to_bare_per_round": ", ".join(f"{b['seconds'] / o['seconds']:.3f}" for o, b in zip(ours, bare, strict=True)),
            f"send_{n}_ours_peak_rss_mb": round(max(r["peak_rss_mb"] for r in ours)),
            f"send_{n}_bare_peak_rss_mb": round(max(r["peak_rss_mb"] for r in bare)),
            # CPU per message in the sending process, and how busy it was: where the ratio comes from.
            f"send_{n}_ours_cpu_ms_per_msg": round(sum(r["cpu_seconds"] for r in ours) * 1000 / (n * SEND_ROUNDS), 3),
            f"send_{n}_bare_cpu_ms_per_msg": round(sum(r["cpu_seconds"] for r in bare) * 1000 / (n * SEND_ROUNDS), 3),
            f"send_{n}_ours_busy_share": round(sum(r["cpu_seconds"] for r in ours) / ours_s, 2),
            **_send_now_figures(n, cli),
        })
    for n in DKIM[scale]:
        figures.update(_dkim_comparison(n))
    for n in SEND_NOW_ONLY[scale]:
        with Sink(ROOT) as sink, tempfile.TemporaryDirectory(dir=os.environ.get("CAMPAIGNS_BENCH_DIR")) as tmp:
            cli = _measure("cli", setup(Path(tmp), n, sink.port), n, sink.port)
        assert cli["count"] == n, cli
        figures.update(_send_now_figures(n, cli))
    for n in PLAN_ONLY[scale]:
        with tempfile.TemporaryDirectory(dir=os.environ.get("CAMPAIGNS_BENCH_DIR")) as tmp:
            config = setup(Path(tmp), n, free_port())
            _copy_db(Path(tmp) / "bench.db", Path(tmp) / "unplanned.db")
            figures.update(_plan_figures(n, config, Path(tmp) / "unplanned.db", _measure("plan", config, n, 0)))
    return figures


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(_child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))))
    else:
        for key, value in run(sys.argv[1] if len(sys.argv) > 1 else "default").items():
            print(f"{key}: {value}")
