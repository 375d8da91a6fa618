"""Double opt-in end to end: every path makes a pending entry and the product sends the
request itself (email with a confirm page whose POST confirms; SMS answered by YES),
through the normal outbox, in the recipient's allowed hours."""

import asyncio
import json
from datetime import timedelta
from email import message_from_bytes, policy

import httpx
from sqlalchemy import func, select

from campaigns.audience import consent as ledger
from campaigns.audience.contacts import find_contact
from campaigns.config import load_settings
from campaigns.context import App
from campaigns.store.models import Campaign, CampaignRun, Delivery
from campaigns.timespec import utcnow
from campaigns.tracking.app import create_app, twilio_signature
from scheduler.dispatcher import Dispatcher
from scheduler.jobs import tick
from tests.conftest import CliRunner, write_config
from tests.support.http import ServedApp
from tests.support.smtp import free_port

TOKEN = "twilio-token"


def _setup(tmp_path, db_url):
    port = free_port()
    cfg = write_config(tmp_path, db_url, f'[consent]\ndouble_opt_in = true\nsms_request_text = "Shop: reply YES for texts"\n'
                                         f'[tracking]\npublic_url = "http://127.0.0.1:{port}"\n'
                                         f'[sms]\nauth_token = "{TOKEN}"\n'
                                         '[policy]\nquiet_hours_email = "none"\nquiet_hours_sms = "21:00-08:00"\n')
    run = CliRunner(cfg)
    assert run("init").exit_code == 0
    return run, App(load_settings(cfg, environ={})), port


def _state(app, ref, channel):
    with app.session() as s:
        return ledger.current_state(s, find_contact(s, ref).id, channel)


def _zone_where_it_is(hour_local: int, at) -> str:
    k = (hour_local - at.hour) % 24
    k = k - 24 if k > 12 else k
    return "UTC" if k == 0 else (f"Etc/GMT-{k}" if k > 0 else f"Etc/GMT+{-k}")


def test_contacts_add_and_import_make_pending_entries_and_queue_requests(tmp_path, db_url):
    run, app, _port = _setup(tmp_path, db_url)
    r = run("contacts", "add", "--email", "ann@example.com", "--consent", "email", "--source", "signup form")
    assert r.exit_code == 0 and "confirmation request is queued" in r.stdout
    csv = tmp_path / "people.csv"
    csv.write_text("email,name\nbob@example.com,Bob\ncy@example.com,Cy\n", encoding="utf-8")
    r = run("contacts", "import", str(csv), "--consent", "email", "--source", "fair stand", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["confirmation_requests"] == 2
    for ref in ("ann@example.com", "bob@example.com", "cy@example.com"):
        state = _state(app, ref, "email")
        assert state.action is None and state.pending, ref
    again = json.loads(run("contacts", "import", str(csv), "--consent", "email", "--source", "fair stand", "--json").stdout)
    assert again["confirmation_requests"] == 0  # already asked: no second request
    app.engine.dispose()


def test_the_confirmation_email_is_sent_by_the_product_and_only_its_post_confirms(tmp_path, db_url):
    run, app, port = _setup(tmp_path, db_url)
    assert run("contacts", "add", "--email", "ann@example.com", "--consent", "email", "--source", "form").exit_code == 0
    now = utcnow() + timedelta(minutes=6)
    tick(app, now)
    asyncio.run(Dispatcher(app).dispatch_once(now + timedelta(seconds=1)))
    files = list((tmp_path / "outbox" / "email").glob("*.eml"))
    assert len(files) == 1
    msg = message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert msg["To"].addresses[0].addr_spec == "ann@example.com" and "confirm" in str(msg["Subject"]).lower()
    html = msg.get_body(("html",)).get_content()
    link = html.split('href="', 1)[1].split('"', 1)[0]
    assert f"127.0.0.1:{port}/confirm/c" in link
    with ServedApp(create_app(app.settings, app), port):
        assert "<form method='post'>" in httpx.get(link).text
        assert _state(app, "ann@example.com", "email").action is None  # a scanner's GET changed nothing
        assert httpx.post(link).status_code == 200
    assert _state(app, "ann@example.com", "email").action == "confirmed"
    tick(app, now + timedelta(minutes=5))  # asked once: the next firing sends nothing more
    asyncio.run(Dispatcher(app).dispatch_once(now + timedelta(minutes=5, seconds=1)))
    assert len(list((tmp_path / "outbox" / "email").glob("*.eml"))) == 1
    app.engine.dispose()


def test_the_sms_request_waits_for_allowed_hours_and_yes_confirms(tmp_path, db_url):
    run, app, port = _setup(tmp_path, db_url)
    now = utcnow() + timedelta(minutes=6)
    tz = _zone_where_it_is(23, now)
    r = run("contacts", "add", "--phone", "+14155550123", "--timezone", tz, "--consent", "sms", "--source", "till")
    assert r.exit_code == 0, r.output
    tick(app, now)
    with app.session() as s:
        c = s.scalar(select(Campaign).where(Campaign.name == "confirm-sms"))
        d = s.scalar(select(Delivery).where(Delivery.campaign_id == c.id))
        assert d is not None and d.due_at - now > timedelta(hours=8)  # 23:00 local: pushed to 08:00
    asyncio.run(Dispatcher(app).dispatch_once(now + timedelta(seconds=1)))
    assert not (tmp_path / "outbox" / "sms.jsonl").exists()
    asyncio.run(Dispatcher(app).dispatch_once(d.due_at + timedelta(seconds=1)))
    line = json.loads((tmp_path / "outbox" / "sms.jsonl").read_text().splitlines()[0])
    assert line["body"].startswith("Shop: reply YES for texts")
    data = {"From": "+14155550123", "Body": "Yes", "MessageSid": "SMyes"}
    sig = twilio_signature(TOKEN, f"http://127.0.0.1:{port}/sms/inbound", data)
    with ServedApp(create_app(app.settings, app), port) as base:
        assert httpx.post(f"{base}/sms/inbound", data=data, headers={"X-Twilio-Signature": sig}).status_code == 200
    assert _state(app, "+14155550123", "sms").action == "confirmed"
    app.engine.dispose()


def test_the_request_campaign_records_a_run_only_when_it_asks_someone(tmp_path, db_url):
    run, app, _port = _setup(tmp_path, db_url)
    assert run("contacts", "add", "--email", "ann@example.com", "--consent", "email", "--source", "form").exit_code == 0
    now = utcnow() + timedelta(minutes=6)
    tick(app, now)  # Ann's request: one run, one message
    for k in range(1, 13):  # an hour of firings every 5 minutes with nobody left to ask
        tick(app, now + timedelta(minutes=5 * k))
    with app.session() as s:
        c = s.scalar(select(Campaign).where(Campaign.name == "confirm-email"))
        runs = list(s.scalars(select(CampaignRun).where(CampaignRun.campaign_id == c.id)))
        assert [r.counts.get("planned") for r in runs] == [1]
        assert c.status == "scheduled"
    assert run("contacts", "add", "--email", "bob@example.com").exit_code == 0
    with app.session() as s:  # Bob signs up an hour later (on the test's clock, which runs ahead)
        ledger.grant(s, app.settings, find_contact(s, "bob@example.com"), "email", "form",
                     occurred_at=now + timedelta(minutes=61))
    tick(app, now + timedelta(minutes=66))  # his request goes out at the next firing; none counted missed
    with app.session() as s:
        runs = list(s.scalars(select(CampaignRun).where(CampaignRun.campaign_id == c.id).order_by(CampaignRun.id)))
        assert [(r.status, r.counts.get("planned")) for r in runs] == [("planned", 1), ("planned", 1)]
        assert s.scalar(select(func.count()).select_from(Delivery).where(Delivery.campaign_id == c.id)) == 2
    app.engine.dispose()


def test_consent_grant_under_double_opt_in_sends_the_request_too(tmp_path, db_url):
    run, app, _port = _setup(tmp_path, db_url)
    assert run("contacts", "add", "--email", "dee@example.com").exit_code == 0
    r = run("consent", "grant", "dee@example.com", "--channel", "email", "--source", "phone call")
    assert r.exit_code == 0 and "confirmation email is queued" in r.stdout, r.output
    assert _state(app, "dee@example.com", "email").pending
    now = utcnow() + timedelta(minutes=6)
    tick(app, now)
    asyncio.run(Dispatcher(app).dispatch_once(now + timedelta(seconds=1)))
    [sent] = [message_from_bytes(f.read_bytes(), policy=policy.default) for f in (tmp_path / "outbox" / "email").glob("*.eml")]
    assert sent["To"].addresses[0].addr_spec == "dee@example.com" and "/confirm/c" in sent.get_body(("html",)).get_content()
    assert _state(app, "dee@example.com", "email").action is None  # asked, not yet confirmed
    app.engine.dispose()
