"""Sending survives operations (issue 24): a lost lock session, a pause on PostgreSQL, a dead
template, a long SMTP outage. Real servers on loopback, senders started as a user starts them.
"""

from __future__ import annotations

import errno
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from scheduler.locks import advisory_key
from tests.reliability.harness import build_shop

PG_CMD = "CAMPAIGNS_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test python -m pytest tests/reliability/test_operations.py -k {}"


def _lock_holders(app) -> list[int]:  # type: ignore[no-untyped-def]
    with app.engine.connect() as conn:
        key = advisory_key(conn.scalar(text("SELECT current_schema()")))
        return list(conn.scalars(text("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                                      "AND classid = :hi AND objid = :lo"), {"hi": (key >> 32) & 0xFFFFFFFF, "lo": key & 0xFFFFFFFF}))


def test_the_daemon_lock_after_its_postgresql_session_is_lost(tmp_path: Path, pg_url: str, record) -> None:
    """The lock's backend is ended with pg_terminate_backend (what a server restart does to the
    session; a real restart would disturb everyone sharing the server)."""
    n = 5_000
    shop = build_shop(tmp_path, pg_url, n)
    try:
        first = shop.start("daemon")
        assert shop.wait(lambda: len(shop.received_ids()) >= 500, 120)
        holders = _lock_holders(shop.app)
        assert len(holders) == 1
        with shop.app.engine.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": holders[0]})
            conn.commit()
        lost_at = time.monotonic()
        assert shop.wait(lambda: _lock_holders(shop.app) not in ([], holders), 60, every=0.05)  # a new session holds it
        regained = time.monotonic() - lost_at
        second = shop.start("daemon")
        assert shop.wait(lambda: second.poll() is not None, 60)  # refused: the first holds the lock again
        assert second.returncode == 1 and first.poll() is None
        assert "another daemon is already running" in (tmp_path / "daemon-1.log").read_text()
        assert shop.wait(shop.done, 300, every=0.5), shop.states()
        shop.stop_all()
        acct = shop.account()
        assert acct["lost"] == 0 and acct["duplicates"] == 0
        record("daemon lock after its PostgreSQL session is lost", PG_CMD.format("lock"), messages=n, lost=acct["lost"],
               duplicates=acct["duplicates"], lock_held_again_after_seconds=round(regained, 2),
               second_daemon="refused", daemons_running_at_once=1)
    finally:
        shop.close()


def _mount_small_disk(where: Path, megabytes: int) -> None:
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(where)],
                          check=False, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"this scenario needs to mount a small tmpfs (root): {done.stderr.strip()}")


def _fill(disk: Path) -> Path:
    """Write a filler file until the disk is full."""
    filler = disk / "filler"
    chunk = b"\0" * (64 * 1024)
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(chunk)
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def test_the_disk_fills_up_mid_send(tmp_path: Path, record) -> None:
    """SQLite on a 64 MB disk that fills up while the daemon sends; then space is freed."""
    n = 5_000
    disk = tmp_path / "disk"
    _mount_small_disk(disk, 64)
    shop = None
    try:
        shop = build_shop(tmp_path, f"sqlite:///{disk / 'c.db'}", n)
        shop.start("daemon")
        assert shop.wait(lambda: len(shop.received_ids()) >= 500, 120)
        filler = _fill(disk)
        log = tmp_path / "daemon-0.log"
        assert shop.wait(lambda: "full" in log.read_text(), 120), log.read_text()[-2000:]
        at_full = len(shop.received_ids())
        time.sleep(10)  # the disk stays full a while
        during = len(shop.received_ids()) - at_full
        filler.unlink()
        freed = time.monotonic()
        assert shop.wait(lambda: len(shop.received_ids()) > at_full + during, 120)
        resumed = time.monotonic() - freed
        assert shop.wait(shop.done, 300, every=0.5), shop.states()
        shop.stop_all()
        acct = shop.account()
        text_ = log.read_text()
        assert acct["lost"] == 0 and acct["duplicates"] == 0
        assert "Traceback" not in text_
        record("disk full mid-send (SQLite)", "python -m pytest tests/reliability/test_operations.py -k disk", messages=n,
               lost=acct["lost"], duplicates=acct["duplicates"], unknown=acct.get("state_unknown", 0),
               sent_before_full=at_full, handed_over_while_full=during, resumed_after_space_freed_seconds=round(resumed, 1),
               warning_lines=sum(" WARNING " in line for line in text_.splitlines()))
    finally:
        if shop is not None:
            shop.close()
        subprocess.run(["umount", "-l", str(disk)], check=False)
