"""Forged inbound texts change nothing; START restores only what a STOP took away."""

import hashlib
import hmac
import json

import httpx
from sqlalchemy import func, select

from campaigns.audience import consent as ledger
from campaigns.audience.suppression import is_suppressed
from campaigns.config import load_settings
from campaigns.context import App
from campaigns.signing import address_hash
from campaigns.store.models import ConsentEvent, Contact, Event, Suppression
from campaigns.tracking.app import create_app, twilio_signature
from tests.conftest import write_config
from tests.scheduler.conftest import add_people
from tests.support.http import ServedApp
from tests.tracking.conftest import SMS_TOKEN, WEBHOOK_SECRET


def _sms_state(app, phone):
    with app.session() as s:
        c = s.scalar(select(Contact).where(Contact.phone == phone))
        return ledger.current_state(s, c.id, "sms").action


def _ledger_size(app):
    with app.session() as s:
        return s.scalar(select(func.count()).select_from(ConsentEvent))


def test_unsigned_start_is_refused_when_no_token_is_set_and_grants_nothing(tmp_path, db_url):
    cfg = write_config(tmp_path, db_url, '[tracking]\nwebhook_secret = "w"\n')
    app = App(load_settings(cfg, environ={}))
    add_people(app, 2, sms=True, consent=False)
    before = _ledger_size(app)
    with ServedApp(create_app(app.settings, app)) as base:
        for body in ("START", "STOP", "YES"):
            r = httpx.post(f"{base}/sms/inbound", data={"From": "+14155550001", "Body": body, "MessageSid": f"x{body}"})
            assert r.status_code == 404 and "[sms] auth_token" in r.text
    assert _ledger_size(app) == before
    with app.session() as s:
        assert s.scalar(select(func.count()).select_from(Event)) == 0
    from campaigns.tracking.guard import inbound_sms_off_reason

    assert "off" in inbound_sms_off_reason(app.settings)
    app.engine.dispose()


def test_forged_or_non_ascii_twilio_signature_is_a_403_and_changes_nothing(shop):
    phone = "+14155550001"
    data = {"From": phone, "Body": "STOP", "MessageSid": "F1"}
    before = _ledger_size(shop.app)
    for sig in ("", "AAAA", "é".encode(), twilio_signature("wrong-token", f"{shop.base}/sms/inbound", data)):
        r = httpx.post(f"{shop.base}/sms/inbound", data=data, headers={"X-Twilio-Signature": sig})
        assert r.status_code == 403, (sig, r.status_code)
    assert _ledger_size(shop.app) == before and _sms_state(shop.app, phone) == "granted"


def test_twilio_signature_is_checked_against_the_public_url_behind_a_tls_proxy(tmp_path, db_url):
    public = "https://sms.example.com/track"
    cfg = write_config(tmp_path, db_url, f'[tracking]\npublic_url = "{public}"\n[sms]\nauth_token = "{SMS_TOKEN}"\n')
    app = App(load_settings(cfg, environ={}))
    add_people(app, 2, sms=True)
    data = {"From": "+14155550001", "Body": "STOP", "MessageSid": "P1"}
    with ServedApp(create_app(app.settings, app)) as base:
        # What Twilio signs: the URL it was given (the proxy's), not the one we listen on.
        r = httpx.post(f"{base}/sms/inbound", data=data,
                       headers={"X-Twilio-Signature": twilio_signature(SMS_TOKEN, public + "/sms/inbound", data)})
        assert r.status_code == 200 and "<Message>" in r.text
        internal = httpx.post(f"{base}/sms/inbound", data={**data, "MessageSid": "P2"},
                              headers={"X-Twilio-Signature": twilio_signature(SMS_TOKEN, f"{base}/sms/inbound", data)})
        assert internal.status_code == 403
    assert _sms_state(app, "+14155550001") == "revoked"
    app.engine.dispose()


def test_start_from_a_contact_who_never_consented_is_a_reply_and_grants_nothing(tmp_path, db_url, shop):
    with shop.app.session() as s:
        c = s.scalar(select(Contact).where(Contact.phone == "+14155550002"))
        ledger.revoke(s, c, "sms", "call centre")  # revoked, but not by a STOP
    for i, word in enumerate(("START", "yes", "UNSTOP")):
        r = shop.sms({"From": "+14155550002", "Body": word, "MessageSid": f"N{i}"})
        assert r.status_code == 200 and "<Message>" not in r.text
    assert _sms_state(shop.app, "+14155550002") == "revoked"
    with shop.app.session() as s:
        assert s.scalar(select(func.count()).select_from(Event).where(Event.type == "start")) == 0
        assert s.scalar(select(func.count()).select_from(Event).where(Event.type == "reply")) == 3


def test_start_after_a_stop_restores_what_the_stop_took(shop):
    phone = "+14155550001"
    shop.sms({"From": phone, "Body": "STOP", "MessageSid": "S1"})
    assert _sms_state(shop.app, phone) == "revoked"
    r = shop.sms({"From": phone, "Body": "UNSTOP", "MessageSid": "S2"})
    assert "subscribed again" in r.text and _sms_state(shop.app, phone) == "granted"


def test_stop_from_an_unknown_number_suppresses_its_keyed_hash(shop):
    stranger = "+14155559999"
    r = shop.sms({"From": stranger, "Body": "STOP", "MessageSid": "U1"})
    assert r.status_code == 200 and "unsubscribed" in r.text
    with shop.app.session() as s:
        assert is_suppressed(s, shop.app.settings, "sms", stranger)
        row = s.scalar(select(Suppression).where(Suppression.channel == "sms"))
        assert row.address is None and row.address_hash == address_hash(shop.app.settings, "sms", stranger)
        stop = s.scalar(select(Event).where(Event.type == "stop"))
        assert stranger not in json.dumps(stop.data)


def test_webhook_provider_texts_need_the_webhook_hmac(tmp_path, db_url):
    cfg = write_config(tmp_path, db_url, f'[tracking]\nwebhook_secret = "{WEBHOOK_SECRET}"\n'
                                         '[sms]\nprovider = "webhook"\nbase_url = "http://127.0.0.1:9/sms"\n')
    app = App(load_settings(cfg, environ={}))
    add_people(app, 2, sms=True)
    body = json.dumps({"from": "+14155550001", "body": "STOP", "id": "W1"}).encode()
    sig = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    with ServedApp(create_app(app.settings, app)) as base:
        assert httpx.post(f"{base}/sms/inbound", content=body).status_code == 403
        assert httpx.post(f"{base}/sms/inbound", content=body, headers={"X-Campaigns-Signature": "é".encode()}).status_code == 403
        assert _sms_state(app, "+14155550001") == "granted"
        r = httpx.post(f"{base}/sms/inbound", content=body, headers={"X-Campaigns-Signature": sig})
        assert r.status_code == 200 and "unsubscribed" in r.json()["reply"]
    assert _sms_state(app, "+14155550001") == "revoked"
    app.engine.dispose()


def test_start_does_not_undo_a_revocation_recorded_by_hand_with_an_sms_source(shop):
    """Only a STOP keyword's revocation is restorable: an operator's `consent revoke --source
    "sms to support"` (the person asked by text to be left alone) is not a STOP."""
    phone = "+14155550002"
    with shop.app.session() as s:
        ledger.revoke(s, s.scalar(select(Contact).where(Contact.phone == phone)), "sms", "sms to support: never text me")
    r = shop.sms({"From": phone, "Body": "START", "MessageSid": "H1"})
    assert r.status_code == 200 and "<Message>" not in r.text
    assert _sms_state(shop.app, phone) == "revoked"
