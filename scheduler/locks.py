"""One daemon per database: a PostgreSQL advisory lock, or a file lock beside the SQLite file.

The lock lives in one database session (PostgreSQL) or one open file (SQLite). Either can
be lost while the daemon runs: a server restart or `pg_terminate_backend` ends the session
and frees the advisory lock; a removed lock file lets a second daemon lock a new file of
the same name. So the daemon calls `ensure()` every few seconds: it takes the lock back
when nobody else did, or raises ConflictError when another daemon got it first, and the
daemon then stops. At most one check interval can pass with the lock free; planning and
claiming are safe to overlap for that long (both are idempotent or row-locked).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
from pathlib import Path
from typing import IO

from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url

from campaigns.errors import ConflictError
from campaigns.store.db import is_sqlite

log = logging.getLogger("campaigns.daemon")
HELD_ELSEWHERE = "another daemon is already running on this database"


def advisory_key(schema: str) -> int:
    """The advisory-lock key for the campaigns tables in `schema` (one lock per schema, so
    several databases can share a PostgreSQL database under different schemas)."""
    return int.from_bytes(hashlib.blake2b(b"campaigns-daemon:" + schema.encode(), digest_size=8).digest(), "big", signed=True)


class DaemonLock:
    """Held for the daemon's whole life; released on exit (the OS frees it on a crash)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._fh: IO[str] | None = None
        self._conn: Connection | None = None
        self._key: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise ConflictError naming who holds it."""
        if is_sqlite(self.engine):
            self._fh = self._lock_file()
        else:
            self._conn = self._advisory()

    def _path(self) -> Path:
        return Path(make_url(str(self.engine.url)).database or "campaigns.db").with_suffix(".daemon.lock")

    def _lock_file(self) -> IO[str]:
        fh = open(self._path(), "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise ConflictError(f"{HELD_ELSEWHERE} ({holder}); only one may schedule") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        return fh

    def _advisory(self) -> Connection:
        conn = self.engine.connect()
        try:
            if self._key is None:
                self._key = advisory_key(conn.scalar(text("SELECT current_schema()")) or "public")
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self._key}).scalar()
            conn.commit()
        except BaseException:
            conn.close()
            raise
        if not got:
            conn.close()
            raise ConflictError(f"{HELD_ELSEWHERE} (PostgreSQL advisory lock held); only one may schedule")
        return conn

    def held(self) -> bool:
        """True while the lock is still ours (its session alive, its file still the one named)."""
        if self._fh is not None:
            try:
                return os.stat(self._path()).st_ino == os.fstat(self._fh.fileno()).st_ino
            except OSError:
                return False
        if self._conn is not None:
            try:
                hi, lo = ((self._key or 0) >> 32) & 0xFFFFFFFF, (self._key or 0) & 0xFFFFFFFF
                row = self._conn.execute(text(
                    "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid() "
                    "AND classid = :hi AND objid = :lo"), {"hi": hi, "lo": lo}).first()
                self._conn.commit()
                return row is not None
            except Exception:
                return False
        return False

    def ensure(self) -> bool:
        """Keep the lock: True when held (again); False when the database cannot be reached
        to take it back (nobody else can take it then either); ConflictError when another
        daemon took it meanwhile."""
        if self.held():
            return True
        log.warning("daemon lock: its %s was lost; taking it back", "file" if self._fh is not None else "database session")
        self._drop()
        try:
            self.acquire()
        except ConflictError:
            raise
        except Exception as exc:  # database unreachable: try again at the next check
            log.warning("daemon lock: cannot take it back yet: %s", (str(exc).splitlines() or [""])[0][:200])
            if is_sqlite(self.engine):
                raise
            return False
        log.info("daemon lock: held again")
        return True

    def _drop(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
            self._fh = None
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.invalidate()
                self._conn.close()
            self._conn = None

    def release(self) -> None:
        """Give the lock back."""
        if self._fh is not None:
            with contextlib.suppress(OSError):
                if self.held():  # a replaced file is another daemon's: leave it alone
                    fcntl.flock(self._fh, fcntl.LOCK_UN)
        self._drop()
