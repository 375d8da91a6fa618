"""Scheduler fixtures: a shop with consenting contacts, a segment, the shipped templates."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from datetime import datetime
from email import message_from_bytes
from email.header import decode_header, make_header
from email.utils import parseaddr
from pathlib import Path

import pytest

from campaigns.audience import consent as ledger
from campaigns.audience.contacts import add_contact
from campaigns.campaign_defs import CampaignSpec, create_campaign
from campaigns.config import load_settings
from campaigns.context import App
from campaigns.segments import create_segment
from scheduler.dispatcher import Dispatcher, DispatchStats
from tests.conftest import write_config
from tests.support.smtp import FaultySmtp

REPO_TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


@pytest.fixture
def make_app(tmp_path: Path, db_url: str) -> Callable[[str], App]:
    """make_app(extra_toml) -> an App on the test database with the shipped templates."""
    shutil.copytree(REPO_TEMPLATES, tmp_path / "templates", dirs_exist_ok=True)
    apps: list[App] = []

    def make(extra: str = "") -> App:
        cfg = write_config(tmp_path, db_url, extra)
        a = App(load_settings(cfg, environ={}))
        apps.append(a)
        return a

    yield make
    for a in apps:
        a.engine.dispose()


@pytest.fixture(params=[True, False], ids=["pipelining", "one-command-at-a-time"])
def smtp(request: pytest.FixtureRequest) -> FaultySmtp:
    """The fault-injecting SMTP server, once offering PIPELINING (as Postfix does: the
    channel's usual path) and once not (the path for servers that do not)."""
    server = FaultySmtp()
    server.pipelining = request.param
    server.start()
    yield server
    server.stop()


def add_people(app: App, n: int, *, tz: str | None = None, consent: bool = True, prefix: str = "p", sms: bool = False) -> list[int]:
    """n contacts with email (and phone), consenting unless told otherwise; returns ids."""
    ids = []
    with app.session() as s:
        for i in range(n):
            values = {"email": f"{prefix}{i}@example.com", "name": f"Person {i}"}
            if tz:
                values["timezone"] = tz
            if sms:
                values["phone"] = f"+1415555{i % 10000:04d}"
            c = add_contact(s, app.settings, values)
            if consent:
                ledger.grant(s, app.settings, c, "email", "test")
                if sms:
                    ledger.grant(s, app.settings, c, "sms", "test")
            ids.append(c.id)
    return ids


def make_campaign(app: App, name: str = "promo", where: str = 'email contains "@"', **spec: object) -> int:
    """A segment (named after the campaign) and a campaign on it; returns the campaign id."""
    with app.session() as s:
        create_segment(s, app.settings, f"seg_{name}", where)
        values = {"segment": f"seg_{name}", "channel": "email", "template": "welcome", "quiet_hours": "none", "cap": "none"}
        values.update(spec)
        scheduled = any(values.get(k) for k in ("at", "cron", "steps"))  # live, as the daemon tests need
        c = create_campaign(s, app.settings, name, CampaignSpec(**values), activate=scheduled)  # type: ignore[arg-type]
        return c.id


def copy_template(app: App, name: str, subject: str) -> None:
    """A template `name`: the shipped welcome with its own subject line."""
    folder = Path(app.settings.base_dir) / "templates" / name
    shutil.copytree(Path(app.settings.base_dir) / "templates" / "welcome", folder)
    (folder / "subject.txt").write_text(subject)


def dispatch_once(app: App, now: datetime) -> DispatchStats:
    """One sender (worker `w1`) sends everything due at `now`, then closes its transports."""
    async def run() -> DispatchStats:
        d = Dispatcher(app, worker_name="w1")
        try:
            return await d.dispatch_once(now)
        finally:
            await d.close()

    return asyncio.run(run())


def sent_subjects(app: App) -> list[tuple[str, str]]:
    """(recipient, decoded subject) of every email the file transport wrote, sorted."""
    out = []
    for path in sorted((Path(app.settings.base_dir) / "outbox").rglob("*.eml")):
        msg = message_from_bytes(path.read_bytes())
        out.append((parseaddr(msg["To"])[1], str(make_header(decode_header(msg["Subject"])))))
    return sorted(out)
