"""Bytecode for a code tree before it is measured.

An installed copy of the product has its bytecode (pip compiles at install), but an
editable checkout on a machine with PYTHONDONTWRITEBYTECODE set (this workplace's) writes
none, so every benchmark child compiled the project from source inside its timed window
(importing the dispatcher took 1.5-1.7 s of a 5,000-message send). Compiling the tree
first measures what a user runs. Python reads existing bytecode whatever that setting says.
"""

from __future__ import annotations

import compileall
from pathlib import Path

PACKAGES = ("campaigns", "scheduler", "bench")


def compile_tree(root: str | Path) -> None:
    """Write the bytecode of the project's packages under `root` (quietly; up to date files are skipped)."""
    for package in PACKAGES:
        folder = Path(root) / package
        if folder.is_dir():
            compileall.compile_dir(folder, quiet=1)
