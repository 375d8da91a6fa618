"""Webhook payloads, validated field by field before anything acts on them.

Parsing is pydantic's JSON parser (strict types, a nesting limit, so a 100,000-deep
document is a 400 rather than a RecursionError); each model refuses NUL characters and
naive times. A refusal is a `BadRequest` naming the field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from campaigns.tracking.guard import BadRequest

_Text = Field(default=None, max_length=2000)


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, v: Any) -> Any:
        if isinstance(v, str) and ("\x00" in v or any(ord(c) < 32 and c not in "\t\r\n" for c in v)):
            raise ValueError("control characters are not allowed")
        return v


class BouncePayload(_Payload):
    """POST /webhooks/bounce."""

    type: Literal["bounce", "complaint"] = "bounce"
    return_path: str | None = Field(default=None, max_length=320)
    message_id: str | None = Field(default=None, max_length=500)
    recipient: str | None = Field(default=None, max_length=320)
    id: str | None = Field(default=None, max_length=200)
    detail: str | None = _Text
    occurred_at: AwareDatetime | None = None

    @field_validator("recipient")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v is not None and (v.count("@") != 1 or any(c.isspace() for c in v)):
            raise ValueError("not an email address")
        return v


class InboundSmsPayload(_Payload):
    """POST /sms/inbound from the webhook SMS provider (JSON, signed like the other webhooks)."""

    from_: str = Field(alias="from", min_length=1, max_length=40)
    body: str = Field(default="", max_length=1600)
    id: str = Field(min_length=1, max_length=200)


class SubscribePayload(_Payload):
    """POST /webhooks/subscribe: a signup form's consent (one address, one channel)."""

    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=40)
    contact: str | None = Field(default=None, min_length=1, max_length=320)
    channel: Literal["email", "sms"]
    source: str = Field(min_length=1, max_length=100)
    text: str | None = _Text
    occurred_at: AwareDatetime | None = None
    id: str | None = Field(default=None, min_length=1, max_length=64)

    @field_validator("source")
    @classmethod
    def _said(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("say where this consent came from (e.g. 'shop signup form')")
        return v.strip()


def parse(model: type[_Payload], body: bytes) -> Any:
    """`body` validated as `model`; BadRequest(400) naming the first bad field."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise BadRequest(400, f"bad payload: {where}: {first['msg']}"[:200]) from None
    except (RecursionError, ValueError):
        raise BadRequest(400, "bad payload: not a JSON object") from None


def purchase_fields(body: bytes) -> dict[str, str]:
    """A purchase webhook's known fields as text (numbers allowed, nothing nested), or BadRequest."""
    import json

    try:
        data = json.loads(body)
    except (RecursionError, ValueError):
        raise BadRequest(400, "bad payload: not JSON") from None
    if not isinstance(data, dict):
        raise BadRequest(400, "bad payload: expected a JSON object")
    row: dict[str, str] = {}
    for key in ("order_id", "external_id", "email", "contact", "amount", "currency", "occurred_at", "utm_campaign"):
        value = data.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise BadRequest(400, f"bad payload: {key}: expected text")
        text = str(value)
        if len(text) > 500 or any(ord(c) < 32 for c in text):
            raise BadRequest(400, f"bad payload: {key}: too long or has control characters")
        row[key] = text
    return row


def event_fields(body: bytes) -> dict[str, Any]:
    """A custom event webhook's body as a JSON object (its fields are checked by
    campaigns/audience/custom_events.parse_event_row, the same rules as an import), or BadRequest."""
    import json

    try:
        data = json.loads(body)
    except (RecursionError, ValueError):
        raise BadRequest(400, "bad payload: not JSON") from None
    if not isinstance(data, dict):
        raise BadRequest(400, "bad payload: expected a JSON object")
    return data
