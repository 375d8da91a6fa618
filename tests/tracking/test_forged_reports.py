"""Bounce and complaint reports act only when they name a message we sent."""

import json
import mailbox

from sqlalchemy import func, select

from campaigns.audience import consent as ledger
from campaigns.audience.contacts import find_contact
from campaigns.audience.suppression import is_suppressed
from campaigns.messages import links
from campaigns.store.models import Delivery, Event, Suppression
from tests.conftest import CliRunner
from tests.tracking.test_bounces import DSN, _sample

ARF = """From: abuse@isp.example
To: {to}
Subject: Abuse report
Message-ID: <arf-{n}@isp.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="b"

--b
Content-Type: text/plain

A complaint.

--b
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: ISP/1.0
Version: 1
Original-Rcpt-To: {rcpt}

--b
Content-Type: text/rfc822-headers

From: Example Shop <news@example.com>
To: {rcpt}
Message-ID: {message_id}

--b--
"""


def _import(shop, tmp_path, *messages, name="Maildir"):
    box = mailbox.Maildir(str(tmp_path / name), create=True)
    for raw in messages:
        box.add(raw)
    r = CliRunner(tmp_path / "config.toml")("bounces", "import", str(tmp_path / name), "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def _suppressed(shop):
    with shop.app.session() as s:
        return s.scalar(select(func.count()).select_from(Suppression))


def test_a_forged_dsn_listing_many_recipients_suppresses_nobody(shop, tmp_path):
    template = (DSN / "postfix.eml").read_bytes()
    head, _, rest = template.partition(b"Final-Recipient:")
    block = b"Final-Recipient:" + rest.split(b"\n\n", 1)[0] + b"\n\n"
    blocks = b"".join(block.replace(b"gone@customer.example", f"p{i}@example.com".encode()) for i in range(3)) \
        + b"".join(block.replace(b"gone@customer.example", f"victim{i}@example.org".encode()) for i in range(200))
    forged = (head + blocks + rest.split(b"\n\n", 1)[1]) \
        .replace(b"VERP_ADDRESS", b"bounces+1-AAAAAAAA@example.com").replace(b"ORIGINAL_MESSAGE_ID", b"<1.forged@example.com>")
    counts = _import(shop, tmp_path, forged)
    assert counts["bounces"] == 0 and counts["unmatched"] == 203
    assert _suppressed(shop) == 0
    with shop.app.session() as s:
        assert s.scalar(select(func.count()).select_from(Event).where(Event.type == "bounce")) == 0


def test_a_forged_complaint_revokes_nothing_and_a_genuine_one_does(shop, tmp_path):
    with shop.app.session() as s:
        d = s.scalar(select(Delivery).order_by(Delivery.id))
        to = find_contact(s, d.contact_id and f"#{d.contact_id}").email
    forged = ARF.format(to="fbl@example.com", n=1, rcpt=to, message_id="<someone-else@example.com>").encode()
    counts = _import(shop, tmp_path, forged)
    assert counts["complaints"] == 0 and counts["unmatched"] == 1
    with shop.app.session() as s:
        assert ledger.current_state(s, d.contact_id, "email").action == "granted"
        assert not is_suppressed(s, shop.app.settings, "email", to)
    genuine = ARF.format(to="fbl@example.com", n=2, rcpt=to, message_id=d.provider_message_id).encode()
    counts = _import(shop, tmp_path, genuine, name="second")
    assert counts["complaints"] == 1
    with shop.app.session() as s:
        assert ledger.current_state(s, d.contact_id, "email").action == "revoked"
        assert is_suppressed(s, shop.app.settings, "email", to)


def test_bounce_webhook_naming_only_a_recipient_changes_nothing(shop):
    for payload in ({"type": "bounce", "recipient": "p1@example.com"},
                    {"type": "complaint", "recipient": "p1@example.com", "return_path": "bounces+1-AAAAAA@example.com"},
                    {"type": "bounce", "message_id": "<1.AAAAAA@example.com>"}):
        r = shop.webhook("/webhooks/bounce", json.dumps(payload).encode())
        assert r.status_code == 200 and r.json()["matched"] is False, payload
    assert _suppressed(shop) == 0
    with shop.app.session() as s:
        assert ledger.current_state(s, find_contact(s, "p1@example.com").id, "email").action == "granted"


def test_one_bounce_per_delivery_whichever_source_reports_it(shop, tmp_path):
    with shop.app.session() as s:
        d = s.scalar(select(Delivery).order_by(Delivery.id))
    verp = links.return_path(shop.app.settings, d.id)
    body = json.dumps({"type": "bounce", "return_path": verp, "id": "esp-1"}).encode()
    assert shop.webhook("/webhooks/bounce", body).json() == {"matched": True}
    assert shop.webhook("/webhooks/bounce", body.replace(b"esp-1", b"esp-2")).json() == {"matched": True}
    _import(shop, tmp_path, _sample("postfix.eml", verp=verp))
    _import(shop, tmp_path, _sample("postfix.eml", verp=verp), name="again")
    with shop.app.session() as s:
        assert s.scalar(select(func.count()).select_from(Event).where(Event.type == "bounce")) == 1


def test_a_real_return_path_with_many_listed_recipients_is_one_bounce_of_that_message(shop, tmp_path):
    """Someone who received one message (so holds a genuine VERP address) lists other people
    in its DSN: only the address that message went to is suppressed, and the summary says
    one bounce, not one per listed recipient."""
    with shop.app.session() as s:
        d = s.scalar(select(Delivery).order_by(Delivery.id))
        to = find_contact(s, f"#{d.contact_id}").email
    template = (DSN / "postfix.eml").read_bytes()
    head, _, rest = template.partition(b"Final-Recipient:")
    block = b"Final-Recipient:" + rest.split(b"\n\n", 1)[0] + b"\n\n"
    blocks = b"".join(block.replace(b"gone@customer.example", f"victim{i}@example.org".encode()) for i in range(50))
    raw = (head + blocks + rest.split(b"\n\n", 1)[1]) \
        .replace(b"VERP_ADDRESS", links.return_path(shop.app.settings, d.id).encode()).replace(b"ORIGINAL_MESSAGE_ID", b"<x@y>")
    counts = _import(shop, tmp_path, raw)
    assert counts["bounces"] == 1 and counts["unmatched"] == 0
    with shop.app.session() as s:
        assert [r.address for r in s.scalars(select(Suppression))] == [to]
