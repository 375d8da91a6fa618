"""Orchestration: a fresh folder, a real SMTP server and tracking app on loopback, the
scheduler and dispatcher on an accelerated clock, simulated recipients, then reports.

Simulated time starts ten days ago and advances an hour per step, so the drip's later
steps, quiet hours and attribution windows all play out in seconds; every purchase and
response therefore lies in the past when the marketer looks at the reports afterwards.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import httpx
import uvicorn
from aiosmtpd.controller import Controller
from pydantic import SecretStr
from sqlalchemy import select, update

from campaigns.audience.contacts import import_contacts
from campaigns.audience.purchases import import_purchases
from campaigns.campaign_defs import CampaignSpec, create_campaign, get_campaign
from campaigns.config import load_settings
from campaigns.context import App
from campaigns.demo.shop import write_shop
from campaigns.demo.simulate import BASELINE, TRUE_LIFT, Recipients
from campaigns.errors import ConflictError, InputError
from campaigns.messages.coupons import import_pool
from campaigns.messages.templates_store import shipped_templates
from campaigns.reports.campaign import campaign_report
from campaigns.segments import create_segment
from campaigns.store import schema
from campaigns.store.models import Campaign, ConsentEvent, Contact, Delivery
from campaigns.timespec import utcnow
from campaigns.tracking.app import create_app

SIM_DAYS = 8
SEGMENTS = {
    "at-risk": 'rfm.segment in ["at_risk", "cant_lose_them", "hibernating"]',
    "new-customers": 'lifecycle = "new"',
    "vip": 'loyalty = "true_friend"',
    "subscribers": "consent.email",
}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Sink:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(envelope.content)
        return "250 2.0.0 Ok: queued"

    def __init__(self) -> None:
        self.received: list[bytes] = []


class Dispatcher(Protocol):
    """What the demo needs of the dispatcher: one pass at a simulated time, then close."""

    async def dispatch_once(self, now: datetime) -> Any: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Scheduler:
    """The scheduler's parts, injected by the CLI: `campaigns` never imports `scheduler`."""

    tick: Callable[[App, datetime], Any]  # fire what is due at a time
    dispatcher: Callable[[App], Dispatcher]  # a dispatcher for this app


@dataclass
class DemoResult:
    """What the demo did, for the CLI to print."""

    folder: Path
    seconds: float
    sim_start: datetime
    counts: dict[str, Any] = field(default_factory=dict)


CONFIG = """# Written by `campaigns demo`. The demo itself ran with an in-process SMTP server and
# tracking app; from here on messages go to the file transport under outbox/.
secret_key_file = "secret.key"
templates_dir = "templates"
timezone = "UTC"

[database]
url = "sqlite:///demo.db"

[sending]
transport = "file"
outbox_dir = "outbox"
from_address = "news@shop.example.com"
from_name = "Example Shop"

[tracking]
public_url = "http://127.0.0.1:8080"
"""


def prepare(folder: Path, force: bool) -> None:
    """Refuse to overwrite a non-empty folder unless told to."""
    if folder.exists() and not folder.is_dir():
        raise InputError(f"--dir: {folder} is a file, not a folder")
    if folder.exists() and any(folder.iterdir()):
        if not force:
            raise ConflictError(f"{folder} is not empty; choose another --dir or pass --force")
        shutil.rmtree(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--dir: cannot create {folder}: {exc.strerror}") from None


def run_demo(folder: Path, scheduler: Scheduler, contacts: int = 2000, seed: int = 1,
             say: Callable[[str], None] = print) -> DemoResult:
    """Build the shop, run three campaigns and two journeys on an accelerated clock with `scheduler`, simulate responses."""
    began = time.monotonic()
    folder = folder.resolve()
    (folder / "config.toml").write_text(CONFIG, encoding="utf-8")
    shutil.copytree(shipped_templates(), folder / "templates", dirs_exist_ok=True)
    settings = load_settings(folder / "config.toml", environ={})
    settings.ensure_secret_key_file()
    sink, sink_port, track_port = _Sink(), _free_port(), _free_port()
    settings.sending.transport = "smtp"
    settings.sending.poll_seconds = 0.05
    settings.smtp.port = sink_port
    settings.tracking.public_url = f"http://127.0.0.1:{track_port}"
    # The simulated shop platform and SMS provider sign what they send, as real ones must.
    settings.tracking.webhook_secret = SecretStr(secrets.token_urlsafe(32))
    settings.sms.auth_token = SecretStr(secrets.token_urlsafe(24))
    app = App(settings)
    schema.upgrade(app.engine)
    start = (utcnow() - timedelta(days=SIM_DAYS + 2)).replace(minute=0, second=0, microsecond=0)

    say(f"generating a shop of {contacts:,} contacts with a year of orders")
    paths = write_shop(folder, contacts, seed, start)
    with app.session() as s:
        imported = import_contacts(s, settings, paths["contacts"], source="demo shop signup form",
                                   consent_text="Yes, send me news and offers (v1)")
        orders = import_purchases(s, settings, paths["orders"])
        import_pool(s, "WINBACK", paths["coupons"])
        # The shop's history happened before the simulated weeks: consent was given then.
        s.execute(update(ConsentEvent).values(occurred_at=start - timedelta(days=60)))
        s.execute(update(Contact).values(created_at=start - timedelta(days=60)))
    say(f"imported {imported.created:,} contacts ({imported.consent_events:,} consents) and {orders.created:,} orders")

    with app.session() as s:
        for name, where in SEGMENTS.items():
            create_segment(s, settings, name, where)
        at = start.strftime("%Y-%m-%d %H:%M")
        specs = {
            # a holdout large enough to show the win-back's (simulated, known) effect
            "winback": CampaignSpec(segment="at-risk", channel="email", template="winback", at=at, holdout="30%",
                                    utm_campaign="winback", cost_per_message=0.05),
            "welcome-drip": CampaignSpec(segment="new-customers", channel="email", steps=["0d:welcome", "3d:newsletter"]),
            "flash-sale": CampaignSpec(segment="vip", channel="sms", template="flash_sale", at=at,
                                       quiet_hours="21:00-08:00", local_time=False),
            # A journey: each purchase made during the simulated weeks brings a follow-up a day later
            # (once a month at most per customer), through the same outbox and consent checks.
            "post-purchase": CampaignSpec(segment="subscribers", channel="email", trigger="purchase",
                                          steps=["1d:newsletter"], reentry="after:30d"),
            # A win-back journey: a customer whose silence turns into the at_risk lifecycle stage during the
            # simulated weeks gets the win-back offer (those already at risk at launch had the one-off above).
            "stage-winback": CampaignSpec(segment="subscribers", channel="email", trigger="lifecycle:at_risk",
                                          steps=["0d:winback"], reentry="after:90d"),
        }
        for name, spec in specs.items():
            create_campaign(s, settings, name, spec, now=start - timedelta(minutes=1), activate=True)  # live, just before the simulated launch
    say("defined segments at-risk, new-customers, vip, subscribers and campaigns winback (30% holdout), welcome-drip, "
        "flash-sale, the post-purchase journey (triggered by each purchase) and the stage-winback journey (triggered by "
        "moving into the at_risk lifecycle stage)")

    sim = [start]
    server = uvicorn.Server(uvicorn.Config(create_app(settings, app, clock=lambda: sim[0]), host="127.0.0.1",
                                           port=track_port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    smtp = Controller(sink, hostname="127.0.0.1", port=sink_port)
    smtp.start()
    thread.start()
    try:
        counts = asyncio.run(_simulate(app, scheduler, sink, settings, sim, start, track_port, seed, say))
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        smtp.stop()
    with app.session() as s:
        measured = campaign_report(s, settings, get_campaign(s, "winback"))["lift"]
    app.engine.dispose()
    counts["winback_lift"] = {"true": TRUE_LIFT["winback"], "measured": measured["absolute"], "ci95": measured["ci95"]}
    if measured["ci95"]:
        say(f"win-back: the simulated world's true lift is {TRUE_LIFT['winback'] * 100:+.1f} points; the report measured "
            f"{measured['absolute'] * 100:+.1f} (95% interval {measured['ci95'][0] * 100:+.1f} to {measured['ci95'][1] * 100:+.1f})")
    return DemoResult(folder, time.monotonic() - began, start, counts)


async def _simulate(app: App, scheduler: Scheduler, sink: _Sink, settings: Any, sim: list[datetime], start: datetime,
                    port: int, seed: int, say: Callable[[str], None]) -> dict[str, Any]:
    base = f"http://127.0.0.1:{port}"
    people = Recipients(settings, base, seed, lambda at: sim.__setitem__(0, at))
    dispatcher = scheduler.dispatcher(app)
    sms_log = settings.path(settings.sending.outbox_dir) / "sms.jsonl"
    seen_mail = sms_offset = last_holdout = 0
    sent: dict[str, int] = {}
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(200):  # wait for the tracking app to listen
            try:
                await client.get(base + "/healthz")
                break
            except httpx.HTTPError:
                await asyncio.sleep(0.05)
        for hour in range(SIM_DAYS * 24 + 1):
            now = start + timedelta(hours=hour)
            sim[0] = now
            scheduler.tick(app, now)
            stats = await dispatcher.dispatch_once(now)
            for outcome, n in stats.counts.items():
                sent[outcome] = sent.get(outcome, 0) + n
            for raw in sink.received[seen_mail:]:
                people.on_email(raw, now)
            seen_mail = len(sink.received)
            if sms_log.exists():
                with open(sms_log, encoding="utf-8") as fh:
                    fh.seek(sms_offset)
                    for line in fh:
                        people.on_sms(json.loads(line), now)
                    sms_offset = fh.tell()
            with app.session() as s:
                for did, email, due in s.execute(select(Delivery.id, Contact.email, Delivery.due_at)
                                                 .join(Contact, Contact.id == Delivery.contact_id)
                                                 .where(Delivery.is_holdout.is_(True), Delivery.id > last_holdout)
                                                 .order_by(Delivery.id)):
                    people.baseline(email, due, BASELINE)
                    last_holdout = did
            await people.run_until(client, now)
            if hour % 24 == 0:
                say(f"day {hour // 24}: {sum(sent.values()):,} messages handled, {len(sink.received):,} emails received, "
                    f"responses so far: {responses_sentence(people.done)}")
        await dispatcher.close()
    with app.session() as s:
        statuses = {c.name: c.status for c in s.scalars(select(Campaign))}
    return {"dispatched": sent, "emails_received": len(sink.received), "responses": dict(people.done), "campaigns": statuses}


RESPONSE_WORDS = (("open", "opens"), ("click", "clicks"), ("buy", "orders"), ("unsubscribe", "unsubscribes"),
                  ("sms", "texts back"))


def responses_sentence(done: dict[str, int]) -> str:
    """The simulated responses as words: `282 opens, 93 clicks, 18 orders` (`none yet` before any)."""
    parts = [f"{done[kind]:,} {word}" for kind, word in RESPONSE_WORDS if done.get(kind)]
    return ", ".join(parts) or "none yet"
