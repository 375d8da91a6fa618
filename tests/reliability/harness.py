"""What every reliability scenario needs: a shop of N consenting contacts on a real
database, one campaign planned for all of them, sender processes started the way a user
starts them (`campaigns worker` / `campaigns daemon`), and an account of what the SMTP
server received against what the database says.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select

from bench.datagen import write_contacts_csv
from campaigns.audience.contacts import import_contacts
from campaigns.campaign_defs import CampaignSpec, create_campaign
from campaigns.config import load_settings
from campaigns.context import App
from campaigns.segments import create_segment
from campaigns.store import schema
from campaigns.store.models import Campaign, Delivery
from campaigns.timespec import utcnow
from scheduler.planner import plan_firing
from tests.conftest import write_config
from tests.support.smtp import FaultySmtp

ROOT = Path(__file__).resolve().parents[2]
TERMINAL = ("sent", "failed", "suppressed", "unknown", "held_out")


@dataclass
class Shop:
    folder: Path
    config: Path
    app: App
    smtp: FaultySmtp
    campaign_id: int = 0
    procs: list[subprocess.Popen] = field(default_factory=list)  # type: ignore[type-arg]

    # -- processes ---------------------------------------------------------------------
    def start(self, command: str = "worker", name: str | None = None) -> subprocess.Popen:  # type: ignore[type-arg]
        """`campaigns worker` (or `daemon --no-tracking`) as a child process, logging to a file."""
        args = [sys.executable, "-m", "campaigns", "--config", str(self.config), command]
        args += ["--name", name] if name and command == "worker" else []
        args += ["--no-tracking"] if command == "daemon" else []
        log = open(self.folder / f"{name or command}-{len(self.procs)}.log", "w")
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNS_")}
        proc = subprocess.Popen(args, cwd=self.folder, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.app.engine.dispose()
        self.smtp.stop()

    # -- campaigns ---------------------------------------------------------------------
    def plan(self) -> None:
        """Plan the campaign now, as the daemon's firing would."""
        now = utcnow()
        with self.app.session() as s:
            plan_firing(s, self.app.settings, s.get(Campaign, self.campaign_id), now.replace(microsecond=0), now)

    def new_campaign(self, name: str) -> None:
        """Another one-off campaign to the same contacts, planned, with the SMTP record cleared."""
        with self.app.session() as s:
            c = create_campaign(s, self.app.settings, name, CampaignSpec(
                segment="everyone", channel="email", template="welcome", quiet_hours="none", cap="none"))
            self.campaign_id = c.id
        with self.smtp.lock:
            self.smtp.received.clear()
            self.smtp.began.clear()
        self.plan()

    # -- accounts ----------------------------------------------------------------------
    def states(self) -> Counter[str]:
        with self.app.session() as s:
            return Counter(dict(s.execute(select(Delivery.state, func.count())
                                          .where(Delivery.campaign_id == self.campaign_id)
                                          .group_by(Delivery.state)).all()))

    def received_ids(self) -> list[int]:
        """Delivery ids of the messages the SMTP server accepted (from their Message-IDs)."""
        with self.smtp.lock:
            return [int(mid.strip("<").split(".")[0], 36) for _rcpt, mid, _from in self.smtp.received]

    def account(self) -> dict[str, int]:
        """lost: rows not in a final state, or marked sent but never received; duplicates: extra copies."""
        ids = self.received_ids()
        copies = Counter(ids)
        with self.app.session() as s:
            sent = set(s.scalars(select(Delivery.id).where(Delivery.campaign_id == self.campaign_id,
                                                           Delivery.state == "sent")))
        states = self.states()
        open_rows = sum(n for state, n in states.items() if state not in TERMINAL)
        return {"received": len(ids), "duplicates": sum(n - 1 for n in copies.values() if n > 1),
                "lost": open_rows + len(sent - set(copies)), "sent_not_received": len(sent - set(copies)),
                "received_not_marked_sent": len(set(copies) - sent), **{f"state_{k}": v for k, v in states.items()}}

    def wait(self, predicate: Callable[[], bool], timeout: float, every: float = 0.2) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(every)
        return predicate()

    def done(self) -> bool:
        return sum(n for state, n in self.states().items() if state not in TERMINAL) == 0

    def wait_done(self, stall: float = 120, limit: float = 1800) -> bool:
        """Wait until every row is final, judged by progress rather than a guess of the speed:
        False only when no row changed state for `stall` seconds (a hang), or after `limit`."""
        began = last_change = time.monotonic()
        seen = self.states()
        while not self.done():
            now = time.monotonic()
            if now - last_change > stall or now - began > limit:
                return False
            time.sleep(0.5)
            states = self.states()
            if states != seen:
                seen, last_change = states, time.monotonic()
        return True

    def logs_tail(self, lines: int = 12) -> str:
        """The last lines of every child's log, for a failure message."""
        out = []
        for path in sorted(self.folder.glob("*.log")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(out)


def build_shop(folder: Path, db_url: str, n: int, *, sending: dict[str, str] | None = None, extra_toml: str = "",
               pool: int = 8, seed: int = 3, plan: bool = True, at: str | None = None) -> Shop:
    """N consenting contacts, a segment of all of them and a one-off email campaign, planned now."""
    shutil.copytree(ROOT / "templates", folder / "templates", dirs_exist_ok=True)
    smtp = FaultySmtp(seed=seed).start()
    sending = {"transport": '"smtp"', "retry_base_seconds": "0.5", "poll_seconds": "0.2", **(sending or {})}
    config = write_config(folder, db_url, "[sending]\n" + "".join(f"{k} = {v}\n" for k, v in sending.items())
                          + f'[smtp]\nhost = "127.0.0.1"\nport = {smtp.port}\npool_size = {pool}\ntimeout_seconds = 5\n'
                          + '[policy]\nquiet_hours_email = ""\nfrequency_cap = "none"\n' + extra_toml)
    app = App(load_settings(config, environ={}))
    schema.upgrade(app.engine)  # `campaigns init` (a no-op on an already migrated database)
    csv_path = write_contacts_csv(folder / "contacts.csv", n, seed=seed)
    with app.session() as s:
        import_contacts(s, app.settings, csv_path, consent_channels=["email"], source="reliability")
        create_segment(s, app.settings, "everyone", 'email contains "@"')
        c = create_campaign(s, app.settings, "load", CampaignSpec(segment="everyone", channel="email", template="welcome",
                                                                   quiet_hours="none", cap="none", at=at), activate=at is not None)
        cid = c.id
    shop = Shop(folder, config, app, smtp, cid)
    if plan:
        shop.plan()
    return shop

