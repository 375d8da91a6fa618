"""Files we write for the user: never through a symlink, never over a file by surprise,
private when they hold personal data.

An output path may be a symlink someone planted (`report -o out.html -> ~/.ssh/...`), so
output is written to a fresh temporary file in the same folder and renamed over the
target: a rename replaces a symlink itself, never what it points to, and a reader never
sees a half-written file. An existing target is replaced only when the user said `--force`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO

from campaigns.errors import InputError

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def check_replace(path: Path, force: bool, option: str = "--force") -> None:
    """InputError when `path` exists (a symlink counts) and the user did not ask to replace it."""
    if os.path.lexists(path) and not force:
        raise InputError(f"{path} already exists; add {option} to replace it")
    if path.is_dir() and not path.is_symlink():
        raise InputError(f"{path} is a folder; give a file name")


def open_temp_beside(path: Path, mode: int = PRIVATE_FILE) -> tuple[IO[str], str]:
    """A new, exclusive text file in `path`'s folder (created 0600 by mkstemp) and its name;
    InputError naming the path when the folder is missing or not writable."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    except OSError as exc:
        raise InputError(f"{path}: cannot write there ({exc.strerror or exc})") from None
    if mode != PRIVATE_FILE:
        os.fchmod(fd, mode)
    return os.fdopen(fd, "w", newline="", encoding="utf-8"), tmp


def write_text(path: Path, text: str, *, force: bool, mode: int = PRIVATE_FILE) -> None:
    """Write `text` to `path` atomically without following a symlink; see `check_replace`."""
    check_replace(path, force)
    fh, tmp = open_temp_beside(path, mode)
    try:
        with fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_new_private(path: Path, data: bytes) -> None:
    """Create `path` (which must not exist) holding `data`, 0600, without following a symlink."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE_FILE)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) as 0700 folders; an existing one is left as it is.
    (`mkdir(parents=True)` would create the parents with the umask's mode.)"""
    missing = []
    folder = path
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:
            pass  # made meanwhile by another process
    return path
