"""Click-tracking throughput: our tracking app against a bare ASGI app giving the same redirect.

Setup (not timed): a SQLite shop of 2,000 contacts; the welcome campaign is sent through
the file transport, and the signed click URLs are read back out of the written messages.
Timed: N GET requests over those URLs at a fixed concurrency, from this process, to
  ours - `campaigns track serve` in its own process (signature check, link and delivery
         look-up, the click recorded as an event, 302 to the original URL);
  bare - uvicorn serving a five-line ASGI app that answers every GET with the same 302.
Both servers run the same uvicorn, one worker, on loopback; the load generator is the
same httpx client for both. That client uses more CPU per request (about 2.5 ms) than
either server, and on 2 cores it shares the machine with them, so the wall-clock ratio is
partly the client's; each server's own CPU per request (from /proc) is reported beside it
and compares the apps alone.

    python -m bench.bench_tracking [small|default]
"""

from __future__ import annotations

import asyncio
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from email import message_from_bytes, policy
from pathlib import Path

import httpx

from bench.bench_send import ROOT
from bench.sink import free_port

SCALES = {"small": 2_000, "default": 10_000}
CONCURRENCY = 32
BARE = '''
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 302,
                "headers": [(b"location", b"https://shop.example.com/new-arrivals?utm_source=campaigns")]})
    await send({"type": "http.response.body", "body": b""})
'''


def _setup(folder: Path, port: int) -> tuple[Path, list[str]]:
    from bench.datagen import populate
    from campaigns.campaign_defs import CampaignSpec, create_campaign
    from campaigns.config import load_settings
    from campaigns.context import App
    from campaigns.segments import create_segment
    from campaigns.store import schema
    from scheduler.dispatcher import Dispatcher

    config = folder / "config.toml"
    config.write_text(f'secret_key = "bench-secret-key-of-at-least-32-bytes"\ntemplates_dir = "{ROOT / "templates"}"\n'
                      f'[database]\nurl = "sqlite:///{folder / "bench.db"}"\n'
                      f'[sending]\ntransport = "file"\noutbox_dir = "{folder / "outbox"}"\n'
                      f'[tracking]\nhost = "127.0.0.1"\nport = {port}\npublic_url = "http://127.0.0.1:{port}"\n'
                      '[policy]\nquiet_hours_email = ""\nfrequency_cap = "none"\n', encoding="utf-8")
    app = App(load_settings(config, environ={}))
    schema.upgrade(app.engine)
    populate(app.engine, app.settings, contacts=2_000, orders=0, email_consent=1.0, sms_consent=0.0)
    with app.session() as s:
        create_segment(s, app.settings, "everyone", 'email contains "@"')
        create_campaign(s, app.settings, "bench", CampaignSpec(segment="everyone", channel="email", template="welcome",
                                                               quiet_hours="none", cap="none"))
    from sqlalchemy import select

    from campaigns.store.models import Campaign
    from campaigns.timespec import utcnow
    from scheduler.planner import plan_firing

    now = utcnow()
    with app.session() as s:
        plan_firing(s, app.settings, s.scalar(select(Campaign)), now.replace(microsecond=0), now)
    asyncio.run(Dispatcher(app, worker_name="bench").dispatch_once())
    urls = []
    for eml in (folder / "outbox").rglob("*.eml"):
        html = message_from_bytes(eml.read_bytes(), policy=policy.default).get_body(("html",))
        urls += re.findall(rf'http://127\.0\.0\.1:{port}/c/[^"\s<>]+', html.get_content() if html else "")
    app.engine.dispose()
    return config, sorted(set(urls))


async def _load(urls: list[str], n: int) -> float:
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(limits=limits, timeout=30, follow_redirects=False) as client:
        for u in urls[:CONCURRENCY]:  # warm up
            await client.get(u)
        todo = iter(range(n))
        bad = 0
        errors: dict[int, str] = {}

        async def lane() -> None:
            nonlocal bad
            for i in todo:
                r = await client.get(urls[i % len(urls)])
                if r.status_code != 302:
                    bad += 1
                    errors[r.status_code] = r.text[:200]
        t0 = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(CONCURRENCY)))
        seconds = time.perf_counter() - t0
    assert bad == 0, f"{bad} requests did not redirect: {errors}"
    return seconds


def _wait_up(url: str) -> None:
    for _ in range(200):
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (/proc/PID/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def ours_command(config: Path) -> list[str]:
    """`campaigns track serve` for the shop `_setup` made."""
    return [sys.executable, "-m", "campaigns", "--config", str(config), "track", "serve"]


def bare_command(port: int) -> list[str]:
    """uvicorn serving `BARE` (written to bare_app.py in the working folder)."""
    return [sys.executable, "-m", "uvicorn", "bare_app:app", "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning", "--no-access-log"]


def serve(command: list[str], cwd: Path | str, env: dict[str, str] | None, health: str, urls: list[str],
          n: int) -> tuple[float, float, float]:
    """Start one server, load it with `n` requests over `urls`, stop it: (seconds, the
    server's CPU seconds during the load, its peak resident set in MB)."""
    server = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_up(health)
        cpu0 = _cpu_seconds(server.pid)
        seconds = asyncio.run(_load(urls, n))
        return seconds, _cpu_seconds(server.pid) - cpu0, _peak_rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)


def run(scale: str = "default") -> dict[str, object]:
    n = SCALES[scale]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        port = free_port()
        config, urls = _setup(folder, port)
        assert len(urls) >= 2_000, len(urls)
        ours_s, ours_cpu, ours_rss = serve(ours_command(config), folder, None, f"http://127.0.0.1:{port}/healthz", urls, n)
        (folder / "bare_app.py").write_text(BARE, encoding="utf-8")
        bport = free_port()
        bare_urls = [u.replace(f":{port}/", f":{bport}/") for u in urls]
        bare_s, bare_cpu, bare_rss = serve(bare_command(bport), folder, None, f"http://127.0.0.1:{bport}/", bare_urls, n)
        from sqlalchemy import func, select

        from campaigns.config import load_settings
        from campaigns.context import App
        from campaigns.store.models import Event

        app = App(load_settings(config, environ={}))
        with app.session(write=False) as s:
            clicks = s.scalar(select(func.count()).select_from(Event).where(Event.type == "click"))
        app.engine.dispose()
    return {"requests": n, "clicks_recorded": clicks, "ours_requests_per_s": round(n / ours_s),
            "bare_requests_per_s": round(n / bare_s), "ratio_ours_to_bare": round(bare_s / ours_s, 3),
            # The server's own CPU per request: the load generator (httpx, this process) costs
            # more CPU per request than either server, so on 2 cores the wall-clock ratio above
            # is partly the client's; these two are the servers' alone.
            "ours_server_cpu_ms_per_request": round(ours_cpu * 1000 / n, 3),
            "bare_server_cpu_ms_per_request": round(bare_cpu * 1000 / n, 3),
            "ours_server_peak_rss_mb": round(ours_rss), "bare_server_peak_rss_mb": round(bare_rss),
            "client_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


if __name__ == "__main__":
    for key, value in run(sys.argv[1] if len(sys.argv) > 1 else "default").items():
        print(f"{key}: {value}")
