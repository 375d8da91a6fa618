"""What every endpoint checks before it acts: a bounded body, a signature, a form.

Anything a client sends that we refuse is a `BadRequest` (a 4xx with a short reason),
never an exception that becomes a 500. Signatures are compared as bytes, so a non-ASCII
signature is simply wrong.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import parse_qsl

from starlette.requests import Request

from campaigns.config import Settings
from campaigns.signing import same


class BadRequest(Exception):
    """A request we refuse: HTTP `status` and a one-line `reason` for the client."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it passes `limit` bytes: never read whole first."""
    declared = request.headers.get("content-length")
    if declared is not None:
        declared = declared.strip()
        if not (declared.isascii() and declared.isdigit()):  # '²'.isdigit() is True, int('²') fails
            raise BadRequest(400, "bad Content-Length")
        if len(declared) > 18 or int(declared) > limit:  # int() of 4,300+ digits raises
            raise BadRequest(413, f"body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(413, f"body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def form_fields(body: bytes) -> dict[str, str]:
    """An application/x-www-form-urlencoded body as a dict (last value wins); 400 if not UTF-8."""
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=200)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest(400, "bad form body") from None
    return dict(pairs)


async def form_any(request: Request, body: bytes) -> dict[str, str]:
    """A urlencoded or multipart form already read into `body` (RFC 8058 allows both)."""
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/"):
        return form_fields(body)

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, receive).form(max_files=0, max_fields=50)
    except Exception:  # python-multipart raises several types for a malformed body
        raise BadRequest(400, "bad form body") from None
    return {k: v for k, v in form.items() if isinstance(v, str)}


def webhook_signature(settings: Settings, body: bytes) -> str:
    """Hex HMAC-SHA256 of a webhook body with `[tracking] webhook_secret` (header X-Campaigns-Signature)."""
    keys = settings.tracking.webhook_keys
    if not keys:
        raise ValueError("no [tracking] webhook_secret is set")
    return hmac.new(keys[0], body, hashlib.sha256).hexdigest()


def check_webhook(settings: Settings, request: Request, body: bytes) -> None:
    """Refuse (403) a webhook body not signed with the current or a previous webhook secret."""
    keys = settings.tracking.webhook_keys
    if not keys:
        raise BadRequest(403, "webhooks are off: no [tracking] webhook_secret is set")
    if webhook_secret_is_link_key(settings):
        raise BadRequest(403, "webhooks are off: [tracking] webhook_secret is the secret key")
    given = request.headers.get("x-campaigns-signature", "")
    if not given or not any(same(hmac.new(k, body, hashlib.sha256).hexdigest(), given.strip().lower()) for k in keys):
        raise BadRequest(403, "bad signature")


def twilio_signature(token: str, url: str, params: dict[str, str]) -> str:
    """Twilio's X-Twilio-Signature: base64 HMAC-SHA1 of the URL plus sorted form pairs."""
    data = url + "".join(f"{k}{params[k]}" for k in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def public_url_of(settings: Settings, request: Request) -> str:
    """The URL the provider was told to call: `[tracking] public_url` + path (+ query), so a
    TLS proxy in front of us does not change what is signed."""
    url = settings.tracking.public_url.rstrip("/") + request.url.path
    return url + ("?" + request.url.query if request.url.query else "")


def inbound_sms_auth(settings: Settings) -> str | None:
    """How inbound texts are authenticated: 'twilio', 'webhook', or None (the endpoint is off)."""
    if settings.sms.provider == "webhook":
        return "webhook" if settings.tracking.webhook_keys else None
    return "twilio" if settings.sms.auth_token.get_secret_value() else None


def inbound_sms_off_reason(settings: Settings) -> str | None:
    """One line saying why /sms/inbound is off, or None when it is on."""
    if inbound_sms_auth(settings) is not None:
        return None
    need = "[tracking] webhook_secret" if settings.sms.provider == "webhook" else "[sms] auth_token"
    return f"inbound SMS (/sms/inbound) is off: set {need} so texts can be authenticated"


def insecure_public_url(settings: Settings) -> str | None:
    """One line when real mail would carry an http unsubscribe link, else None (RFC 8058 and
    the Gmail / Yahoo bulk-sender rules need https)."""
    if settings.sending.transport == "smtp" and not settings.tracking.public_url.lower().startswith("https://"):
        return (f"[tracking] public_url is {settings.tracking.public_url}: email over smtp needs an https "
                "public_url for one-click unsubscribe (RFC 8058)")
    return None


def missing_postal_address(settings: Settings) -> str | None:
    """One line when email over smtp would go out without the sender's postal address
    (`config check` refuses this; a sender started without it says so)."""
    if settings.sending.transport == "smtp" and not settings.sending.postal_address.strip():
        return ("[sending] postal_address is empty: marketing email over smtp must carry the sender's "
                "postal address (CAN-SPAM; templates show it in the footer)")
    return None


def webhook_secret_is_link_key(settings: Settings) -> bool:
    """A webhook secret that is also a link key lets whoever holds it (the shop platform)
    sign unsubscribe and click links: such webhooks are refused."""
    webhook = set(settings.tracking.webhook_keys)
    return bool(webhook) and bool(webhook & set(settings.signing_keys))


def startup_warnings(settings: Settings, serving: bool = True, sending: bool = True) -> list[str]:
    """What `daemon`, `worker`, `track serve` and `config check` warn about, one line each:
    `serving` the tracking endpoints, `sending` messages."""
    lines = [insecure_public_url(settings)]
    if sending:
        lines.append(missing_postal_address(settings))
    if webhook_secret_is_link_key(settings):
        lines.append("[tracking] webhook_secret is the secret key: webhooks are refused until it is a "
                     "different secret (whoever holds it could sign links)")
    if serving:
        lines.append(inbound_sms_off_reason(settings))
    return [line for line in lines if line]
