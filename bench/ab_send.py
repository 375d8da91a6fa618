"""The send benchmark's `ours` against the bare loop, for two or more code trees, alternated.

On a shared machine the load drifts over minutes, so a before/after comparison is only
fair within one run: each tree gets its own planned database (set up once with that
tree's code), then every round restores each planned database and sends it (`ours`,
bench.bench_send's child) in turn, then runs the bare aiosmtplib loop once, all into one
sink. It prints each round and, per tree, the ratio to the bare loop (sum of seconds and
median of rounds) and the sending process's CPU per message (the steadier figure).

    git archive OLD | tar -x -C /tmp/before    # a tree to compare with
    python -m bench.ab_send N ROUNDS /tmp/before .
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import ab_args
from bench.bench_send import _copy_db
from bench.compiled import compile_tree
from bench.sink import Sink


def _in(root: str, code: str) -> str:
    out = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {root!r}); {code}"], cwd=root,
                         capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    return out.stdout.strip().splitlines()[-1]


def _child(root: str, kind: str, config: str, n: int, port: int) -> dict[str, float]:
    return json.loads(_in(root, f"from bench.bench_send import _child; import json; "
                                f"print(json.dumps(_child({kind!r}, {config!r}, {n}, {port})))"))


def main(n: int, rounds: int, roots: list[str]) -> None:
    roots = [str(Path(r).resolve()) for r in roots]
    for root in roots:
        compile_tree(root)
    runs: dict[str, list[dict[str, float]]] = {r: [] for r in roots}
    bare: list[dict[str, float]] = []
    with Sink(roots[0]) as sink, tempfile.TemporaryDirectory() as tmp:
        port = sink.port
        configs = {}
        for i, root in enumerate(roots):
            folder = Path(tmp) / str(i)
            folder.mkdir()
            configs[root] = _in(root, f"from pathlib import Path; from bench.bench_send import setup, _measure, _copy_db; "
                                      f"c = setup(Path({str(folder)!r}), {n}, {port}); _measure('plan', c, {n}, {port}); "
                                      f"_copy_db(c.parent / 'bench.db', c.parent / 'planned.db'); print(c)")
        for k in range(rounds):
            for root in roots:
                config = Path(configs[root])
                _copy_db(config.parent / "planned.db", config.parent / "bench.db")
                runs[root].append(_child(root, "ours", str(config), n, port))
                assert runs[root][-1]["count"] == n, runs[root][-1]
            bare.append(_child(roots[-1], "bare", configs[roots[-1]], n, port))
            line = f"round {k}: bare {n / bare[-1]['seconds']:.0f}/s"
            for i, root in enumerate(roots):
                m = runs[root][-1]
                line += (f" | {i}: {n / m['seconds']:.0f}/s ratio {bare[-1]['seconds'] / m['seconds']:.3f}"
                         f" cpu {m['cpu_seconds'] * 1000 / n:.3f} ms/msg")
            print(line, flush=True)
    bare_s = sum(b["seconds"] for b in bare)
    for i, root in enumerate(roots):
        ms = runs[root]
        print(f"{i} {root}: ratio {bare_s / sum(m['seconds'] for m in ms):.3f} "
              f"(median {statistics.median(b['seconds'] / m['seconds'] for b, m in zip(bare, ms, strict=True)):.3f}), "
              f"cpu {sum(m['cpu_seconds'] for m in ms) * 1000 / (n * rounds):.3f} ms/msg")
    print(f"bare: cpu {sum(b['cpu_seconds'] for b in bare) * 1000 / (n * rounds):.3f} ms/msg")


if __name__ == "__main__":
    main(*ab_args.parse(sys.argv[1:], "bench.ab_send"))
