"""The SMS channel against a local server speaking Twilio's API, and the JSON webhook provider.

Provider answers map onto the same delivery state machine as SMTP replies: accepted is
sent, an invalid number is a hard bounce that suppresses the number, 429/5xx are retried,
bad credentials pause the campaign without blaming anyone, and a request that went out
but got no answer is unknown and never sent again.
"""

import asyncio
import json
from collections import Counter
from datetime import timedelta

from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from campaigns.audience.suppression import is_suppressed
from campaigns.store.models import Campaign, Contact, Delivery
from campaigns.timespec import utcnow
from scheduler.dispatcher import Dispatcher
from scheduler.planner import plan_firing
from tests.scheduler.conftest import add_people, make_campaign
from tests.support.http import ServedApp
from tests.support.twilio import FakeTwilio


def _twilio_toml(fake: FakeTwilio, url: str, token: str | None = None, timeout: float = 5.0) -> str:
    return ("[sms]\nprovider = \"twilio\"\n"
            f'base_url = "{url}"\naccount_sid = "{fake.sid}"\nauth_token = "{token or fake.token}"\n'
            f'from_number = "+14155550000"\ntimeout_seconds = {timeout}\n'
            "[sending]\nretry_base_seconds = 1\n")


def _setup(app, n):
    add_people(app, n, sms=True)
    cid = make_campaign(app, channel="sms", template="flash_sale")
    now = utcnow()
    with app.session() as s:
        plan_firing(s, app.settings, s.get(Campaign, cid), now.replace(microsecond=0), now)
    return cid


def _drain(app, rounds=10):
    clock = utcnow()
    total = Counter()
    for _ in range(rounds):
        d = Dispatcher(app)
        total.update(asyncio.run(_once(d, clock)).counts)
        clock += timedelta(hours=7)
    return total


async def _once(dispatcher, clock):
    try:
        return await dispatcher.dispatch_once(clock)
    finally:
        await dispatcher.close()


def _rows(app, cid):
    with app.session() as s:
        return {phone: (state, pid, err) for phone, state, pid, err in s.execute(
            select(Contact.phone, Delivery.state, Delivery.provider_message_id, Delivery.error)
            .join(Contact, Contact.id == Delivery.contact_id).where(Delivery.campaign_id == cid))}


def test_twilio_sends_each_text_once_with_the_opt_out_line_and_the_delivery_as_idempotency_key(make_app):
    fake = FakeTwilio()
    with fake.serve() as url:
        app = make_app(_twilio_toml(fake, url))
        cid = _setup(app, 12)
        _drain(app)
    rows = _rows(app, cid)
    assert Counter(state for state, _, _ in rows.values()) == Counter({"sent": 12})
    assert len(fake.sent) == 12 and len({m["to"] for m in fake.sent}) == 12
    assert all(m["from"] == "+14155550000" and m["body"].rstrip().endswith("Reply STOP to opt out") for m in fake.sent)
    assert {pid for _, pid, _ in rows.values()} == {r["sid"] for r in fake.by_token.values()}
    assert len({m["token"] for m in fake.sent}) == 12 and all(m["token"] for m in fake.sent)


def test_twilio_errors_map_onto_the_delivery_states(make_app):
    fake = FakeTwilio(slow_seconds=2.0)
    with fake.serve() as url:
        app = make_app(_twilio_toml(fake, url, timeout=0.5))
        cid = _setup(app, 6)
        with app.session() as s:
            phones = sorted(s.scalars(select(Contact.phone)))
        invalid, busy, broken, slow = phones[:4]
        fake.invalid.add(invalid)
        fake.busy[busy] = 2
        fake.broken.add(broken)
        fake.slow.add(slow)
        _drain(app)
        requests_after_drain = fake.requests
        _drain(app, rounds=3)  # nothing left to do: no request goes out again
        assert fake.requests == requests_after_drain
    rows = _rows(app, cid)
    assert rows[invalid][0] == "failed" and "21211" in rows[invalid][2]
    assert rows[busy][0] == "sent"
    assert rows[broken][0] == "failed" and "gave up after" in rows[broken][2]
    assert rows[slow][0] == "unknown"  # it reached the provider: never sent twice
    assert [m["to"] for m in fake.sent].count(slow) == 1
    assert [s for s, *_ in rows.values()].count("sent") == 3
    with app.session() as s:
        assert is_suppressed(s, app.settings, "sms", invalid)
        assert not is_suppressed(s, app.settings, "sms", broken)
        assert max(s.scalars(select(Delivery.attempts))) <= app.settings.sending.max_attempts


def test_bad_credentials_pause_the_campaign_and_blame_no_number(make_app):
    fake = FakeTwilio()
    with fake.serve() as url:
        app = make_app(_twilio_toml(fake, url, token="wrong-token"))
        cid = _setup(app, 5)
        _drain(app, rounds=2)
    assert fake.sent == []
    with app.session() as s:
        c = s.get(Campaign, cid)
        assert c.status == "paused" and "20003" in (c.status_reason or "")
        assert set(s.scalars(select(Delivery.state).where(Delivery.campaign_id == cid))) == {"queued"}
        assert not any(is_suppressed(s, app.settings, "sms", p) for p in s.scalars(select(Contact.phone)))


def test_the_webhook_provider_posts_json_with_the_idempotency_key(make_app):
    got: list[dict] = []

    async def hook(request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        assert request.headers["idempotency-key"] == body["idempotency_key"]
        got.append(body)
        if body["to"].endswith("0003"):
            return JSONResponse({"error": "unreachable"}, status_code=422)
        return JSONResponse({"id": f"msg-{len(got)}"})

    asgi = Starlette(routes=[Route("/healthz", lambda r: PlainTextResponse("ok")), Route("/send", hook, methods=["POST"])])
    with ServedApp(asgi) as url:
        app = make_app(f'[sms]\nprovider = "webhook"\nbase_url = "{url}/send"\nfrom_number = "+14155550000"\n')
        cid = _setup(app, 5)
        _drain(app, rounds=2)
    rows = _rows(app, cid)
    assert Counter(state for state, _, _ in rows.values()) == Counter({"sent": 4, "failed": 1})
    assert len(got) == 5 and len({g["idempotency_key"] for g in got}) == 5
    assert all(g["body"].rstrip().endswith("Reply STOP to opt out") for g in got)
