"""A shop whose welcome email was really built and written to the file outbox, and the
tracking app serving on loopback at the URL those messages link to."""

from __future__ import annotations

import asyncio
import re
import shutil
from email import message_from_bytes, policy
from pathlib import Path

import httpx
import pytest

from campaigns.config import load_settings
from campaigns.context import App
from campaigns.store.models import Campaign
from campaigns.timespec import utcnow
from campaigns.tracking.app import create_app, twilio_signature, webhook_signature
from scheduler.dispatcher import Dispatcher
from scheduler.planner import plan_firing
from tests.conftest import write_config
from tests.scheduler.conftest import add_people, make_campaign
from tests.support.http import ServedApp
from tests.support.smtp import free_port

REPO_TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
WEBHOOK_SECRET = "test-webhook-secret-0123456789abcdef"
SMS_TOKEN = "test-twilio-auth-token"
URL = re.compile(r'https?://127\.0\.0\.1:\d+/[A-Za-z0-9/_.\-]+')


class Shop:
    def __init__(self, app: App, base: str, outbox: Path, campaign_id: int) -> None:
        self.app, self.base, self.outbox, self.campaign_id = app, base, outbox, campaign_id

    def message(self, n: int = 0):  # type: ignore[no-untyped-def]
        files = sorted((self.outbox / "email").glob("*.eml"), key=lambda p: int(p.stem))
        return message_from_bytes(files[n].read_bytes(), policy=policy.default)

    def sms(self, data: dict[str, str], token: str = SMS_TOKEN) -> httpx.Response:
        """POST a text to /sms/inbound signed the way Twilio signs it (URL = public_url + path)."""
        url = self.app.settings.tracking.public_url.rstrip("/") + "/sms/inbound"
        return httpx.post(f"{self.base}/sms/inbound", data=data,
                          headers={"X-Twilio-Signature": twilio_signature(token, url, data)})

    def webhook(self, path: str, body: bytes) -> httpx.Response:
        """POST a body signed with the webhook secret."""
        return httpx.post(f"{self.base}{path}", content=body,
                          headers={"X-Campaigns-Signature": webhook_signature(self.app.settings, body)})

    def links(self, n: int = 0) -> dict[str, list[str]]:
        html = self.message(n).get_body(("html",)).get_content()
        urls = URL.findall(html)
        return {"click": [u for u in urls if "/c/" in u], "open": [u for u in urls if "/o/" in u],
                "unsubscribe": [u for u in urls if "/u/" in u]}


@pytest.fixture
def shop(tmp_path: Path, db_url: str):  # type: ignore[no-untyped-def]
    shutil.copytree(REPO_TEMPLATES, tmp_path / "templates", dirs_exist_ok=True)
    port = free_port()
    cfg = write_config(tmp_path, db_url, f'[tracking]\npublic_url = "http://127.0.0.1:{port}"\nmachine_open_seconds = 0\n'
                                         f'webhook_secret = "{WEBHOOK_SECRET}"\n'
                                         f'[sms]\nopt_out_text = "Reply STOP to opt out"\nauth_token = "{SMS_TOKEN}"\n')
    app = App(load_settings(cfg, environ={}))
    add_people(app, 3, sms=True)
    cid = make_campaign(app)
    with app.session() as s:
        now = utcnow()
        plan_firing(s, app.settings, s.get(Campaign, cid), now.replace(microsecond=0), now)
    asyncio.run(Dispatcher(app).dispatch_once())
    with ServedApp(create_app(app.settings, app), port) as base:
        yield Shop(app, base, tmp_path / "outbox", cid)
    app.engine.dispose()
