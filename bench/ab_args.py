"""The command line of the A/B benches (`bench.ab_send`, `bench.ab_tracking`): N ROUNDS TREE...

A wrong argument ends with one line naming it and a non-zero exit, before any setup runs.
"""

from __future__ import annotations

from pathlib import Path


def parse(argv: list[str], command: str) -> tuple[int, int, list[str]]:
    """(N, ROUNDS, trees) from `argv` (without the program name)."""
    usage = f"usage: python -m {command} N ROUNDS TREE [TREE ...]"
    if len(argv) < 3:
        raise SystemExit(f"{usage} (a TREE is a checkout of this project: git archive OLD | tar -x -C /tmp/before)")
    numbers = []
    for name, value in (("N", argv[0]), ("ROUNDS", argv[1])):
        if not value.isdigit() or int(value) < 1:
            raise SystemExit(f"{command}: {name} must be a positive whole number, not {value!r} ({usage})")
        numbers.append(int(value))
    for tree in argv[2:]:
        if not (Path(tree) / "campaigns" / "__init__.py").is_file():
            raise SystemExit(f"{command}: {tree!r} is not a checkout of this project (no campaigns/__init__.py in it)")
    return numbers[0], numbers[1], argv[2:]
