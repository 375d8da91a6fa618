"""Erasure leaves no address, phone, SMS body, IP or user agent in any table."""

import json

import httpx
from sqlalchemy import MetaData, select

from campaigns.audience.contacts import find_contact
from campaigns.messages import links
from campaigns.store.models import Delivery
from tests.conftest import CliRunner

UA = "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0 PersonalAgent"


def _everything(shop) -> str:
    meta = MetaData()
    meta.reflect(shop.app.engine)
    out = []
    with shop.app.engine.connect() as conn:
        for table in meta.sorted_tables:
            out += [repr(tuple(row)) for row in conn.execute(select(table))]
    return "\n".join(out)


def test_erasure_removes_every_personal_value_from_every_table(shop, tmp_path):
    phone = "+14155550001"
    with shop.app.session() as s:
        c = find_contact(s, "p1@example.com")
        d = s.scalar(select(Delivery).where(Delivery.contact_id == c.id, Delivery.channel == "email"))
        d.error = "550 5.1.1 <p1@example.com>: user unknown"
        cid = c.id
    shop.sms({"From": phone, "Body": "Call me at home, 5 Main Street", "MessageSid": "R1"})
    shop.sms({"From": phone, "Body": "STOP", "MessageSid": "R2"})
    httpx.get(links.open_url(shop.app.settings, d.id), headers={"User-Agent": UA})
    httpx.post(links.unsubscribe_url(shop.app.settings, d.id), data={"List-Unsubscribe": "One-Click"}, headers={"User-Agent": UA})
    body = json.dumps({"type": "bounce", "return_path": links.return_path(shop.app.settings, d.id),
                       "detail": "550 5.1.1 <p1@example.com> unknown"}).encode()
    assert shop.webhook("/webhooks/bounce", body).json() == {"matched": True}
    before = _everything(shop)
    for value in ("p1@example.com", "4155550001", "5 Main Street", UA, "'127.0.0.1'"):
        assert value in before, value  # the test would prove nothing otherwise
    r = CliRunner(tmp_path / "config.toml")("contacts", "erase", "p1@example.com", "--yes")
    assert r.exit_code == 0, r.output
    after = _everything(shop)
    for value in ("p1@example.com", "4155550001", "5 Main Street", UA, "Person 1", "'127.0.0.1'"):  # the IP too
        assert value not in after, value
    with shop.app.engine.connect() as conn:
        from campaigns.store.models import Event

        kinds = {row.type for row in conn.execute(select(Event.type).where(Event.contact_id == cid))}
    assert {"reply", "stop", "unsubscribe", "bounce"} <= kinds  # the events stay, as proof without the person


def test_erasure_clears_the_address_from_links_clicks_and_custom_events(shop, tmp_path):
    """The template author may put the address in a link (a pre-filled form) and a shop may
    send it in a custom event's properties: neither keeps it after erasure."""
    import asyncio
    import re

    from campaigns.audience import custom_events
    from campaigns.store.models import Campaign, TrackedLink
    from campaigns.timespec import utcnow
    from scheduler.dispatcher import Dispatcher
    from scheduler.planner import plan_firing
    from tests.scheduler.conftest import make_campaign

    folder = tmp_path / "templates" / "account"
    folder.mkdir()
    (folder / "subject.txt").write_text("Your account\n", encoding="utf-8")
    (folder / "body.html").write_text('<p><a href="https://shop.example.com/account?e={{ contact.email }}">Account</a></p>\n'
                                      '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>\n',
                                      encoding="utf-8")
    cid = make_campaign(shop.app, "acct", template="account")
    with shop.app.session() as s:
        now = utcnow()
        plan_firing(s, shop.app.settings, s.get(Campaign, cid), now.replace(microsecond=0), now)
        custom_events.track(s, shop.app.settings, "p1@example.com", "signup",
                            {"email": "p1@example.com", "phone": "+14155550001", "sku": "A1"}, key="signup-p1@example.com")
        from campaigns.segments.service import create_segment  # a segment written for this one person

        create_segment(s, shop.app.settings, "just-p1", 'email = "p1@example.com" or phone = "+14155550001"')
        from campaigns.audience import consent as ledger  # a signup form's wording that quotes the address

        ledger.grant(s, shop.app.settings, find_contact(s, "p1@example.com"), "email", "form, call back on +14155550001",
                     "I, p1@example.com, want the newsletter (v3)")
    asyncio.run(Dispatcher(shop.app).dispatch_once())
    clicks = {}
    for n in range(len(list((shop.outbox / "email").glob("*.eml")))):
        msg = shop.message(n)
        if str(msg["Subject"]) == "Your account":
            html = msg.get_body(("html",)).get_content()
            clicks[msg["To"].addresses[0].addr_spec] = re.findall(r'https?://127\.0\.0\.1:\d+/c/[A-Za-z0-9/_\-]+', html)[0]
    for address in ("p0@example.com", "p1@example.com"):
        r = httpx.get(clicks[address], headers={"User-Agent": UA})
        assert r.status_code == 302 and f"e={address.replace('@', '%40')}" in r.headers["location"]
    with shop.app.session() as s:
        opened = s.scalar(select(Delivery.id).where(Delivery.contact_id == find_contact(s, "p1@example.com").id))
    before = _everything(shop)
    assert before.count("p1%40example.com") >= 2  # the link and the click (with_utm encodes the query)
    assert "'email': 'p1@example.com'" in before and "'phone': '+14155550001'" in before  # the custom event
    r = CliRunner(tmp_path / "config.toml")("contacts", "erase", "p1@example.com", "--yes")
    assert r.exit_code == 0, r.output
    assert "segment just-p1" in r.stderr  # its filter changed: said, so the marketer can look
    after = _everything(shop)
    for value in ("p1@example.com", "p1%40example.com", "4155550001"):
        assert value not in after, value
    assert 'email = "(erased)" or phone = "(erased)"' in after  # the filter still parses, and matches nobody
    assert "'sku': 'A1'" in after and "want the newsletter (v3)" in after  # what is not personal stays
    with shop.app.session() as s:
        assert s.scalar(select(TrackedLink.id).where(TrackedLink.url.like("%e=p0%40example.com%"))) is not None
    assert "e=p0%40example.com" in httpx.get(clicks["p0@example.com"]).headers["location"]  # the others' links still work
    httpx.get(clicks["p1@example.com"], headers={"User-Agent": UA + " later"})  # an old mail clicked after erasure
    httpx.get(links.open_url(shop.app.settings, opened), headers={"User-Agent": UA + " later"})  # ...or opened
    later = _everything(shop)
    assert "p1%40example.com" not in later and "later" not in later
