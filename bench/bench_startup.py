"""CLI start-up: `campaigns --version` and `campaigns status` in a fresh shop vs a bare
`python -c pass`, each the median wall time of fresh processes, alternated in one run.

Start-up is what every command pays before it does anything; the CLI imports what a
command needs when it runs, so `--version` must cost little more than the interpreter.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCALES = {"small": 3, "default": 9}
CLI = [sys.executable, "-m", "campaigns"]


def _wall(cmd: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - t0


def run(scale: str = "default") -> dict[str, float]:
    rounds = SCALES[scale]
    folder = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    try:
        shop = folder / "shop"
        shop.mkdir()
        subprocess.run([*CLI, "init"], cwd=shop, check=True, capture_output=True)
        times: dict[str, list[float]] = {"bare": [], "version": [], "status": []}
        for _ in range(rounds):
            times["bare"].append(_wall([sys.executable, "-c", "pass"], shop))
            times["version"].append(_wall([*CLI, "--version"], shop))
            times["status"].append(_wall([*CLI, "status"], shop))
        med = {k: statistics.median(v) for k, v in times.items()}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "rounds": rounds,
        "bare_python_seconds": round(med["bare"], 3),
        "version_seconds": round(med["version"], 3),
        "status_seconds": round(med["status"], 3),
        "version_over_bare_seconds": round(med["version"] - med["bare"], 3),
    }


if __name__ == "__main__":
    for key, value in run(sys.argv[1] if len(sys.argv) > 1 else "default").items():
        print(f"{key}: {value}")
