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
    for value in ("p1@example.com", "4155550001", "5 Main Street", UA):
        assert value in before, value  # the test would prove nothing otherwise
    r = CliRunner(tmp_path / "config.toml")("contacts", "erase", "p1@example.com", "--yes")
    assert r.exit_code == 0, r.output
    after = _everything(shop)
    for value in ("p1@example.com", "4155550001", "5 Main Street", UA, "Person 1"):
        assert value not in after, value
    with shop.app.engine.connect() as conn:
        from campaigns.store.models import Event

        kinds = {row.type for row in conn.execute(select(Event.type).where(Event.contact_id == cid))}
    assert {"reply", "stop", "unsubscribe", "bounce"} <= kinds  # the events stay, as proof without the person
