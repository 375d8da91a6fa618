"""Write RELIABILITY.md from the figures the last reliability run recorded.

Usage: python -m pytest -m reliability && python -m tests.reliability.publish
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.run import machine
from tests.reliability.conftest import RESULTS

ROOT = Path(__file__).resolve().parents[2]
KEYS_FIRST = ("volume", "rows", "messages", "lost", "duplicates", "sent_twice", "left_behind")


def main() -> None:
    data = json.loads(RESULTS.read_text())
    lines = [
        "# Reliability",
        "",
        "Each scenario inflicts a fault on real servers on loopback (SQLite, PostgreSQL, aiosmtpd, the",
        "tracking app) and asserts what must never happen. The figures below are from the latest run",
        f"(machine: {machine()}). Reproduce all of them with",
        "`python -m pytest -m reliability && python -m tests.reliability.publish`.",
        "",
        "| scenario | figures | recorded | command |",
        "| --- | --- | --- | --- |",
    ]
    for name in sorted(data):
        entry = dict(data[name])
        command = entry.pop("command")
        when = entry.pop("recorded_at")
        ordered = sorted(entry.items(), key=lambda kv: (kv[0] not in KEYS_FIRST, kv[0]))
        figures = "; ".join(f"{k.replace('_', ' ')}: {v}" for k, v in ordered)
        lines.append(f"| {name} | {figures} | {when} | `{command}` |")
    (ROOT / "RELIABILITY.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {ROOT / 'RELIABILITY.md'} ({len(data)} scenarios)")


if __name__ == "__main__":
    main()
