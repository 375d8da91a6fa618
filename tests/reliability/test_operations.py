"""Sending survives operations (issue 24): a lost lock session, a pause on PostgreSQL, a dead
template, a long SMTP outage. Real servers on loopback, senders started as a user starts them.
"""

from __future__ import annotations

import errno
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from campaigns.store.models import Campaign
from scheduler.locks import advisory_key
from tests.conftest import CliRunner
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
    # Unbuffered: a buffered file kept the part of a chunk the full disk refused and raised
    # ENOSPC again when the block closed it, failing the scenario before it began.
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(chunk)
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


def test_pause_on_postgresql_with_a_daemon_and_two_workers(tmp_path: Path, pg_url: str, record) -> None:
    n = 10_000
    shop = build_shop(tmp_path, pg_url, n)
    cli = CliRunner(shop.config)
    try:
        shop.start("daemon")
        shop.start("worker", "w1")
        shop.start("worker", "w2")
        assert cli("show", "load").exit_code == 0  # the CLI's imports, once, are not the pause's time
        assert shop.wait(lambda: len(shop.received_ids()) >= 1000, 120)
        began = time.monotonic()
        assert cli("pause", "load").exit_code == 0
        returned = time.monotonic()
        time.sleep(3)  # anything still handed over would reach the server by now
        with shop.smtp.lock:
            after = sum(1 for t in shop.smtp.began if t > returned)
            at_pause = sum(1 for t in shop.smtp.began if t <= returned)
        held = shop.states()
        assert cli("resume", "load").exit_code == 0
        assert shop.wait(shop.done, 420, every=0.5), shop.states()
        shop.stop_all()
        acct = shop.account()
        assert after == 0, f"{after} messages handed over after pause returned"
        assert held.get("claimed", 0) == held.get("sending", 0) == 0, held
        assert acct["lost"] == 0 and acct["duplicates"] == 0 and acct["state_sent"] == n
        record("pause on PostgreSQL (daemon and 2 workers)", PG_CMD.format("pause_on_postgresql"), messages=n,
               lost=acct["lost"], duplicates=acct["duplicates"], pause_seconds=round(returned - began, 2),
               handed_over_after_pause_returned=after, sent_when_paused=at_pause)
    finally:
        shop.close()


def test_a_template_deleted_before_sending(tmp_path: Path, record) -> None:
    n = 2_000
    shop = build_shop(tmp_path, f"sqlite:///{tmp_path / 'c.db'}", n)
    cli = CliRunner(shop.config)
    try:
        shutil.move(tmp_path / "templates" / "welcome", tmp_path / "welcome-away")
        shop.start("daemon")
        began = time.monotonic()

        def status() -> tuple[str, str | None]:
            with shop.app.session() as s:
                c = s.get(Campaign, shop.campaign_id)
                return c.status, c.status_reason

        assert shop.wait(lambda: status()[0] == "paused", 120)
        paused_after = time.monotonic() - began
        reason = status()[1] or ""
        time.sleep(5)  # the daemon keeps polling meanwhile
        held = shop.states()
        log = (tmp_path / "daemon-0.log").read_text()
        mentions = sum("welcome" in line for line in log.splitlines() if " WARNING " in line or " ERROR " in line)
        shutil.move(tmp_path / "welcome-away", tmp_path / "templates" / "welcome")
        assert cli("retry", "load").exit_code == 0  # the batch that failed for want of its template
        assert cli("resume", "load").exit_code == 0
        assert shop.wait(shop.done, 300, every=0.5), shop.states()
        shop.stop_all()
        acct = shop.account()
        # One batch failed with the reason; the rest waited, none claimed over and over.
        assert held.get("claimed", 0) == held.get("sending", 0) == 0 and held["queued"] + held["failed"] == n, held
        assert held["failed"] <= shop.app.settings.sending.batch_size
        assert mentions == 1, log
        assert acct["lost"] == 0 and acct["duplicates"] == 0 and acct["state_sent"] == n
        record("template deleted before sending", "python -m pytest tests/reliability/test_operations.py -k template",
               messages=n, lost=acct["lost"], duplicates=acct["duplicates"], paused_after_seconds=round(paused_after, 1),
               reason=reason, failed_while_missing=held.get("failed", 0), log_lines_about_it=mentions,
               sent_after_restore_and_resume=acct["state_sent"])
    finally:
        shop.close()


def test_a_long_smtp_outage_then_resume_and_retry(tmp_path: Path, record) -> None:
    n = 5_000
    shop = build_shop(tmp_path, f"sqlite:///{tmp_path / 'c.db'}", n, sending={"max_attempts": "3"})
    cli = CliRunner(shop.config)
    try:
        shop.smtp.transient_rate = 1.0  # every RCPT gets 451: the relay is down for business

        def status() -> str:
            with shop.app.session() as s:
                return s.get(Campaign, shop.campaign_id).status

        shop.start("worker", "w1")
        assert shop.wait(lambda: status() == "paused", 300)
        at_pause = shop.states()
        shop.smtp.transient_rate = 0.0  # the relay is back
        assert cli("resume", "load").exit_code == 0
        resumes = 1
        assert shop.wait(lambda: not ({"queued", "retry_wait", "claimed", "sending"} & set(+shop.states())) or status() == "paused", 300)
        assert status() != "paused", shop.states()
        retried = cli("retry", "load")
        assert retried.exit_code == 0
        assert shop.wait(shop.done, 300, every=0.5), shop.states()
        shop.stop_all()
        acct = shop.account()
        assert acct["lost"] == 0 and acct["duplicates"] == 0 and acct["state_sent"] == n
        record("long SMTP outage, then resume and retry", "python -m pytest tests/reliability/test_operations.py -k outage",
               messages=n, lost=acct["lost"], duplicates=acct["duplicates"], failed_at_auto_pause=at_pause.get("failed", 0),
               waiting_at_auto_pause=at_pause.get("queued", 0) + at_pause.get("retry_wait", 0), resumes_needed=resumes,
               sent_in_the_end=acct["state_sent"], stranded=n - acct["state_sent"])
    finally:
        shop.close()
