"""The tracking HTTP app (Starlette). Endpoints are listed in docs/tracking.md.

Each endpoint is a small handler class (tracking/handlers.py) that checks the request
before touching the database, runs the (synchronous) database work in a thread, and
never redirects anywhere a message was not built with.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from starlette.applications import Starlette
from starlette.routing import Route

from campaigns.config import Settings
from campaigns.context import App
from campaigns.timespec import utcnow
from campaigns.tracking import handlers as h
from campaigns.tracking.group_commit import GroupCommit
from campaigns.tracking.guard import twilio_signature, webhook_signature

__all__ = ["create_app", "twilio_signature", "webhook_signature"]


def create_app(settings: Settings, app: App | None = None, clock: Callable[[], datetime] = utcnow) -> Starlette:
    """The ASGI app for these settings (`clock` is injectable so the demo can run on simulated time)."""
    a = app or App(settings)
    writes = GroupCommit(a)  # clicks and opens: many requests to one transaction (tracking/group_commit.py)

    def route(path: str, handler: type[h.Handler], *methods: str) -> Route:
        return Route(path, handler(settings, a, clock, writes).respond, methods=list(methods))

    return Starlette(routes=[
        route("/o/{d}/{sig}", h.OpenPixel, "GET"),
        route("/c/{d}/{link}/{sig}", h.Click, "GET"),
        route("/u/{d}/{sig}", h.Unsubscribe, "GET", "POST"),
        route("/confirm/{token}", h.Confirm, "GET", "POST"),
        route("/sms/inbound", h.InboundSms, "POST"),
        route("/webhooks/bounce", h.BounceWebhook, "POST"),
        route("/webhooks/purchase", h.PurchaseWebhook, "POST"),
        route("/webhooks/subscribe", h.SubscribeWebhook, "POST"),
        route("/webhooks/event", h.EventWebhook, "POST"),
        route("/healthz", h.Health, "GET"),
    ])
