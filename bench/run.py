"""Run every benchmark and write bench/RESULTS.md (figures, ratios, peak memory, machine).

    python -m bench.run            # default scale, under 10 minutes on 2 cores
    python -m bench.run small      # a quick smoke run (seconds)

Each benchmark compares ours with a baseline measured in the same run on the same machine;
quote the ratio, not the absolute figure, when you compare machines. Each runs in a process
of its own, so a peak resident set a benchmark reads of itself is its own, not what an
earlier one left resident.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

BENCHES = [
    ("bench_import", "Contacts import (CSV, validation, consent) vs a bare csv + executemany loop"),
    ("bench_segments", "Segment count (RFM + purchase window) vs one hand-written SQL query"),
    ("bench_rendering", "Rendering a message (sandboxed Jinja2, CSS inlining, links, headers)"),
    ("bench_send", "Planning, and end-to-end sending into an aiosmtpd sink in another process vs a bare aiosmtplib loop"),
    ("bench_tracking", "Click redirects per second: our tracking app vs a bare ASGI redirect"),
    ("bench_report", "Campaign report on a large history vs the bare GROUP BY counts"),
    ("bench_events", "Custom events: import + triggered-journey evaluation vs a bare insert loop"),
    ("bench_journeys", "Branching journey: contacts moved through send, branch, send vs a linear drip of the same rows"),
    ("bench_startup", "CLI start-up: `campaigns --version` and `campaigns status` vs a bare `python -c pass`"),
]
OUT = Path(__file__).parent / "RESULTS.md"
ROOT = Path(__file__).resolve().parents[1]
# The segment benchmark's own default (1M contacts, 5M orders) spends most of its time
# generating data; the suite uses 200k/1M to stay under 10 minutes. Run
# `python -m bench.bench_segments default` for the large figure.
SCALE_FOR = {"default": {"bench_segments": "medium"}}


def machine() -> str:
    mem = "?"
    try:
        kb = int(next(line for line in open("/proc/meminfo") if line.startswith("MemTotal")).split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?") \
        if Path("/proc/cpuinfo").exists() else platform.processor()
    return (f"{os.cpu_count()} cores ({cpu}), {mem} memory, {platform.system()} {platform.machine()}, "
            f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}")


def main() -> None:
    scale = sys.argv[1] if len(sys.argv) > 1 else "default"
    from bench.compiled import compile_tree

    compile_tree(ROOT)
    began = time.monotonic()
    sections = []
    for name, title in BENCHES:
        t0 = time.monotonic()
        print(f"running {name} ({scale}) ...", flush=True)
        own = SCALE_FOR.get(scale, {}).get(name, scale)
        out = subprocess.run([sys.executable, "-m", "bench.run", "--one", name, own], cwd=ROOT, stdout=subprocess.PIPE,
                             text=True, check=True)
        figures = json.loads(out.stdout.strip().splitlines()[-1])
        seconds = time.monotonic() - t0
        rows = "\n".join(f"| {k} | {v} |" for k, v in figures.items())
        sections.append(f"## {title}\n\n`python -m bench.{name} {own}` ({seconds:.0f} s)\n\n| figure | value |\n| --- | --- |\n{rows}\n")
        for k, v in figures.items():
            print(f"  {k}: {v}")
    total = time.monotonic() - began
    OUT.write_text(
        "# Benchmark results\n\n"
        f"Written by `python -m bench.run {scale}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
        f"in {total / 60:.1f} minutes.\n\nMachine: {machine()}.\n\n"
        "Every figure is measured against a baseline in the same run (the ratio is what carries over to other\n"
        "machines). Peak memory is the peak resident set of the process that did the work.\n\n" + "\n".join(sections),
        encoding="utf-8")
    print(f"wrote {OUT} in {total:.0f} s")


def one(name: str, scale: str) -> None:
    """One benchmark, in this (child) process: its figures as the last line of output."""
    figures = importlib.import_module(f"bench.{name}").run(scale)
    print(json.dumps(figures))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        one(sys.argv[2], sys.argv[3])
    else:
        main()
