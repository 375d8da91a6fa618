"""POST /webhooks/subscribe: a shop's signup form creating consent through the ledger,
against the real tracking app over HTTP."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from campaigns.audience import consent_requests
from campaigns.config import load_settings
from campaigns.context import App
from campaigns.store.models import Campaign, ConsentEvent, Contact
from campaigns.timespec import utcnow
from campaigns.tracking.app import create_app, webhook_signature
from scheduler.jobs import tick
from tests.conftest import write_config
from tests.support.http import ServedApp
from tests.support.smtp import free_port

REPO_TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
SECRET = "test-webhook-secret-0123456789abcdef"


class Site:
    def __init__(self, app: App, base: str) -> None:
        self.app, self.base = app, base

    def subscribe(self, payload: dict, signature: str | None = None) -> httpx.Response:
        body = json.dumps(payload).encode()
        sig = webhook_signature(self.app.settings, body) if signature is None else signature
        return httpx.post(f"{self.base}/webhooks/subscribe", content=body, headers={"X-Campaigns-Signature": sig})

    def ledger(self) -> list[tuple[int, str, str, str]]:
        with self.app.session() as s:
            return [(e.contact_id, e.channel, e.action, e.source)
                    for e in s.scalars(select(ConsentEvent).order_by(ConsentEvent.id))]

    def contacts(self) -> int:
        with self.app.session() as s:
            return s.scalar(select(func.count()).select_from(Contact)) or 0


def _site(tmp_path: Path, db_url: str, double_opt_in: bool):  # type: ignore[no-untyped-def]
    shutil.copytree(REPO_TEMPLATES, tmp_path / "templates", dirs_exist_ok=True)
    port = free_port()
    cfg = write_config(tmp_path, db_url, f'[tracking]\npublic_url = "http://127.0.0.1:{port}"\n'
                                         f'webhook_secret = "{SECRET}"\n'
                                         f'[consent]\ndouble_opt_in = {"true" if double_opt_in else "false"}\n')
    app = App(load_settings(cfg, environ={}))
    return app, port


@pytest.fixture
def site(tmp_path: Path, db_url: str):  # type: ignore[no-untyped-def]
    app, port = _site(tmp_path, db_url, double_opt_in=True)
    with ServedApp(create_app(app.settings, app), port) as base:
        yield Site(app, base)
    app.engine.dispose()


@pytest.fixture
def single_site(tmp_path: Path, db_url: str):  # type: ignore[no-untyped-def]
    app, port = _site(tmp_path, db_url, double_opt_in=False)
    with ServedApp(create_app(app.settings, app), port) as base:
        yield Site(app, base)
    app.engine.dispose()


def test_signed_subscribe_under_double_opt_in_is_pending_queues_a_request_and_only_the_post_confirms(site):
    r = site.subscribe({"email": "New.Person@Example.com", "channel": "email", "source": "shop signup form",
                        "text": "Yes, send me offers", "id": "evt-1"})
    assert r.status_code == 201, r.text
    assert r.json()["action"] == "pending"
    assert "token" not in r.text  # the token goes only to the person, in the request message
    tick(site.app)  # the daemon's next sync creates the request campaign the open request needs
    with site.app.session() as s:
        contact = s.scalar(select(Contact).where(Contact.email == "new.person@example.com"))
        assert contact is not None
        [event] = s.scalars(select(ConsentEvent).where(ConsentEvent.contact_id == contact.id))
        assert (event.action, event.channel, event.consent_text) == ("pending", "email", "Yes, send me offers")
        assert "shop signup form" in event.source
        request = s.scalar(select(Campaign).where(Campaign.name == consent_requests.CAMPAIGNS["email"]))
        assert request is not None and request.status == "scheduled"  # activated: the request goes out at its next firing
        clause = consent_requests.audience_clause(request, utcnow())
        assert clause is not None and list(s.scalars(select(Contact.id).where(clause))) == [contact.id]
        token = consent_requests.token_for(site.app.settings, event.id)
    assert httpx.get(f"{site.base}/confirm/{token}").status_code == 200
    assert [a for *_, a, _ in site.ledger()] == ["pending"]  # a GET (a link scanner) confirms nothing
    assert httpx.post(f"{site.base}/confirm/{token}").status_code == 200
    assert [a for *_, a, _ in site.ledger()] == ["pending", "confirmed"]


def test_single_opt_in_grants(single_site):
    r = single_site.subscribe({"phone": "(415) 555-0101", "channel": "sms", "source": "checkout"})
    assert r.status_code == 201, r.text
    with single_site.app.session() as s:
        contact = s.scalar(select(Contact))
        assert contact is not None and contact.phone == "+14155550101"  # normalised as contacts add does
    assert [(ch, a) for _, ch, a, _ in single_site.ledger()] == [("sms", "granted")]


@pytest.mark.parametrize("signature", ["", "0" * 64, "not-hex"])
def test_unsigned_or_forged_subscribe_changes_nothing(site, signature):
    r = site.subscribe({"email": "victim@example.com", "channel": "email", "source": "form"}, signature=signature)
    assert r.status_code in (401, 403)
    assert site.contacts() == 0 and site.ledger() == []


def test_a_replay_with_the_same_id_changes_nothing(single_site):
    payload = {"email": "a@example.com", "channel": "email", "source": "form", "id": "delivery-7"}
    assert single_site.subscribe(payload).status_code == 201
    with single_site.app.session() as s:
        from campaigns.audience import consent as ledger
        contact = s.scalar(select(Contact))
        assert contact is not None
        ledger.revoke(s, contact, "email", "one-click unsubscribe")
        s.commit()
    before = single_site.ledger()
    r = single_site.subscribe(payload)  # the provider retries an old delivery after the person left
    assert r.status_code == 200 and r.json()["action"] == "unchanged"
    assert single_site.ledger() == before and single_site.contacts() == 1


def test_an_existing_contact_is_not_duplicated_and_a_repeat_signup_adds_nothing(site):
    assert site.subscribe({"email": "b@example.com", "channel": "email", "source": "form"}).status_code == 201
    r = site.subscribe({"contact": "B@example.com", "channel": "email", "source": "footer form"})
    assert r.status_code == 200 and r.json()["action"] == "unchanged"  # a request is already open
    assert site.contacts() == 1 and [a for *_, a, _ in site.ledger()] == ["pending"]


# On SQLite only: these are refused while the request is read, before anything is written, and
# the webhook's PostgreSQL path (writes, repeats, forgeries) is covered by the tests around.
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("payload", "field"), [
    ({"email": "x@example.com", "channel": "fax", "source": "form"}, "channel"),
    ({"email": "x@example.com", "channel": "email"}, "source"),
    ({"email": "x@example.com", "channel": "email", "source": " "}, "source"),
    ({"email": "not an address", "channel": "email", "source": "form"}, "email"),
    ({"phone": "12", "channel": "sms", "source": "form"}, "phone"),
    ({"channel": "email", "source": "form"}, "email"),
    ({"email": "x@example.com", "channel": "email", "source": "form", "occurred_at": "2026-01-01T10:00:00"}, "occurred_at"),
    ({"phone": "+14155550101", "channel": "email", "source": "form"}, "email"),
    ({"contact": "#999", "channel": "email", "source": "form"}, "contact"),
    ({"email": "x@example.com", "channel": "email", "source": "form\x00"}, "source"),
])
def test_bad_fields_are_4xx_naming_the_field(site, payload, field):
    r = site.subscribe(payload)
    assert 400 <= r.status_code < 500, r.text
    assert field in r.json()["error"]
    assert site.contacts() == 0 and site.ledger() == []
