"""The click benchmark for two or more code trees, alternated, with each server's own CPU.

A before/after comparison is only fair within one run (the load drifts over minutes): one
shop is set up, then every round serves the same signed click URLs from each tree's
`campaigns track serve` in turn and from the bare ASGI redirect, with the same httpx load.
It prints each server's requests per second and its own CPU per request (from /proc: the
steadier figure, since the client's CPU is in the wall-clock numbers too).

    git archive OLD | tar -x -C /tmp/before    # a tree to compare with
    python -m bench.ab_tracking N ROUNDS /tmp/before .
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path

from bench import ab_args
from bench.bench_tracking import BARE, _setup, bare_command, ours_command, serve
from bench.sink import free_port


def _round(command: list[str], cwd: Path | str, env: dict[str, str] | None, health: str, urls: list[str],
           n: int) -> tuple[float, float]:
    """(requests per second, server CPU ms per request) of one server for one round."""
    seconds, cpu, _ = serve(command, cwd, env, health, urls, n)
    return n / seconds, cpu * 1000 / n


def main(n: int, rounds: int, roots: list[str]) -> None:
    roots = [str(Path(r).resolve()) for r in roots]
    figures: dict[str, list[tuple[float, float]]] = {r: [] for r in [*roots, "bare"]}
    with tempfile.TemporaryDirectory() as tmp:
        folder, port, bport = Path(tmp), free_port(), free_port()
        config, urls = _setup(folder, port)
        (folder / "bare_app.py").write_text(BARE, encoding="utf-8")
        bare_urls = [u.replace(f":{port}/", f":{bport}/") for u in urls]
        for k in range(rounds):
            for root in roots:
                figures[root].append(_round(ours_command(config), root, dict(os.environ, PYTHONPATH=root),
                                            f"http://127.0.0.1:{port}/healthz", urls, n))
            figures["bare"].append(_round(bare_command(bport), folder, None, f"http://127.0.0.1:{bport}/", bare_urls, n))
            print(f"round {k}: " + " | ".join(f"{i if name != 'bare' else 'bare'}: {runs[-1][0]:.0f} req/s, "
                                              f"server {runs[-1][1]:.2f} ms/req"
                                              for i, (name, runs) in enumerate(figures.items())), flush=True)
    bare_rate = statistics.median(r for r, _ in figures["bare"])
    for i, root in enumerate(roots):
        rates = [r for r, _ in figures[root]]
        cpus = [c for _, c in figures[root]]
        print(f"{i} {root}: median {statistics.median(rates):.0f} req/s (ratio to bare {statistics.median(rates) / bare_rate:.2f}), "
              f"server CPU {min(cpus):.2f}-{max(cpus):.2f} ms/req")
    cpus = [c for _, c in figures["bare"]]
    print(f"bare: median {bare_rate:.0f} req/s, server CPU {min(cpus):.2f}-{max(cpus):.2f} ms/req")


if __name__ == "__main__":
    main(*ab_args.parse(sys.argv[1:], "bench.ab_tracking"))
