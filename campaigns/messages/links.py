"""Signed URLs a message carries: click, open pixel, unsubscribe, VERP return path.

Click links carry no destination: they name a registered link (`tracked_link`) and the
delivery, signed together, so the click endpoint can only redirect to a URL some message
was built with, and the links stay short enough for SMS. Ids are base-36 to keep them
short. Verification accepts previous keys, so a key rotation does not break old mail.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from campaigns.config import Settings
from campaigns.signing import sign, verify

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


@lru_cache(maxsize=1024)  # a message asks for its delivery's id about seven times
def b36(n: int) -> str:
    """A non-negative int in base 36."""
    if n < 0:
        raise ValueError("negative id")
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = _ALPHABET[r] + out
        if n == 0:
            return out


def from_b36(text: str) -> int | None:
    """Parse base 36; None for anything that is not a short base-36 number."""
    if not text or len(text) > 13 or any(c not in _ALPHABET for c in text):
        return None
    return int(text, 36)


def _base(settings: Settings) -> str:
    return settings.tracking.public_url.rstrip("/")


def click_url(settings: Settings, delivery_id: int, link_id: int) -> str:
    """https://track/c/<delivery>/<link>/<sig>."""
    d, link = b36(delivery_id), b36(link_id)
    return f"{_base(settings)}/c/{d}/{link}/{sign(settings, 'click', f'{d}.{link}', 9)}"


def open_url(settings: Settings, delivery_id: int) -> str:
    """The open pixel: https://track/o/<delivery>/<sig>.gif."""
    d = b36(delivery_id)
    return f"{_base(settings)}/o/{d}/{sign(settings, 'open', d, 9)}.gif"


def unsubscribe_url(settings: Settings, delivery_id: int) -> str:
    """One-click unsubscribe (GET shows a page, POST unsubscribes): https://track/u/<delivery>/<sig>."""
    d = b36(delivery_id)
    return f"{_base(settings)}/u/{d}/{sign(settings, 'unsubscribe', d, 12)}"


def confirm_url(settings: Settings, token: str) -> str:
    """Double opt-in confirmation link (the token is its own secret)."""
    return f"{_base(settings)}/confirm/{token}"


def message_id(settings: Settings, delivery_id: int, domain: str) -> str:
    """The Message-ID of a delivery's email: <d.sig@domain>, so a report quoting it names its message."""
    d = b36(delivery_id)
    return f"<{d}.{sign(settings, 'message-id', d, 6)}@{domain}>"


def parse_message_id(settings: Settings, value: str) -> int | None:
    """The delivery id from a Message-ID we generated (<d.sig@domain>), else None."""
    local = value.strip().strip("<>").rpartition("@")[0]
    d, _, sig = local.partition(".")
    delivery_id = from_b36(d)
    if delivery_id is None or not verify(settings, "message-id", d, sig, 6):
        return None
    return delivery_id


def return_path(settings: Settings, delivery_id: int) -> str:
    """VERP envelope sender: bounces+<delivery>-<sig>@domain, so a DSN names its message."""
    d = b36(delivery_id)
    domain = settings.sending.return_path_domain or settings.sending.from_address.rpartition("@")[2]
    return f"bounces+{d}-{sign(settings, 'verp', d, 6)}@{domain}"


@dataclass(frozen=True)
class ClickRef:
    """A verified click link's parts."""

    delivery_id: int
    link_id: int


def verify_click(settings: Settings, d: str, link: str, sig: str) -> ClickRef | None:
    """The click's ids when the signature is good; None for anything tampered."""
    delivery_id, link_id = from_b36(d), from_b36(link)
    if delivery_id is None or link_id is None or not verify(settings, "click", f"{d}.{link}", sig, 9):
        return None
    return ClickRef(delivery_id, link_id)


def verify_open(settings: Settings, d: str, sig: str) -> int | None:
    """The delivery id of a genuine open pixel URL, else None."""
    delivery_id = from_b36(d)
    if delivery_id is None or not verify(settings, "open", d, sig.removesuffix(".gif"), 9):
        return None
    return delivery_id


def verify_unsubscribe(settings: Settings, d: str, sig: str) -> int | None:
    """The delivery id of a genuine unsubscribe URL, else None."""
    delivery_id = from_b36(d)
    if delivery_id is None or not verify(settings, "unsubscribe", d, sig, 12):
        return None
    return delivery_id


def parse_return_path(settings: Settings, address: str) -> int | None:
    """The delivery id from a VERP address (bounces+<d>-<sig>@...), else None."""
    local = address.strip().strip("<>").rpartition("@")[0]
    if not local.startswith("bounces+"):
        return None
    d, _, sig = local[len("bounces+"):].partition("-")
    delivery_id = from_b36(d)
    if delivery_id is None or not verify(settings, "verp", d, sig, 6):
        return None
    return delivery_id
