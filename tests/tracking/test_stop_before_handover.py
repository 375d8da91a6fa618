"""An acknowledged unsubscribe stops every later message, even one already claimed.

The sender's channel is wrapped: when the first message of a batch is handed over, the
last recipient of the same (already claimed, rendered, marked `sending`) batch says stop
through a real path and gets its answer; their message must then not be handed over.
"""

import asyncio
import json
import mailbox
import os
import time
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, text

from campaigns.audience import stopped
from campaigns.audience.contacts import find_contact
from campaigns.messages import links
from campaigns.store.models import Campaign, Delivery
from campaigns.timespec import utcnow
from scheduler.channels.file import FileEmail, FileSms
from scheduler.channels.smtp import SmtpPool
from scheduler.dispatcher import Dispatcher
from scheduler.planner import plan_firing
from scheduler.transport import smtp_config
from tests.conftest import CliRunner
from tests.scheduler.conftest import make_campaign
from tests.support.smtp import FaultySmtp


class StopDuringSend:
    """A channel that runs `action` (a person saying stop) when the first message goes out."""

    def __init__(self, inner, action) -> None:  # type: ignore[no-untyped-def]
        self.inner, self.action, self.sent_to = inner, action, []

    async def send(self, message):  # type: ignore[no-untyped-def]
        if self.action is not None:
            action, self.action = self.action, None
            action()  # blocks the loop on purpose: the acknowledgement arrives before any other hand-over
        result = await self.inner.send(message)
        if result.outcome == "sent":
            self.sent_to.append(message.to)
        return result

    async def close(self) -> None:
        await self.inner.close()


def _fire(shop, campaign_id, seconds=2):
    with shop.app.session() as s:
        now = utcnow()
        run = plan_firing(s, shop.app.settings, s.get(Campaign, campaign_id), now.replace(microsecond=0) + timedelta(seconds=seconds), now)
        return run.run_id, now + timedelta(seconds=seconds + 3)


def _states(shop, run_id):
    with shop.app.session() as s:
        return {d.contact_id: d.state for d in s.scalars(select(Delivery).where(Delivery.run_id == run_id))}


def _first_delivery(shop, email):
    with shop.app.session() as s:
        c = find_contact(s, email)
        return c.id, s.scalar(select(Delivery).where(Delivery.contact_id == c.id).order_by(Delivery.id))


def _run_email(shop, action, inner=None):  # type: ignore[no-untyped-def]
    stopped.forget_all()
    run_id, at = _fire(shop, shop.campaign_id)
    channel = StopDuringSend(inner or FileEmail(shop.outbox), action)
    asyncio.run(Dispatcher(shop.app, channels={"email": channel, "sms": FileSms(shop.outbox)}).dispatch_once(at))
    return _states(shop, run_id), channel.sent_to


def test_one_click_unsubscribe_stops_a_claimed_message(shop):
    cid, d = _first_delivery(shop, "p2@example.com")

    def unsubscribe():
        r = httpx.post(links.unsubscribe_url(shop.app.settings, d.id), data={"List-Unsubscribe": "One-Click"})
        assert r.status_code == 200

    states, sent = _run_email(shop, unsubscribe)
    assert states[cid] == "suppressed" and "p2@example.com" not in sent
    assert sorted(sent) == ["p0@example.com", "p1@example.com"]


def test_one_click_unsubscribe_stops_a_message_waiting_for_an_smtp_connection(shop):
    server = FaultySmtp().start()
    try:
        settings = shop.app.settings.model_copy(deep=True)
        settings.smtp.port, settings.smtp.pool_size = server.port, 1
        cid, d = _first_delivery(shop, "p2@example.com")

        def unsubscribe():
            assert httpx.post(links.unsubscribe_url(shop.app.settings, d.id), data={"List-Unsubscribe": "One-Click"}).status_code == 200

        states, _sent = _run_email(shop, unsubscribe, SmtpPool(smtp_config(settings)))
        assert states[cid] == "suppressed"
        assert sorted(r for r, _m, _f in server.received) == ["p0@example.com", "p1@example.com"]
    finally:
        server.stop()


def test_mailto_unsubscribe_stops_a_claimed_message(shop, tmp_path):
    cid, _d = _first_delivery(shop, "p2@example.com")
    msg = next(shop.message(n) for n in range(3) if shop.message(n)["To"].addresses[0].addr_spec == "p2@example.com")
    mailto = str(msg["List-Unsubscribe"]).split("<mailto:", 1)[1].split(">", 1)[0]
    to, _, query = mailto.partition("?")
    box = mailbox.Maildir(str(tmp_path / "Maildir"), create=True)
    box.add(f"From: p2@example.com\r\nTo: {to}\r\nSubject: {query.removeprefix('subject=')}\r\nMessage-ID: <u@x>\r\n\r\n.\r\n".encode())

    def import_mail():
        r = CliRunner(tmp_path / "config.toml")("bounces", "import", str(tmp_path / "Maildir"), "--json")
        assert r.exit_code == 0 and json.loads(r.stdout)["unsubscribes"] == 1

    states, sent = _run_email(shop, import_mail)
    assert states[cid] == "suppressed" and "p2@example.com" not in sent


def test_a_complaint_stops_a_claimed_message(shop):
    cid, d = _first_delivery(shop, "p2@example.com")

    def complain():
        body = json.dumps({"type": "complaint", "return_path": links.return_path(shop.app.settings, d.id)}).encode()
        assert shop.webhook("/webhooks/bounce", body).json() == {"matched": True}

    states, sent = _run_email(shop, complain)
    assert states[cid] == "suppressed" and "p2@example.com" not in sent


def test_sms_stop_stops_a_claimed_text(shop):
    sms_campaign = make_campaign(shop.app, "textpromo", 'phone contains "+"', channel="sms", template="flash_sale")
    with shop.app.session() as s:
        victim = find_contact(s, "+14155550002").id
    stopped.forget_all()
    run_id, at = _fire(shop, sms_campaign)

    def stop():
        assert "unsubscribed" in shop.sms({"From": "+14155550002", "Body": "STOP", "MessageSid": "SMstop"}).text

    channel = StopDuringSend(FileSms(shop.outbox), stop)
    asyncio.run(Dispatcher(shop.app, channels={"email": FileEmail(shop.outbox), "sms": channel}).dispatch_once(at))
    states = _states(shop, run_id)
    assert states[victim] == "suppressed" and "+14155550002" not in channel.sent_to and len(channel.sent_to) == 2


@pytest.mark.skipif(not os.environ.get("CAMPAIGNS_TEST_POSTGRES_URL"), reason="LISTEN/NOTIFY needs PostgreSQL")
def test_other_workers_hear_a_stop_through_listen_notify(shop):
    if shop.app.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only")
    stopped.forget_all()
    stopped.listen(shop.app.engine)
    planned = utcnow() - timedelta(seconds=1)
    # Another process's transaction: a NOTIFY on commit, nothing in this process's set.
    deadline = time.monotonic() + 30
    with shop.app.engine.connect() as conn:
        while time.monotonic() < deadline and not stopped.is_stopped(424242, "email", planned):
            conn.execute(text("SELECT pg_notify(:c, :p)"), {"c": stopped.CHANNEL, "p": f"424242:email:{utcnow().timestamp()}"})
            conn.commit()
            time.sleep(0.05)
    assert stopped.is_stopped(424242, "email", planned)
