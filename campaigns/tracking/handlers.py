"""One small class per endpoint: `parse` checks the request (signature, size, fields) and
raises `BadRequest` for anything wrong; `act` does the database work in a thread; the
base class turns a refusal into a 4xx with a one-line reason. Nothing a client sends can
reach `act` unchecked, so no unauthenticated request can make a 500.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import datetime
from typing import Any
from xml.sax.saxutils import escape as xml_escape

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)

from campaigns.audience import consent as ledger
from campaigns.audience import custom_events
from campaigns.config import Settings
from campaigns.context import App
from campaigns.errors import CampaignsError, RowError
from campaigns.messages import links
from campaigns.signing import same
from campaigns.tracking import bounces, guard, pages, payloads, responses, sms_inbound, subscribe
from campaigns.tracking.group_commit import GroupCommit

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_CACHE = {"Cache-Control": "no-store, no-cache, must-revalidate, private", "Pragma": "no-cache"}


class Handler:
    """Shared plumbing: settings, a transaction in a worker thread (or the group commit's
    writer, for clicks and opens), the injectable clock."""

    def __init__(self, settings: Settings, app: App, clock: Callable[[], datetime], writes: GroupCommit) -> None:
        self.settings, self.app, self.clock = settings, app, clock
        self.writes = writes  # the click and open writes: one writer for the app's endpoints (create_app)

    async def respond(self, request: Request) -> Response:
        """The endpoint: a refusal becomes a 4xx with its reason."""
        try:
            return await self.handle(request)
        except guard.BadRequest as exc:
            return self.refuse(exc)

    async def handle(self, request: Request) -> Response:
        """Parse, act, answer."""
        raise NotImplementedError

    def refuse(self, exc: guard.BadRequest) -> Response:
        """How this endpoint says no."""
        return PlainTextResponse(exc.reason, status_code=exc.status)

    def tx(self, fn: Callable[[Session], Any]) -> Any:
        """Run `fn(session)` in one transaction on a worker thread (awaitable)."""
        def run() -> Any:
            with self.app.session() as session:
                return fn(session)
        return run_in_threadpool(run)

    async def body(self, request: Request) -> bytes:
        """The request body, capped before it is read."""
        return await guard.read_body(request, self.settings.tracking.max_body_bytes)

    @staticmethod
    def client(request: Request) -> tuple[str | None, str | None]:
        """(user agent, ip) of the caller."""
        return request.headers.get("user-agent"), request.client.host if request.client else None


class PageHandler(Handler):
    """Endpoints a person sees in a browser: refusals are small HTML pages."""

    title = "Link not valid"

    def refuse(self, exc: guard.BadRequest) -> Response:
        return HTMLResponse(pages.message(self.title, exc.reason), status_code=exc.status)


class JsonHandler(Handler):
    """Webhooks: refusals are JSON `{"error": reason}`."""

    def refuse(self, exc: guard.BadRequest) -> Response:
        return JSONResponse({"error": exc.reason}, status_code=exc.status)


class OpenPixel(Handler):
    """GET /o/<d>/<sig>: always the pixel; an open is recorded for a genuine URL."""

    async def handle(self, request: Request) -> Response:
        delivery_id = links.verify_open(self.settings, request.path_params["d"], request.path_params["sig"])
        if delivery_id is not None:
            ua, ip = self.client(request)
            await self.writes.run(lambda s: responses.record_open(s, self.settings, delivery_id, self.clock(), ua, ip))
        return Response(PIXEL, media_type="image/gif", headers=NO_CACHE)


class Click(PageHandler):
    """GET /c/<d>/<link>/<sig>: redirect to the registered URL, never anywhere else."""

    async def handle(self, request: Request) -> Response:
        p = request.path_params
        ref = links.verify_click(self.settings, p["d"], p["link"], p["sig"])
        if ref is None:
            raise guard.BadRequest(404, "This link is not valid.")
        ua, ip = self.client(request)
        url = await self.writes.run(lambda s: responses.record_click(s, self.settings, ref.delivery_id, ref.link_id,
                                                                     self.clock(), ua, ip))
        if url is None:
            raise guard.BadRequest(404, "This link is not valid.")
        return RedirectResponse(url, status_code=302, headers=NO_CACHE)


class Unsubscribe(PageHandler):
    """/u/<d>/<sig>: GET asks (scanners follow GETs) and offers this topic or everything; POST acts.

    The POST needs `List-Unsubscribe=One-Click` (RFC 8058; the page's forms send it too). With
    nothing else it is the one-click unsubscribe: the message's topic when it has one, else email
    (docs/tracking.md says why); the form adds `scope=topic|everything` and `all=1`. The page's
    second form lists every topic (`scope=preferences`, a `topic_<id>=1` per topic kept): the
    recipient leaves or rejoins topics, the signed link being the only key."""

    async def handle(self, request: Request) -> Response:
        delivery_id = links.verify_unsubscribe(self.settings, request.path_params["d"], request.path_params["sig"])
        if delivery_id is None:
            raise guard.BadRequest(404, "This unsubscribe link is not valid.")
        if request.method == "GET":
            target = await self.tx(lambda s: responses.unsubscribe_target(s, delivery_id, self.clock()))
            if target is None:
                raise guard.BadRequest(404, "This unsubscribe link is not valid.")
            return HTMLResponse(pages.unsubscribe_form(self.settings.sending.from_name, target.topic, target.description,
                                                       target.topics))
        form = await guard.form_any(request, await self.body(request))
        scope = form.get("scope", responses.ONE_CLICK)
        if scope == responses.PREFERENCES and form.get("List-Unsubscribe") == "One-Click":
            return await self._save_topics(request, delivery_id, form)
        if form.get("List-Unsubscribe") != "One-Click" or scope not in (responses.TOPIC, responses.EVERYTHING, responses.ONE_CLICK):
            raise guard.BadRequest(400, "Nothing was changed.")
        ua, ip = self.client(request)
        try:
            done = await self.tx(lambda s: responses.unsubscribe(s, delivery_id, self.clock(), form.get("all") == "1", ip, ua,
                                                                 scope=scope))
        except CampaignsError:
            raise guard.BadRequest(400, "Nothing was changed.") from None
        if done is None:
            raise guard.BadRequest(404, "This unsubscribe link is not valid.")
        if done.topic is not None:
            return HTMLResponse(pages.message("Unsubscribed", f"You will get no more \u201c{done.topic}\u201d email from us; "
                                                              "other messages you signed up for still come."))
        what = "marketing messages" if len(done.channels) > 1 else "marketing email"
        return HTMLResponse(pages.message("Unsubscribed", f"You will get no more {what} from us."))


    async def _save_topics(self, request: Request, delivery_id: int, form: dict[str, str]) -> Response:
        wanted = {int(k[6:]) for k, v in form.items()
                  if k.startswith("topic_") and k[6:].isascii() and k[6:].isdigit() and len(k) <= 24 and v == "1"}
        ua, ip = self.client(request)
        saved = await self.tx(lambda s: responses.save_topics(s, delivery_id, self.clock(), wanted, ip, ua))
        if saved is None:
            raise guard.BadRequest(404, "This unsubscribe link is not valid.")
        return HTMLResponse(pages.message("Preferences saved", "Your topics are saved; the page you came from lists them."))


class Confirm(PageHandler):
    """/confirm/<token>: GET shows a button (link scanners follow GETs); only the POST confirms."""

    title = "Confirmation"

    async def handle(self, request: Request) -> Response:
        token = request.path_params["token"]
        if not token.isascii() or len(token) > 100:
            raise guard.BadRequest(404, "This confirmation link is not valid.")
        if request.method == "GET":
            return HTMLResponse(pages.confirm_form(self.settings.sending.from_name))
        await self.body(request)
        ua, ip = self.client(request)
        try:
            await self.tx(lambda s: ledger.confirm(s, token, ip=ip, user_agent=ua, at=self.clock()))
        except CampaignsError as exc:
            raise guard.BadRequest(410, str(exc).capitalize() + ".") from None
        return HTMLResponse(pages.message("Confirmed", "Thank you: your subscription is confirmed."))


class InboundSms(Handler):
    """POST /sms/inbound: acts only on a text the provider signed (Twilio or webhook HMAC)."""

    async def handle(self, request: Request) -> Response:
        mode = guard.inbound_sms_auth(self.settings)
        if mode is None:
            raise guard.BadRequest(404, guard.inbound_sms_off_reason(self.settings) or "off")
        body = await self.body(request)
        if mode == "webhook":
            guard.check_webhook(self.settings, request, body)
            msg = payloads.parse(payloads.InboundSmsPayload, body)
            reply = await self._act(msg.from_, msg.body, msg.id)
            return JSONResponse({"reply": reply.text})
        form = guard.form_fields(body)
        token = self.settings.sms.auth_token.get_secret_value()
        expected = guard.twilio_signature(token, guard.public_url_of(self.settings, request), form)
        if not same(expected, request.headers.get("x-twilio-signature", "")):
            raise guard.BadRequest(403, "bad signature")
        sender, text, sid = form.get("From", ""), form.get("Body", ""), form.get("MessageSid", "")
        if not sender or not sid or len(sender) > 40 or len(sid) > 200 or "\x00" in text + sender + sid:
            raise guard.BadRequest(400, "From and MessageSid are required")
        reply = await self._act(sender, text[:1600], sid)
        twiml = "<Response>" + (f"<Message>{xml_escape(reply.text)}</Message>" if reply.text else "") + "</Response>"
        return Response('<?xml version="1.0" encoding="UTF-8"?>' + twiml, media_type="application/xml")

    async def _act(self, sender: str, text: str, sid: str) -> sms_inbound.SmsReply:
        reply: sms_inbound.SmsReply = await self.tx(
            lambda s: sms_inbound.handle(s, self.settings, sender, text, sid, self.clock()))
        return reply


class BounceWebhook(JsonHandler):
    """POST /webhooks/bounce: acted on only when it names a message we sent."""

    async def handle(self, request: Request) -> Response:
        body = await self.body(request)
        guard.check_webhook(self.settings, request, body)
        data = payloads.parse(payloads.BouncePayload, body)
        if not data.return_path and not data.message_id:
            return JSONResponse({"matched": False, "reason": "no return_path or message_id of ours"})
        at = data.occurred_at or self.clock()

        def act(s: Session) -> bool:
            target = bounces.match(s, self.settings, return_path=data.return_path, message_id=data.message_id)
            if target is None:
                return False
            bounces.record(s, self.settings, target, data.type, at=at, source="webhook", detail=data.detail)
            return True

        return JSONResponse({"matched": await self.tx(act)})


class PurchaseWebhook(JsonHandler):
    """POST /webhooks/purchase: creates the order once and attributes it."""

    async def handle(self, request: Request) -> Response:
        body = await self.body(request)
        guard.check_webhook(self.settings, request, body)
        row = payloads.purchase_fields(body)
        try:
            created, order_id = await self.tx(lambda s: responses.purchase_webhook(s, self.settings, row))
        except CampaignsError as exc:
            raise guard.BadRequest(400, str(exc)[:300]) from None
        return JSONResponse({"order_id": order_id, "created": created}, status_code=201 if created else 200)


class EventWebhook(JsonHandler):
    """POST /webhooks/event: a custom event, recorded once per id (a retried delivery changes nothing)."""

    async def handle(self, request: Request) -> Response:
        body = await self.body(request)
        guard.check_webhook(self.settings, request, body)
        row = payloads.event_fields(body)
        try:
            data = custom_events.parse_event_row(row, 1, self.settings, self.clock(), default_now=True)
        except RowError as err:
            raise guard.BadRequest(400, f"bad payload: {err.field or 'body'}: {err.reason}"[:300]) from None

        def act(s: Session) -> tuple[list[int], int, list[RowError]]:
            done, errors = custom_events.record(s, [data], "webhook")
            return done.created, done.unchanged, errors

        created, _unchanged, errors = await self.tx(act)
        if errors:
            raise guard.BadRequest(400, f"{errors[0].field}: {errors[0].reason}"[:300])
        return JSONResponse({"created": bool(created), "id": created[0] if created else None},
                            status_code=201 if created else 200)


class SubscribeWebhook(JsonHandler):
    """POST /webhooks/subscribe: a signed signup creates the contact and consent through the ledger."""

    async def handle(self, request: Request) -> Response:
        body = await self.body(request)
        guard.check_webhook(self.settings, request, body)
        data = payloads.parse(payloads.SubscribePayload, body)
        at = data.occurred_at or self.clock()
        try:
            done = await self.tx(lambda s: subscribe.subscribe(s, self.settings, data, at))
        except CampaignsError as exc:
            raise guard.BadRequest(400, str(exc)[:300]) from None
        return JSONResponse({"contact_id": done.contact_id, "action": done.action, "created": done.created},
                            status_code=200 if done.action == "unchanged" else 201)


class Health(Handler):
    """GET /healthz."""

    async def handle(self, request: Request) -> Response:
        return PlainTextResponse("ok")
