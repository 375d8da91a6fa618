"""Scale-out on PostgreSQL: several `campaigns worker` processes share one outbox, and
sending survives the database being restarted under it.

The SMTP server is a real aiosmtpd on loopback in the test process; on a 2-core machine
the workers, PostgreSQL and that server share the same two cores, so the combined rate is
reported as measured, not promised.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.reliability.harness import build_shop

N = 20_000
CMD = "CAMPAIGNS_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test python -m pytest tests/reliability/test_scale_out.py -k {}"


def test_one_two_and_four_workers_share_a_campaign(tmp_path: Path, pg_url: str, record) -> None:
    shop = build_shop(tmp_path, pg_url, N, pool=8)
    rates: dict[int, float] = {}
    accounts: dict[int, dict[str, int]] = {}
    try:
        for workers in (1, 2, 4):
            if workers > 1:
                shop.new_campaign(f"load{workers}")
            began = time.monotonic()
            procs = [shop.start("worker", f"w{workers}-{i}") for i in range(workers)]
            assert shop.wait(shop.done, 420, every=0.5), shop.states()
            rates[workers] = N / (time.monotonic() - began)
            for p in procs:
                p.terminate()
                p.wait(timeout=30)
            accounts[workers] = acct = shop.account()
            assert acct["duplicates"] == 0, (workers, acct)
            assert acct["lost"] == 0 and acct["state_sent"] == acct["received"] == N, (workers, acct)
            with shop.app.session() as s:
                from sqlalchemy import func, select

                from campaigns.store.models import Delivery
                by_worker = dict(s.execute(select(Delivery.claimed_by, func.count()).where(
                    Delivery.campaign_id == shop.campaign_id).group_by(Delivery.claimed_by)).all())
            assert len(by_worker) == workers and min(by_worker.values()) > 0  # every worker took a share
        record("workers sharing one campaign on PostgreSQL", CMD.format("workers"), messages=N,
               duplicates=sum(a["duplicates"] for a in accounts.values()), left_behind=sum(a["lost"] for a in accounts.values()),
               rate_1_worker=round(rates[1]), rate_2_workers=round(rates[2]), rate_4_workers=round(rates[4]),
               ratio_2_vs_1=round(rates[2] / rates[1], 2), ratio_4_vs_1=round(rates[4] / rates[1], 2))
    finally:
        shop.close()


def _cluster() -> list[str]:
    versions = sorted(p.name for p in Path("/etc/postgresql").iterdir()) if Path("/etc/postgresql").is_dir() else []
    if not versions or not shutil.which("pg_ctlcluster"):
        pytest.fail("restarting PostgreSQL needs pg_ctlcluster and a cluster under /etc/postgresql (Debian's packaging)")
    return [versions[-1], "main"]


def test_postgresql_restarted_mid_send(tmp_path: Path, pg_url: str, record) -> None:
    cluster = _cluster()
    shop = build_shop(tmp_path, pg_url, N, pool=8, sending={"lease_seconds": "120"})
    try:
        for i in range(2):
            shop.start("worker", f"w{i}")
        assert shop.wait(lambda: len(shop.smtp.received) >= N // 4, 120)
        at_restart = len(shop.smtp.received)
        began = time.monotonic()
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, "restart", "-m", "fast"], check=True,
                       capture_output=True, timeout=120)
        down_seconds = time.monotonic() - began
        assert shop.wait(lambda: len(shop.smtp.received) > at_restart + 500, 120), "sending did not resume by itself"
        resumed_after = time.monotonic() - began
        assert shop.wait(shop.done, 420, every=0.5), shop.states()
        shop.stop_all()
        acct = shop.account()
        assert acct["duplicates"] == 0
        # The wave in flight at the restart was handed over; its outcomes wait in memory until the
        # database answers, so it ends `sent`, not `unknown` (a pause look between waves that
        # met the restart once dropped them: 32 rows `unknown`).
        assert acct["lost"] == 0 and acct.get("state_unknown", 0) == 0, acct
        assert acct["received"] == N and acct["state_sent"] == N
        record("PostgreSQL restarted mid-send (2 workers)", CMD.format("restarted"), messages=N, lost=acct["lost"],
               duplicates=acct["duplicates"], unknown=acct.get("state_unknown", 0), sent_before_restart=at_restart,
               restart_seconds=round(down_seconds, 1), resumed_within_seconds=round(resumed_after, 1))
    finally:
        shop.close()
