"""Issue 17: an unauthenticated request never gets a 500. Every route of the tracking app,
with odd methods, huge and odd paths, bad encodings and hostile headers, answers < 500."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterable
from typing import Any

import httpx

from campaigns.tracking import responses
from campaigns.tracking.app import create_app

METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "PROPFIND")
SEGMENTS = ("1", "0", "-1", "99999999999999999999999999", "%C3%A9", "%FF%FE", "%00", "..%2F..%2Fetc",
            "x" * 5000, "1.gif", "%F0%9F%98%80", "AAAA", "%E2%80%AE", "1e3", " ", "%20", "+")
BODIES = (b"", b"\xff\xfe\x00", b"{", b"[" * 5000, b'{"type": "bounce"}', b"a=" + b"%" * 100,
          b"--zz\r\nbroken", b"\x00" * 100)
HEADERS = ({}, {"Content-Type": "multipart/form-data; boundary=zz"},
           {"Content-Type": "application/x-www-form-urlencoded"}, {"Content-Type": "application/json; charset=latin-9"},
           {"X-Campaigns-Signature": "\u00e9".encode()}, {"X-Twilio-Signature": "Zm9v\u00e9".encode()},
           {"Content-Length": "abc"}, {"Content-Type": "multipart/form-data"}, {"User-Agent": b"\x1b[2J\xff" * 1000},
           {"X-Campaigns-Signature": "0" * 64}, {"Content-Length": b"\xb2"}, {"Content-Length": "9" * 5000})


def _answers(app: Any, calls: Iterable[tuple[str, str, dict[str, Any]]]) -> list[tuple[tuple[str, str, dict[str, Any]], int, str]]:
    """Each (method, path, request options) sent to the app in process, with the status and
    the start of the body; an exception escaping the app is a 500, as a server would send.
    (httpx's ASGI transport on one event loop: Starlette's TestClient wants `httpx2` now.)"""

    async def go() -> list[tuple[tuple[str, str, dict[str, Any]], int, str]]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            out = []
            for call in calls:
                method, path, options = call
                r = await client.request(method, path, **options)
                out.append((call, r.status_code, r.text[:200]))
            return out

    return asyncio.run(go())


def _paths(app) -> list[str]:  # type: ignore[no-untyped-def]
    out = []
    for route in app.routes:
        names = route.path.count("{")
        for combo in itertools.islice(itertools.product(SEGMENTS, repeat=names), 60):
            path = route.path
            for seg in combo:
                path = path.replace(path[path.index("{"):path.index("}") + 1], seg, 1)
            out.append(path)
    return out


def test_no_request_to_any_route_is_a_500(shop) -> None:
    app = create_app(shop.app.settings, shop.app)
    # the routes' own patterns filled with odd segments, then real signed links, intact and altered
    links = [u.split("127.0.0.1", 1)[1].split("/", 1)[1] for kind in shop.links().values() for u in kind]
    mutated = ["/" + u[:-1] + ("A" if u[-1] != "A" else "B") for u in links] + ["/" + u + "/x" for u in links]
    paths = [*_paths(app), *["/" + u for u in links], *mutated, "/" + "a" * 60000, "/o/1/" + "%C3%A9" * 9000,
             "/%", "/o/%", "/c/%ZZ/1/2", "/healthz/..", "//o/1/x"]
    calls = []
    for n, (path, method) in enumerate(itertools.product(paths, METHODS)):
        for k in (n, n + 5):  # two of the header sets and bodies, rotating
            body, headers = BODIES[k % len(BODIES)], HEADERS[k % len(HEADERS)]
            calls.append((method, path, {"content": body if method not in ("GET", "HEAD") else None, "headers": headers}))
    failures = [(m, p[:80], o["headers"], (o["content"] or b"")[:20], status, text)
                for (m, p, o), status, text in _answers(app, calls) if status >= 500]
    assert not failures, (len(calls), failures[:20])


ODD_VALUES = (None, True, 1e308, -1, 10**30, "#99999999999999999999999", "#\u00b2", "\u0661\u0662", "", "\x00",
              "x" * 5000, "\u202e\u200b", [], {}, {"a": {"b": [1]}}, {"a": "\x00"}, {"\x00": 1},
              "2026-11-01T10:00:00", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "+14155550100",
              "ann@example.com", "a@b", "NaN", "1e999", "-0", "Robert'); DROP TABLE contacts;--")
FIELDS = ("type", "return_path", "message_id", "recipient", "id", "detail", "occurred_at", "order_id", "external_id",
          "email", "contact", "amount", "currency", "utm_campaign", "name", "properties", "phone", "channel",
          "channels", "source", "text", "topics", "from", "body")


def test_signed_odd_payloads_to_every_webhook_are_never_a_500(shop) -> None:
    """Signed bodies (the provider holds the secret, but its data is still input): every
    known field set to each odd value, plus odd JSON documents, on every webhook."""
    from campaigns.tracking.app import webhook_signature

    app = create_app(shop.app.settings, shop.app)
    docs = [b"", b"null", b"1", b'"x"', b"[]", b"{}", b"NaN", b'{"a": NaN}', b'{"a": 1e999}', b"\xff\xfe{}",
            b'{"email": "ann@example.com", "email": 3}', b'\xef\xbb\xbf{"type": "bounce"}']
    for field, value in itertools.product(FIELDS, ODD_VALUES):
        docs.append(json.dumps({field: value, "email": "p0@example.com", "name": "signup",
                                "source": "form", "order_id": "A1", "amount": "1"}).encode())
    calls = [("POST", path, {"content": body, "headers": {"X-Campaigns-Signature": webhook_signature(shop.app.settings, body)}})
             for path in ("/webhooks/bounce", "/webhooks/purchase", "/webhooks/event", "/webhooks/subscribe") for body in docs]
    failures = [(p, o["content"][:120], status, text) for (_m, p, o), status, text in _answers(app, calls) if status >= 500]
    assert not failures, failures[:20]


def test_odd_numbers_in_the_preference_centre_form_are_never_a_500(shop) -> None:
    unsub = shop.links()["unsubscribe"][0].split("127.0.0.1", 1)[1].split("/", 1)[1]
    app = create_app(shop.app.settings, shop.app)
    fields = ("topic_\u00b2", "topic_99999999999999999999999", "topic_\u0661", "topic_-1", "topic_" + "9" * 5000)
    calls = [("POST", "/" + unsub, {"data": {field: "1", "scope": responses.PREFERENCES, "List-Unsubscribe": "One-Click"}})
             for field in fields]
    for (_m, _p, options), status, text in _answers(app, calls):
        assert status < 500, (next(iter(options["data"]))[:40], status, text)
