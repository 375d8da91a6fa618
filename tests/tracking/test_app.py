"""The tracking app on loopback with a real HTTP client, following links from real messages."""

import asyncio
import json
import xml.etree.ElementTree as ET
from datetime import timedelta

import httpx
import time_machine
from sqlalchemy import func, select

from campaigns.audience import consent as ledger
from campaigns.audience.contacts import find_contact
from campaigns.audience.suppression import is_suppressed
from campaigns.store.models import (
    Attribution,
    Campaign,
    ConsentEvent,
    Contact,
    Delivery,
    Event,
    Purchase,
)
from campaigns.timespec import utcnow
from campaigns.tracking.app import webhook_signature
from scheduler.dispatcher import Dispatcher
from scheduler.planner import plan_firing

PERSON = "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0"


def _events(shop, type_):
    with shop.app.session() as s:
        return list(s.scalars(select(Event).where(Event.type == type_).order_by(Event.id)))


def test_signed_click_redirects_to_the_destination_and_is_recorded(shop):
    link = shop.links()["click"][0]
    r = httpx.get(link, headers={"User-Agent": PERSON})
    assert r.status_code == 302
    assert r.headers["location"].startswith("https://") and "utm_campaign=promo" in r.headers["location"]
    clicks = _events(shop, "click")
    assert len(clicks) == 1 and clicks[0].url == r.headers["location"] and clicks[0].is_machine is False


def test_tampered_links_get_a_4xx_and_never_a_redirect(shop):
    link = shop.links()["click"][0]
    d, link_id, _sig = link.rsplit("/", 3)[1:]
    tampered = [
        link[:-1] + ("A" if link[-1] != "A" else "B"),                  # signature
        link.replace(f"/{d}/{link_id}/", f"/{d}/{int(link_id, 36) + 1:x}/"),  # another link id
        link.replace(f"/c/{d}/", "/c/zz/"),                               # another delivery
        link + "?u=https://evil.example",                                   # an injected destination
    ]
    for url in tampered[:3]:
        r = httpx.get(url)
        assert 400 <= r.status_code < 500 and "location" not in r.headers, url
    r = httpx.get(tampered[3])
    assert r.status_code == 302 and "evil" not in r.headers["location"]  # query ignored: only the signed link
    assert len(_events(shop, "click")) == 1


def test_opens_from_proxies_are_flagged_and_people_are_not(shop):
    pixel = shop.links()["open"][0]
    # Freeze the clock (in the server thread too) so the three requests share one minute.
    traveller = time_machine.travel((utcnow() + timedelta(minutes=1)).replace(second=10), tick=False)
    traveller.start()
    bot = httpx.get(pixel, headers={"User-Agent": "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"})
    person = httpx.get(pixel, headers={"User-Agent": PERSON})
    assert bot.headers["content-type"] == "image/gif" and bot.content.startswith(b"GIF89a")
    assert "no-store" in person.headers["cache-control"]
    opens = _events(shop, "open")
    assert [o.is_machine for o in opens] == [True, False]
    httpx.get(pixel, headers={"User-Agent": PERSON})  # the same person within the minute: counted once
    traveller.stop()
    assert len(_events(shop, "open")) == 2


def test_one_click_unsubscribe_by_post_without_cookies_then_dispatch_skips(shop):
    unsub = shop.links()["unsubscribe"][0]
    to = shop.message()["To"].addresses[0].addr_spec
    page = httpx.get(unsub)
    assert page.status_code == 200 and "<form method='post'>" in page.text
    with shop.app.session() as s:  # GET changed nothing
        assert ledger.current_state(s, find_contact(s, to).id, "email").action == "granted"
    for _ in range(2):  # idempotent
        r = httpx.post(unsub, data={"List-Unsubscribe": "One-Click"}, headers={"Cookie": ""})
        assert r.status_code == 200 and "no more marketing email" in r.text
    with shop.app.session() as s:
        contact = find_contact(s, to)
        assert [e.action for e in ledger.history(s, contact.id, "email")] == ["granted", "revoked"]
        assert s.scalar(select(func.count()).select_from(Event).where(Event.type == "unsubscribe")) == 1
        c = s.get(Campaign, shop.campaign_id)
        now = utcnow()
        run = plan_firing(s, shop.app.settings, c, now.replace(microsecond=0) + timedelta(seconds=2), now)
    asyncio.run(Dispatcher(shop.app).dispatch_once(now + timedelta(seconds=5)))
    with shop.app.session() as s:
        states = {d.contact_id: d.state for d in s.scalars(select(Delivery).where(Delivery.run_id == run.run_id))}
        assert contact.id not in states  # not even planned any more
        assert set(states.values()) == {"sent"}


def test_every_stop_variant_revokes_sms_and_answers_once(shop):
    words = ["STOP", "stop", "Stop.", "STOPALL", "unsubscribe", "CANCEL!", "end", "Quit", "REVOKE", "opt out", "Opt-Out"]
    for i, word in enumerate(words):
        phone = f"+1415555{i % 3:04d}"
        with shop.app.session() as s:
            c = s.scalar(select(Contact).where(Contact.phone == phone))
            ledger.grant(s, shop.app.settings, c, "sms", "test")
        r = shop.sms({"From": phone, "Body": word, "MessageSid": f"SM{i}"})
        assert r.status_code == 200 and "<Message>You are unsubscribed" in r.text, word
        with shop.app.session() as s:
            assert ledger.current_state(s, c.id, "sms").action == "revoked", word
    replay = shop.sms({"From": "+14155550000", "Body": "STOP", "MessageSid": "SM0"})
    assert "<Message>" not in replay.text  # replayed webhook: no second confirmation
    assert len(_events(shop, "stop")) == len(words)


def test_help_start_and_replies(shop):
    phone = "+14155550001"
    help_ = shop.sms({"From": phone, "Body": "help", "MessageSid": "H1"})
    assert ET.fromstring(help_.content).findtext("Message") == shop.app.settings.sms.help_text
    shop.sms({"From": phone, "Body": "STOP", "MessageSid": "S1"})
    start = shop.sms({"From": phone, "Body": "START", "MessageSid": "S2"})
    assert "subscribed again" in start.text
    with shop.app.session() as s:
        c = s.scalar(select(Contact).where(Contact.phone == phone))
        assert ledger.current_state(s, c.id, "sms").action == "granted"
    shop.sms({"From": phone, "Body": "Is the sale on Sunday?", "MessageSid": "R1"})
    reply = _events(shop, "reply")[-1]
    assert reply.data["body"] == "Is the sale on Sunday?" and reply.contact_id == c.id


def test_bounce_webhook_is_signed_suppresses_and_counts_replays_once(shop):
    from campaigns.messages import links

    with shop.app.session() as s:
        d = s.scalar(select(Delivery).join(Contact, Contact.id == Delivery.contact_id).where(Contact.email == "p1@example.com"))
    body = json.dumps({"type": "bounce", "return_path": links.return_path(shop.app.settings, d.id), "id": "evt-1",
                       "detail": "5.1.1"}).encode()
    assert httpx.post(f"{shop.base}/webhooks/bounce", content=body).status_code == 403
    for _ in range(3):
        r = shop.webhook("/webhooks/bounce", body)
        assert r.json() == {"matched": True}
    with shop.app.session() as s:
        assert is_suppressed(s, shop.app.settings, "email", "p1@example.com")
    assert len(_events(shop, "bounce")) == 1


def test_purchase_webhook_credits_the_click(shop):
    link = shop.links()["click"][0]
    httpx.get(link, headers={"User-Agent": PERSON})
    to = shop.message()["To"].addresses[0].addr_spec
    body = json.dumps({"order_id": "W-1", "email": to, "amount": "42.50", "occurred_at": utcnow().isoformat()}).encode()
    sig = {"X-Campaigns-Signature": webhook_signature(shop.app.settings, body)}
    r = httpx.post(f"{shop.base}/webhooks/purchase", content=body, headers=sig)
    assert r.status_code == 201, r.text
    assert httpx.post(f"{shop.base}/webhooks/purchase", content=body, headers=sig).status_code == 200  # replay
    with shop.app.session() as s:
        a = s.scalar(select(Attribution))
        assert (a.rule, a.credited_cents, a.campaign_id) == ("click", 4250, shop.campaign_id)
        assert s.scalar(select(func.count()).select_from(Purchase)) == 1
    bad = json.dumps({"order_id": "W-2", "email": "nobody@example.com", "amount": "1", "occurred_at": "2026-01-01"}).encode()
    r = httpx.post(f"{shop.base}/webhooks/purchase", content=bad, headers={"X-Campaigns-Signature": webhook_signature(shop.app.settings, bad)})
    assert r.status_code == 400 and "nobody@example.com" in r.text


def test_double_opt_in_link_confirms_once_and_only_by_post(shop):
    with shop.app.session() as s:
        c = find_contact(s, "p2@example.com")
        _e, token = ledger.grant(s, shop.app.settings, c, "email", "newsletter form", double_opt_in=True)
    page = httpx.get(f"{shop.base}/confirm/{token}")  # what a link scanner does
    assert page.status_code == 200 and "<form method='post'>" in page.text

    def confirmed():
        with shop.app.session() as s:
            return s.scalar(select(func.count()).select_from(ConsentEvent).where(ConsentEvent.action == "confirmed"))

    assert confirmed() == 0
    assert httpx.post(f"{shop.base}/confirm/{token}").status_code == 200
    again = httpx.post(f"{shop.base}/confirm/{token}")
    assert again.status_code == 410 and "already used" in again.text
    assert confirmed() == 1
