"""One daemon per database: a PostgreSQL advisory lock, or a file lock beside the SQLite file."""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path
from typing import TextIO

from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url

from campaigns.db import is_sqlite
from campaigns.errors import ConflictError


class DaemonLock:
    """Held for the daemon's whole life; released on exit (the OS frees it on a crash)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._fh: TextIO | None = None
        self._conn: Connection | None = None

    def acquire(self) -> None:
        """Take the lock or raise ConflictError naming who holds it."""
        if is_sqlite(self.engine):
            path = Path(make_url(str(self.engine.url)).database or "campaigns.db").with_suffix(".daemon.lock")
            fh = open(path, "a+")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "another process"
                fh.close()
                raise ConflictError(f"another daemon is already running on this database ({holder}); only one may schedule") from None
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()}")
            fh.flush()
            self._fh = fh
            return
        key = int.from_bytes(hashlib.blake2b(b"campaigns-daemon", digest_size=8).digest(), "big", signed=True)
        conn = self.engine.connect()
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
        conn.commit()
        if not got:
            conn.close()
            raise ConflictError("another daemon is already running on this database (PostgreSQL advisory lock held); only one may schedule")
        self._conn = conn

    def release(self) -> None:
        """Give the lock back."""
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
