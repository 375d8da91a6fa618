"""The tracking HTTP app (Starlette). Endpoints are listed in docs/tracking.md.

Handlers verify signatures before touching the database, run the (synchronous) database
work in a thread, and never redirect anywhere a message was not built with.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import datetime
from xml.sax.saxutils import escape as xml_escape

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route

from campaigns import consent as ledger
from campaigns import links
from campaigns.config import Settings
from campaigns.context import App
from campaigns.errors import CampaignsError
from campaigns.timespec import utcnow
from campaigns.tracking import pages, responses

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_CACHE = {"Cache-Control": "no-store, no-cache, must-revalidate, private", "Pragma": "no-cache"}


def webhook_signature(settings: Settings, body: bytes) -> str:
    """Hex HMAC-SHA256 of a webhook body with the current secret key (header X-Campaigns-Signature)."""
    return hmac.new(settings.signing_key, body, hashlib.sha256).hexdigest()


def _signed(settings: Settings, body: bytes, given: str | None) -> bool:
    if not given:
        return False
    return any(hmac.compare_digest(hmac.new(k, body, hashlib.sha256).hexdigest(), given) for k in settings.signing_keys)


def twilio_signature(token: str, url: str, params: dict[str, str]) -> str:
    """Twilio's X-Twilio-Signature: base64 HMAC-SHA1 of the URL plus sorted form pairs."""
    data = url + "".join(f"{k}{params[k]}" for k in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def create_app(settings: Settings, app: App | None = None, clock: Callable[[], datetime] = utcnow) -> Starlette:
    """The ASGI app for these settings (`clock` is injectable so the demo can run on simulated time)."""
    a = app or App(settings)

    def tx(fn, *args):  # type: ignore[no-untyped-def]
        def run():  # type: ignore[no-untyped-def]
            with a.session() as session:
                return fn(session, *args)
        return run_in_threadpool(run)

    def client(request: Request) -> tuple[str | None, str | None]:
        return request.headers.get("user-agent"), request.client.host if request.client else None

    async def open_pixel(request: Request) -> Response:
        delivery_id = links.verify_open(settings, request.path_params["d"], request.path_params["sig"])
        if delivery_id is not None:
            ua, ip = client(request)
            await tx(lambda s: responses.record_open(s, settings, delivery_id, clock(), ua, ip))
        return Response(PIXEL, media_type="image/gif", headers=NO_CACHE)

    async def click(request: Request) -> Response:
        p = request.path_params
        ref = links.verify_click(settings, p["d"], p["link"], p["sig"])
        if ref is None:
            return HTMLResponse(pages.message("Link not valid", "This link is not valid."), status_code=404)
        ua, ip = client(request)
        url = await tx(lambda s: responses.record_click(s, settings, ref.delivery_id, ref.link_id, clock(), ua, ip))
        if url is None:
            return HTMLResponse(pages.message("Link not valid", "This link is not valid."), status_code=404)
        return RedirectResponse(url, status_code=302, headers=NO_CACHE)

    async def unsubscribe(request: Request) -> Response:
        delivery_id = links.verify_unsubscribe(settings, request.path_params["d"], request.path_params["sig"])
        if delivery_id is None:
            return HTMLResponse(pages.message("Link not valid", "This unsubscribe link is not valid."), status_code=404)
        if request.method == "GET":  # only asks: mail scanners follow GET links
            return HTMLResponse(pages.unsubscribe_form(settings.sending.from_name))
        form = await request.form()
        one_click = form.get("List-Unsubscribe") == "One-Click"
        if not one_click:
            return HTMLResponse(pages.message("Unsubscribe", "Nothing was changed."), status_code=400)
        ua, ip = client(request)
        found = await tx(lambda s: responses.unsubscribe(s, delivery_id, clock(), form.get("all") == "1", ip, ua))
        if not found:
            return HTMLResponse(pages.message("Link not valid", "This unsubscribe link is not valid."), status_code=404)
        return HTMLResponse(pages.message("Unsubscribed", "You will get no more marketing email from us."))

    async def confirm(request: Request) -> Response:
        token = request.path_params["token"]
        ua, ip = client(request)
        try:
            await tx(lambda s: ledger.confirm(s, token, ip=ip, user_agent=ua))
        except CampaignsError as exc:
            return HTMLResponse(pages.message("Confirmation", str(exc).capitalize() + "."), status_code=410)
        return HTMLResponse(pages.message("Confirmed", "Thank you: your subscription is confirmed."))

    async def inbound_sms(request: Request) -> Response:
        form = dict(await request.form())
        token = settings.sms.auth_token.get_secret_value()
        if token:
            expected = twilio_signature(token, str(request.url), {k: str(v) for k, v in form.items()})
            if not hmac.compare_digest(expected, request.headers.get("x-twilio-signature", "")):
                return PlainTextResponse("bad signature", status_code=403)
        sender, body, sid = str(form.get("From", "")), str(form.get("Body", "")), str(form.get("MessageSid", ""))
        if not sender or not sid:
            return PlainTextResponse("From and MessageSid are required", status_code=400)
        reply = await tx(lambda s: responses.inbound_sms(s, settings, sender, body, sid, clock()))
        twiml = "<Response>" + (f"<Message>{xml_escape(reply.text)}</Message>" if reply.text else "") + "</Response>"
        return Response('<?xml version="1.0" encoding="UTF-8"?>' + twiml, media_type="application/xml")

    async def bounce_webhook(request: Request) -> Response:
        body = await request.body()
        if not _signed(settings, body, request.headers.get("x-campaigns-signature")):
            return JSONResponse({"error": "bad signature"}, status_code=403)
        try:
            data = json.loads(body)
            kind = data.get("type", "bounce")
            if kind not in ("bounce", "complaint"):
                raise ValueError("type must be bounce or complaint")
            delivery_id = links.parse_return_path(settings, data["return_path"]) if data.get("return_path") else None
            event_id = str(data.get("id") or f"{data.get('return_path') or data.get('recipient')}:{kind}")
            at = datetime.fromisoformat(data["occurred_at"]) if data.get("occurred_at") else clock()
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return JSONResponse({"error": f"bad payload: {exc}"}, status_code=400)
        matched = await tx(lambda s: responses.bounce(s, settings, delivery_id=delivery_id, recipient=data.get("recipient"),
                                                      kind=kind, event_id=event_id, at=at, detail=data.get("detail")))
        return JSONResponse({"matched": matched})

    async def purchase_webhook(request: Request) -> Response:
        body = await request.body()
        if not _signed(settings, body, request.headers.get("x-campaigns-signature")):
            return JSONResponse({"error": "bad signature"}, status_code=403)
        try:
            payload = json.loads(body)
            if not isinstance(payload, dict):
                raise ValueError("expected a JSON object")
            created, order_id = await tx(lambda s: responses.purchase_webhook(s, settings, payload))
        except (ValueError, CampaignsError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"order_id": order_id, "created": created}, status_code=201 if created else 200)

    async def health(_request: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(routes=[
        Route("/o/{d}/{sig}", open_pixel, methods=["GET"]),
        Route("/c/{d}/{link}/{sig}", click, methods=["GET"]),
        Route("/u/{d}/{sig}", unsubscribe, methods=["GET", "POST"]),
        Route("/confirm/{token}", confirm, methods=["GET"]),
        Route("/sms/inbound", inbound_sms, methods=["POST"]),
        Route("/webhooks/bounce", bounce_webhook, methods=["POST"]),
        Route("/webhooks/purchase", purchase_webhook, methods=["POST"]),
        Route("/healthz", health, methods=["GET"]),
    ])
