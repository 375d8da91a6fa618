"""SMS text rules: GSM-7 or UCS-2, segment counts, the opt-out line. Pure functions.

GSM 03.38: the basic table costs one septet per character, the extension table two (an
escape plus the character). One message holds 160 septets (GSM-7) or 70 UTF-16 units
(UCS-2); a concatenated message loses room to the UDH: 153 septets or 67 units a part.
"""

from __future__ import annotations

from typing import Literal

from campaigns.messages.invisible import strip_invisible

Encoding = Literal["GSM-7", "UCS-2"]

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")


def encoding_for(text: str) -> Encoding:
    """GSM-7 when every character is in the basic or extension table, else UCS-2."""
    for ch in text:
        if ch not in GSM7_BASIC and ch not in GSM7_EXTENSION:
            return "UCS-2"
    return "GSM-7"


def units(text: str, encoding: Encoding) -> int:
    """Septets (GSM-7, extension characters count twice) or UTF-16 code units (UCS-2)."""
    if encoding == "GSM-7":
        return len(text) + sum(1 for ch in text if ch in GSM7_EXTENSION)
    return len(text.encode("utf-16-le")) // 2


def segment_count(text: str, encoding: Encoding | None = None) -> int:
    """How many SMS parts the text is billed as (0 for an empty text)."""
    enc = encoding or encoding_for(text)
    n = units(text, enc)
    single, multi = (160, 153) if enc == "GSM-7" else (70, 67)
    if n == 0:
        return 0
    if n <= single:
        return 1
    return -(-n // multi)


def clean(body: str) -> str:
    """The SMS text without bidi overrides and zero-width characters (invisible, and each
    one turns a GSM-7 message into UCS-2, which more than halves a part)."""
    return strip_invisible(body)


class TooLong(ValueError):
    """A rendered SMS is over the configured number of segments."""


def check_segments(segments: int, max_segments: int) -> None:
    """TooLong when `segments` is over `max_segments` ([sms] max_segments)."""
    if segments > max_segments:
        raise TooLong(f"the SMS is {segments} segments, over [sms] max_segments = {max_segments}")


def with_opt_out(body: str, opt_out_text: str) -> str:
    """The body with the opt-out line appended (once; kept when the author already wrote it)."""
    body = body.rstrip()
    line = opt_out_text.strip()
    if not line or line.lower() in body.lower():
        return body
    return f"{body}\n{line}"
