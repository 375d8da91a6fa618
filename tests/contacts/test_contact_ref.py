"""One contact-reference resolver: the CLI, the purchases CSV import and the purchase webhook
all accept an email, a +phone, an external_id or an id under `contact`, and agree on it."""

from __future__ import annotations

import json

import httpx
from pydantic import SecretStr
from sqlalchemy import select

from campaigns.audience.contact_ref import find_contact, resolve_refs
from campaigns.store.models import Contact, Purchase
from campaigns.timespec import utcnow
from campaigns.tracking.app import create_app, webhook_signature
from tests.support.http import ServedApp

CONTACTS = "external_id,email,phone\nC1,ann@example.com,\n42,bob@example.com,+14155550123\n,cid@example.com,\n"


def _contacts(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "c.csv").write_text(CONTACTS)
    assert cli("contacts", "import", str(tmp_path / "c.csv")).exit_code == 0


def _ids(app) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with app.session() as s:
        return {c.email: c.id for c in s.scalars(select(Contact))}


def test_every_kind_of_reference_names_the_same_contact(cli, app, tmp_path):
    _contacts(cli, tmp_path)
    ids = _ids(app)
    ann, bob, cid = ids["ann@example.com"], ids["bob@example.com"], ids["cid@example.com"]
    refs = [("contact", "ANN@example.com"), ("contact", "C1"), ("contact", f"#{cid}"), ("contact", "+14155550123"),
            ("email", "bob@example.com"), ("external_id", "C1"), ("phone", "+14155550123"),
            ("contact", "42"),  # an external_id that looks like an id is the external_id
            ("contact", "nobody@example.com"), ("email", "C1"), ("contact", "#999999")]
    with app.session() as s:
        got = resolve_refs(s, refs)
        assert find_contact(s, " ann@example.com ").id == ann
    assert got == {("contact", "ANN@example.com"): ann, ("contact", "C1"): ann, ("contact", f"#{cid}"): cid,
                   ("contact", "+14155550123"): bob, ("email", "bob@example.com"): bob, ("external_id", "C1"): ann,
                   ("phone", "+14155550123"): bob, ("contact", "42"): bob}


def test_the_cli_and_the_csv_import_take_an_email_under_contact(cli, app, tmp_path):
    _contacts(cli, tmp_path)
    orders = tmp_path / "orders.csv"
    orders.write_text("order_id,contact,amount,occurred_at\nO-1,ann@example.com,10,2026-01-05\nO-2,42,5,2026-01-06\n")
    r = cli("purchases", "import", str(orders), "--json")
    assert r.exit_code == 0, r.output
    listed = json.loads(cli("purchases", "list", "--contact", "ann@example.com", "--json").stdout)
    assert [o["order_id"] for o in listed] == ["O-1"]
    listed = json.loads(cli("purchases", "list", "--contact", "bob@example.com", "--json").stdout)
    assert [o["order_id"] for o in listed] == ["O-2"]


def test_the_purchase_webhook_takes_an_email_under_contact(cli, app, tmp_path):
    _contacts(cli, tmp_path)
    ids = _ids(app)
    settings = app.settings.model_copy(deep=True)
    settings.tracking.webhook_secret = SecretStr("shop-platform-secret")  # webhooks are off without one
    with ServedApp(create_app(settings, app)) as base:
        def post(payload: dict) -> httpx.Response:  # type: ignore[type-arg]
            body = json.dumps(payload).encode()
            return httpx.post(f"{base}/webhooks/purchase", content=body,
                              headers={"X-Campaigns-Signature": webhook_signature(settings, body)})

        now = utcnow().isoformat()
        r = post({"order_id": "W-1", "contact": "ann@example.com", "amount": "42.50", "occurred_at": now})
        assert r.status_code == 201, r.text
        r = post({"order_id": "W-2", "contact": "+14155550123", "amount": "1", "occurred_at": now})
        assert r.status_code == 201, r.text
        r = post({"order_id": "W-3", "contact": "nobody@example.com", "amount": "1", "occurred_at": now})
        assert r.status_code == 400 and "nobody@example.com" in r.text
    with app.session() as s:
        owners = {p.order_id: p.contact_id for p in s.scalars(select(Purchase))}
    assert owners == {"W-1": ids["ann@example.com"], "W-2": ids["bob@example.com"]}
