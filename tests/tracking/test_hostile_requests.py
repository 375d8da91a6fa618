"""Issue 17, tracking endpoints: every bad request is a 4xx with a reason, never a 500."""

import json

import httpx
import pytest
from sqlalchemy import func, select

from campaigns.messages import links
from campaigns.store.models import Delivery, Event, Suppression
from tests.tracking.conftest import WEBHOOK_SECRET


def _count(shop, model):
    with shop.app.session() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_non_ascii_signatures_in_links_are_a_4xx(shop):
    for path in ("/c/o/i/%C3%A9", "/o/1/%C3%A9.gif", "/u/1/%C3%A9", "/c/1/1/%F0%9F%98%80", "/u/%C3%A9/x"):
        r = httpx.get(shop.base + path)
        assert r.status_code < 500, (path, r.status_code)
        if not path.startswith("/o/"):
            assert 400 <= r.status_code < 500
    r = httpx.post(shop.base + "/u/1/%C3%A9", data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 404
    # over real HTTP, where the server decodes header bytes as latin-1
    for header, path in (("X-Twilio-Signature", "/sms/inbound"), ("X-Campaigns-Signature", "/webhooks/bounce"),
                         ("X-Campaigns-Signature", "/webhooks/purchase"), ("X-Campaigns-Signature", "/webhooks/event")):
        for value in ("\u00e9".encode(), b"\xe9", "\U0001f600".encode()):
            r = httpx.post(shop.base + path, data={"From": "+14155550100", "Body": "STOP", "MessageSid": "S1"},
                           headers={header: value})
            assert r.status_code == 403, (header, path, value, r.status_code, r.text)


@pytest.mark.parametrize("path", ["/webhooks/bounce", "/webhooks/purchase", "/sms/inbound", "/u/1/abc"])
def test_a_body_over_1_mb_is_refused_before_it_is_read(shop, path):
    big = b"x" * (1_000_001)
    r = httpx.post(shop.base + path, content=big, headers={"X-Campaigns-Signature": "00"})
    assert r.status_code in (404, 413), r.status_code  # /u/1/abc is not a valid link: refused first

    def chunks():
        for _ in range(40):
            yield b"y" * 65536

    streamed = httpx.post(shop.base + path, content=chunks(), headers={"X-Campaigns-Signature": "00"})
    assert streamed.status_code in (404, 413)


def test_signed_but_malformed_bounce_payloads_are_400_with_the_field_named(shop):
    with shop.app.session() as s:
        d = s.scalar(select(Delivery).order_by(Delivery.id))
    verp = links.return_path(shop.app.settings, d.id)
    cases = {
        "recipient": {"type": "bounce", "return_path": verp, "recipient": ["a@b.c"]},
        "occurred_at": {"type": "bounce", "return_path": verp, "occurred_at": "2026-11-01T10:00:00"},
        "detail": {"type": "bounce", "return_path": verp, "detail": "5.1.1\x00"},
        "return_path": {"type": "bounce", "return_path": 12},
        "type": {"type": "delete-everything", "return_path": verp},
    }
    for field, payload in cases.items():
        r = shop.webhook("/webhooks/bounce", json.dumps(payload).encode())
        assert r.status_code == 400 and field in r.json()["error"], (field, r.status_code, r.text)
    phone = shop.webhook("/webhooks/bounce", json.dumps({"return_path": verp, "recipient": "+14155550101"}).encode())
    assert phone.status_code == 400 and "recipient" in phone.text
    deep = b"[" * 100_000 + b"]" * 100_000
    assert shop.webhook("/webhooks/bounce", deep).status_code == 400
    assert shop.webhook("/webhooks/bounce", b'{"type": "bounce", "return_path": "\\u0000"}').status_code == 400
    assert _count(shop, Suppression) == 0 and _count(shop, Event) == 0


def test_signed_but_malformed_purchase_payloads_are_400(shop):
    cases = [
        {"order_id": ["x"], "email": "p0@example.com", "amount": "1", "occurred_at": "2026-11-01T10:00:00Z"},
        {"order_id": "A\x00", "email": "p0@example.com", "amount": "1", "occurred_at": "2026-11-01T10:00:00Z"},
        {"order_id": "A2", "email": {"$ne": 1}, "amount": "1", "occurred_at": "2026-11-01T10:00:00Z"},
        {"order_id": "A3", "email": "+14155550101", "amount": "1", "occurred_at": "2026-11-01T10:00:00Z"},
        {"order_id": "A4", "email": "p0@example.com", "amount": "1", "occurred_at": "yesterday-ish"},
        [1, 2, 3],
    ]
    for payload in cases:
        r = shop.webhook("/webhooks/purchase", json.dumps(payload).encode())
        assert r.status_code == 400 and r.json()["error"], (payload, r.status_code, r.text)
    deep = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    assert shop.webhook("/webhooks/purchase", deep).status_code == 400


def test_webhooks_use_their_own_secret_not_the_link_key(shop):
    import hashlib
    import hmac

    body = json.dumps({"type": "bounce", "return_path": "bounces+1-AAAAAA@example.com"}).encode()
    with_link_key = hmac.new(shop.app.settings.signing_key, body, hashlib.sha256).hexdigest()
    assert httpx.post(f"{shop.base}/webhooks/bounce", content=body,
                      headers={"X-Campaigns-Signature": with_link_key}).status_code == 403
    good = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert httpx.post(f"{shop.base}/webhooks/bounce", content=body, headers={"X-Campaigns-Signature": good}).status_code == 200


def test_rotating_the_webhook_secret_leaves_links_in_sent_mail_working(shop):
    link = shop.links()["click"][0]
    shop.app.settings.tracking.webhook_secret = type(shop.app.settings.tracking.webhook_secret)("a-brand-new-secret")
    assert httpx.get(link).status_code == 302
    unsub = shop.links()["unsubscribe"][0]
    assert httpx.get(unsub).status_code == 200


def test_malformed_forms_and_headers_are_4xx(shop):
    unsub = shop.links()["unsubscribe"][0]
    r = httpx.post(unsub, content=b"\xff\xfe=\xff", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400
    r = httpx.post(unsub, content=b"--zz\r\nbroken", headers={"Content-Type": "multipart/form-data; boundary=zz"})
    assert 400 <= r.status_code < 500
    r = httpx.post(f"{shop.base}/sms/inbound", content=b"\xff", headers={"X-Twilio-Signature": "x"})
    assert 400 <= r.status_code < 500


def test_a_webhook_secret_equal_to_the_secret_key_turns_webhooks_off(shop):
    """Whoever holds the webhook secret (the shop platform) must not be able to sign links:
    a webhook_secret that is the secret key itself is refused, and startup says why."""
    import hashlib
    import hmac

    from campaigns.tracking.guard import startup_warnings

    key = shop.app.settings.signing_key
    shop.app.settings.tracking.webhook_secret = type(shop.app.settings.tracking.webhook_secret)(key.decode())
    body = json.dumps({"type": "bounce", "return_path": "bounces+1-AAAAAA@example.com"}).encode()
    r = httpx.post(f"{shop.base}/webhooks/bounce", content=body,
                   headers={"X-Campaigns-Signature": hmac.new(key, body, hashlib.sha256).hexdigest()})
    assert r.status_code == 403 and "secret key" in r.json()["error"], r.text
    assert any("webhook_secret is the secret key" in line for line in startup_warnings(shop.app.settings))
