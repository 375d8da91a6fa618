"""Transports behind one small interface. Channels know nothing of campaigns: they take a
rendered message and say what happened to it, and their own config objects
(scheduler/channels/config.py). scheduler/transport.py builds them from the settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

Outcome = Literal["sent", "transient", "hard_bounce", "policy", "failed", "unknown", "suppressed"]


@dataclass(frozen=True)
class OutgoingEmail:
    """A built message: envelope and bytes."""

    key: str  # idempotency key (the delivery id)
    mail_from: str
    to: str
    data: bytes
    message_id: str


@dataclass(frozen=True)
class OutgoingSms:
    """A text to one E.164 number."""

    key: str
    to: str
    body: str


@dataclass(frozen=True)
class SendResult:
    """What the transport said.

    transient: safe to retry (nothing was handed over, or the server said 4xx);
    hard_bounce: the address does not exist (5.1.x); policy: the server refuses us, not
    the address (5.7.x); failed: permanent for this message; unknown: it may or may not
    have been delivered (the connection died after the message was handed over).
    """

    outcome: Outcome
    provider_id: str | None = None
    detail: str | None = None


class Channel(Protocol):
    """A transport: `send` one message; `close` releases connections."""

    async def send(self, message: OutgoingEmail | OutgoingSms) -> SendResult: ...

    async def close(self) -> None: ...
