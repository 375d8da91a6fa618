"""Transports behind one small interface. Channels know nothing of campaigns: they take a
rendered message and say what happened to it, and their own config objects
(scheduler/channels/config.py). scheduler/transport.py builds them from the settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
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
    # Asked right before hand-over (after any wait for a connection): False means the
    # recipient said stop meanwhile, and the message is not handed over ("suppressed").
    still_wanted: Callable[[], bool] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class OutgoingSms:
    """A text to one E.164 number."""

    key: str
    to: str
    body: str
    still_wanted: Callable[[], bool] | None = field(default=None, compare=False, repr=False)


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


STOPPED = SendResult("suppressed", None, "the recipient said stop before hand-over")


def withdrawn(message: OutgoingEmail | OutgoingSms) -> bool:
    """True when the message must not be handed over any more (see `still_wanted`)."""
    return message.still_wanted is not None and not message.still_wanted()
