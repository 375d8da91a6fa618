"""Planning and end-to-end sending, against a bare aiosmtplib loop to the same sink.

Setup (not timed): a SQLite shop of N consenting contacts and a one-off email campaign.
Timed, each in a fresh child process so its peak memory is its own:
  plan   - `plan_firing` for the whole segment (consent, caps, quiet hours, holdout rows);
  ours   - the dispatcher sends every planned row: claim, consent re-check, render with
           tracked links and the open pixel, SMTP through the connection pool, record;
  bare   - aiosmtplib alone sends N pre-built messages of the same size over the same
           number of connections, nothing else: the ceiling for this machine and sink.
The sink is aiosmtpd in a separate process (bench.sink), the same for both. A smaller run
sends the same campaign with DKIM signing on and off, to show what signing costs.

    python -m bench.bench_send [small|default|large]
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCALES = {"small": [5_000], "default": [50_000], "large": [50_000, 200_000]}
PLAN_ONLY = {"small": [], "default": [200_000], "large": []}  # planning alone, at a size too slow to also send
# DKIM on against off, same data size, same sink, same run (smaller: dkimpy signs in pure Python).
DKIM = {"small": [1_000], "default": [5_000], "large": [5_000]}
POOL = 8
ROOT = Path(__file__).resolve().parents[1]
DKIM_KEY = ROOT / "tests" / "support" / "dkim" / "test_a.pem"  # a 2048-bit RSA test key


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(folder: Path, port: int, dkim: bool = False) -> Path:
    path = folder / "config.toml"
    signing = (f'dkim_domain = "example.com"\ndkim_selector = "bench"\ndkim_private_key_file = "{DKIM_KEY}"\n'
               if dkim else "")
    path.write_text(f'secret_key = "bench-secret-key-of-at-least-32-bytes"\ntemplates_dir = "{ROOT / "templates"}"\n'
                    f'[database]\nurl = "sqlite:///{folder / "bench.db"}"\n'
                    f'[sending]\ntransport = "smtp"\nbatch_size = 500\nconcurrency = {POOL * 2}\n'
                    f'[smtp]\nhost = "127.0.0.1"\nport = {port}\npool_size = {POOL}\n{signing}'
                    '[policy]\nquiet_hours_email = ""\nfrequency_cap = "none"\n', encoding="utf-8")
    return path


def setup(folder: Path, n: int, port: int, dkim: bool = False) -> Path:
    from bench.datagen import populate
    from campaigns import schema
    from campaigns.campaign_defs import CampaignSpec, create_campaign
    from campaigns.config import load_settings
    from campaigns.context import App
    from campaigns.segments import create_segment

    config = _config(folder, port, dkim)
    app = App(load_settings(config, environ={}))
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
    from campaigns.models import Campaign
    from campaigns.timespec import utcnow

    app = App(load_settings(Path(config), environ={}))
    t0 = time.perf_counter()
    cpu0 = time.process_time()
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
    else:
        count = asyncio.run(_bare(n, port))
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "count": count, "peak_rss_mb": _vm_hwm_mb(), "cpu_seconds": time.process_time() - cpu0}


def _vm_hwm_mb() -> float:
    """This process's peak resident set (ru_maxrss would carry the parent's over exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _bare(n: int, port: int) -> int:
    import aiosmtplib

    body = ("x" * 76 + "\r\n") * 60  # about the size of the rendered welcome message
    sent = 0

    async def lane(k: int) -> None:
        nonlocal sent
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port)
        await smtp.connect()
        for i in range(k, n, POOL):
            data = f"From: news@example.com\r\nTo: c{i}@example.com\r\nSubject: hi\r\nMessage-ID: <{i}@b>\r\n\r\n{body}"
            await smtp.sendmail("news@example.com", [f"c{i}@example.com"], data.encode())
            sent += 1
        await smtp.quit()

    # The same number of connections as our pool, one lane each, messages pre-built.
    await asyncio.gather(*(lane(k) for k in range(POOL)))
    return sent


def _measure(kind: str, config: Path, n: int, port: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-m", "bench.bench_send", "--child", kind, str(config), str(n), str(port)],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(scale: str = "default") -> dict[str, object]:
    figures: dict[str, object] = {}
    for n in SCALES[scale]:
        port = _port()
        sink = subprocess.Popen([sys.executable, "-m", "bench.sink", str(port)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
        try:
            with tempfile.TemporaryDirectory(dir=os.environ.get("CAMPAIGNS_BENCH_DIR")) as tmp:
                config = setup(Path(tmp), n, port)
                plan = _measure("plan", config, n, port)
                ours = _measure("ours", config, n, port)
                bare = _measure("bare", config, n, port)
        finally:
            sink.terminate()
            received = int((sink.communicate(timeout=30)[0] or "0").split()[-1])
        assert ours["count"] == bare["count"] == n and received == 2 * n, (ours, bare, received)
        figures.update({
            f"plan_{n}_seconds": round(plan["seconds"], 2), f"plan_{n}_rows_per_s": round(n / plan["seconds"]),
            f"plan_{n}_peak_rss_mb": round(plan["peak_rss_mb"]),
            f"send_{n}_ours_msgs_per_s": round(n / ours["seconds"]), f"send_{n}_bare_msgs_per_s": round(n / bare["seconds"]),
            f"send_{n}_ratio_ours_to_bare": round(bare["seconds"] / ours["seconds"], 3),
            f"send_{n}_ours_peak_rss_mb": round(ours["peak_rss_mb"]), f"send_{n}_bare_peak_rss_mb": round(bare["peak_rss_mb"]),
            # CPU per message in the sending process, and how busy it was: where the ratio comes from.
            f"send_{n}_ours_cpu_ms_per_msg": round(ours["cpu_seconds"] * 1000 / n, 3),
            f"send_{n}_bare_cpu_ms_per_msg": round(bare["cpu_seconds"] * 1000 / n, 3),
            f"send_{n}_ours_busy_share": round(ours["cpu_seconds"] / ours["seconds"], 2),
        })
    for n in DKIM[scale]:
        port = _port()
        sink = subprocess.Popen([sys.executable, "-m", "bench.sink", str(port)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
        try:
            runs = {}
            for dkim in (False, True):
                with tempfile.TemporaryDirectory(dir=os.environ.get("CAMPAIGNS_BENCH_DIR")) as tmp:
                    config = setup(Path(tmp), n, port, dkim=dkim)
                    _measure("plan", config, n, port)
                    runs[dkim] = _measure("ours", config, n, port)
        finally:
            sink.terminate()
            sink.communicate(timeout=30)
        assert runs[False]["count"] == runs[True]["count"] == n, runs
        figures.update({
            f"send_{n}_plain_msgs_per_s": round(n / runs[False]["seconds"]),
            f"send_{n}_dkim_msgs_per_s": round(n / runs[True]["seconds"]),
            f"send_{n}_ratio_dkim_to_plain": round(runs[False]["seconds"] / runs[True]["seconds"], 3),
        })
    for n in PLAN_ONLY[scale]:
        with tempfile.TemporaryDirectory(dir=os.environ.get("CAMPAIGNS_BENCH_DIR")) as tmp:
            config = setup(Path(tmp), n, _port())
            plan = _measure("plan", config, n, 0)
        figures.update({f"plan_{n}_seconds": round(plan["seconds"], 2), f"plan_{n}_rows_per_s": round(n / plan["seconds"]),
                        f"plan_{n}_peak_rss_mb": round(plan["peak_rss_mb"])})
    return figures


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(_child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))))
    else:
        for key, value in run(sys.argv[1] if len(sys.argv) > 1 else "default").items():
            print(f"{key}: {value}")
