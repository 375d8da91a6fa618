"""RFC 5322 message bytes from a fixed skeleton plus per-recipient parts.

Building a MIME tree per recipient is the send path's slowest step (DESIGN.md, practical
notes), so the fixed headers are encoded once per sender and each message is assembled
from bytes: quoted-printable parts via binascii, encoded words via `email.header`. Every
header value is checked for CR/LF and other control characters first: nothing a template
or a contact field produces can add a header or a body.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from email.header import Header
from email.utils import formataddr
from functools import lru_cache

from campaigns.errors import InputError
from campaigns.messages.invisible import strip_invisible

# Control characters (and the Unicode line separators some parsers honour) never belong
# in a header value; TAB is allowed only as folding whitespace, which we add ourselves.
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
_ADDRESS = re.compile(r"^[^\s<>(),;:\"\[\]\\@]+@[A-Za-z0-9.-]+$")
MAX_SUBJECT = 998
CRLF = b"\r\n"


class HeaderError(InputError):
    """A header value would inject headers or is not a valid address."""


def check_header(name: str, value: str) -> str:
    """The value, or HeaderError when it carries CR, LF or another control character."""
    if _FORBIDDEN.search(value):
        raise HeaderError(f"{name}: contains a line break or control character; refused (header injection)")
    return value


def check_address(name: str, value: str) -> str:
    """A bare ASCII address fit for a header and an SMTP command (IDNA domain), else HeaderError."""
    check_header(name, value)
    local, _, domain = value.rpartition("@")
    if not local.isascii():
        raise HeaderError(f"{name}: '{value[:80]}' has a non-ASCII mailbox name (SMTPUTF8), "
                          "which this sender does not support")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise HeaderError(f"{name}: '{value[:80]}' has an invalid domain") from None
    value = f"{local}@{domain}"
    if not _ADDRESS.match(value):
        raise HeaderError(f"{name}: '{value[:80]}' is not a plain email address")
    return value


def _encoded(name: str, value: str) -> bytes:
    """`Name: value` folded, with RFC 2047 encoded words when the value is not ASCII
    (bidi overrides and zero-width characters removed)."""
    value = strip_invisible(value)
    check_header(name, value)
    if value.isascii() and len(name) + len(value) + 2 <= 78:
        return f"{name}: {value}".encode("ascii") + CRLF
    charset = "us-ascii" if value.isascii() else "utf-8"
    folded = Header(value, charset=charset, header_name=name, maxlinelen=78).encode(linesep="\r\n")
    return f"{name}: {folded}".encode("ascii") + CRLF


def mailbox(name: str, display: str, address: str) -> str:
    """`Display <address>` with the display name quoted or encoded as needed."""
    display = strip_invisible(display)
    check_header(name, display)
    address = check_address(name, address)
    return formataddr((display, address), charset="utf-8") if display else address


@dataclass(frozen=True)
class Skeleton:
    """The bytes every message from one sender shares."""

    fixed_headers: bytes  # From, Reply-To, MIME-Version
    boundary: str


@lru_cache(maxsize=64)
def skeleton(from_name: str, from_address: str, reply_to: str = "") -> Skeleton:
    """Encode the sender's headers once; HeaderError for an injected from-name or address."""
    head = _encoded("From", mailbox("From", from_name, from_address))
    if reply_to:
        head += _encoded("Reply-To", mailbox("Reply-To", "", reply_to))
    head += b"MIME-Version: 1.0" + CRLF
    # "=_" cannot occur in quoted-printable output, so this boundary never collides with a body.
    return Skeleton(head, "==_campaigns_alt_=")


# Quoted-printable starts afresh at every line break (soft breaks and the escaping of
# trailing blanks are within a line), so a part can be encoded line by line and the lines
# joined. The lines of a campaign's messages mostly repeat (only those with a tracked link
# or a name differ), so encoded lines are kept: binascii's encoder was about a tenth of the
# sender's time per message. The cache is emptied when it passes _QP_LINES lines or
# _QP_CHARS characters.
_QP: dict[str, bytes] = {}
_QP_SOFT: dict[str, bytes] = {}  # pieces of lines followed by a slot (qp_plan)
_QP_LINES = 20_000
_QP_CHARS = 4_000_000
_qp_chars = 0


def _keep(table: dict[str, bytes], text: str, encoded: bytes) -> bytes:
    """`encoded` kept under `text`; both tables emptied first when together they pass
    _QP_LINES lines or _QP_CHARS characters."""
    global _qp_chars
    if len(_QP) + len(_QP_SOFT) >= _QP_LINES or _qp_chars >= _QP_CHARS:
        _QP.clear()
        _QP_SOFT.clear()
        _qp_chars = 0
    table[text] = encoded
    _qp_chars += len(text)
    return encoded


def _kept(line: str) -> bytes:
    """One line's encoding (with its CRLF), kept."""
    hit = _QP.get(line)
    if hit is None:
        hit = _keep(_QP, line, binascii.b2a_qp(line.encode("utf-8") + b"\n", istext=True).replace(b"\n", CRLF))
    return hit


def _kept_soft(piece: str) -> bytes:
    """A piece of a line followed by a slot: its encoding ends in a soft line break, so the
    slot starts an encoded line of its own (and may be any length)."""
    hit = _QP_SOFT.get(piece)
    if hit is None:
        hit = _keep(_QP_SOFT, piece, _soft_end(binascii.b2a_qp(piece.encode("utf-8"), istext=True).replace(b"\n", CRLF)))
    return hit


def _soft_end(encoded: bytes) -> bytes:
    """`encoded` (no line end of its own) with a soft line break after it, its last line
    split if the break's '=' would take it past 76 characters."""
    if not encoded:
        return b""
    start = encoded.rfind(b"\n") + 1
    if len(encoded) - start > 75:
        cut = _cut(encoded, start + 75)
        encoded = encoded[:cut] + b"=" + CRLF + encoded[cut:]
    return encoded + b"=" + CRLF


def _cut(encoded: bytes, at: int) -> int:
    """`at`, moved back so an escape (=XX) is not split."""
    if encoded[at - 1:at] == b"=":
        return at - 1
    if encoded[at - 2:at - 1] == b"=":
        return at - 2
    return at


_PRINTABLE = re.compile(r"[!-~]+")  # a slot's value that needs no escape other than '='


def qp_value(value: str) -> bytes:
    """A slot's value (a URL) as encoded lines, each ended by a soft line break."""
    if not _PRINTABLE.fullmatch(value):
        return _soft_end(binascii.b2a_qp(value.encode("utf-8"), istext=True).replace(b"\n", CRLF))
    encoded = value.replace("=", "=3D").encode("ascii")
    if len(encoded) <= 75:
        return encoded + b"=" + CRLF
    out = []
    start = 0
    while len(encoded) - start > 75:
        cut = _cut(encoded, start + 75)
        out.append(encoded[start:cut])
        start = cut
    out.append(encoded[start:])
    return b"=\r\n".join(out) + b"=" + CRLF


def _lines(text: str) -> list[str]:
    """A part's lines, any line break counted as one, a final break not making an empty line."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return (text[:-1] if text.endswith("\n") else text).split("\n")


def qp(text: str) -> bytes:
    """UTF-8 quoted-printable with CRLF line ends."""
    lines = _lines(text)
    encoded = list(map(_QP.get, lines))  # the look-ups in C; most lines are kept already
    if None in encoded:
        for i, line in enumerate(lines):
            if encoded[i] is None:
                encoded[i] = _kept(line)  # a line met earlier in this part is kept by now
    return b"".join(encoded)  # type: ignore[arg-type]  # no None is left


@dataclass(frozen=True)
class QpPlan:
    """A part encoded once with slots for what differs per message (`qp_plan`): `pieces` are
    encoded bytes or the number of a slot."""

    pieces: tuple[bytes | int, ...]

    def fill(self, values: list[bytes]) -> bytes:
        """The part's encoding with each slot's encoded value (`qp_value`) put in."""
        return b"".join([p if p.__class__ is bytes else values[p] for p in self.pieces])  # type: ignore[index]


def qp_plan(text: str, slot: re.Pattern[str]) -> QpPlan:
    """`text` encoded as `qp` would, except that each match of `slot` (its group 1 the slot's
    number) is left out, to be filled per message: the text before a slot ends in a soft
    line break and so does the slot's value, so the lines stay within 76 characters whatever
    the value's length, and the part decodes to the text with the values in place."""
    lines = _lines(text)
    encoded: list[bytes | None] = list(map(_QP.get, lines))  # the look-ups in C; most lines are kept already
    pieces: list[bytes | int] = []
    for line, hit in zip(lines, encoded, strict=True):
        if hit is not None:  # kept lines hold no slot: only text without one is ever kept whole
            pieces.append(hit)
            continue
        at = 0
        for m in slot.finditer(line):
            pieces += [_kept_soft(line[at:m.start()]), int(m.group(1))]
            at = m.end()
        pieces.append(_kept(line[at:]))
    merged: list[bytes | int] = []
    run: list[bytes] = []  # encoded bytes between two slots, joined into one piece
    for piece in pieces:
        if isinstance(piece, bytes):
            run.append(piece)
            continue
        merged += [b"".join(run), piece] if run else [piece]
        run = []
    if run:
        merged.append(b"".join(run))
    return QpPlan(tuple(merged))


def build_email(
    skel: Skeleton, *, to: str, subject: str, date: str, message_id: str,
    list_unsubscribe: tuple[str, str], html: str | bytes, text: str | bytes, extra_headers: tuple[tuple[str, str], ...] = (),
) -> bytes:
    """One multipart/alternative message (text, then HTML) as bytes ready for SMTP DATA;
    `html` and `text` as bytes are encoded already (`QpPlan.fill`)."""
    if len(subject) > MAX_SUBJECT:
        raise HeaderError(f"Subject: longer than {MAX_SUBJECT} characters")
    https_url, mailto_url = (check_header("List-Unsubscribe", u) for u in list_unsubscribe)
    out = [
        skel.fixed_headers,
        _encoded("To", to),
        _encoded("Subject", subject),
        f"Date: {check_header('Date', date)}".encode("ascii") + CRLF,
        f"Message-ID: {check_header('Message-ID', message_id)}".encode("ascii") + CRLF,
        f"List-Unsubscribe: <{https_url}>,\r\n <{mailto_url}>".encode("ascii") + CRLF,
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" + CRLF,
    ]
    out.extend(_encoded(name, value) for name, value in extra_headers)
    b = skel.boundary.encode("ascii")
    out += [
        b'Content-Type: multipart/alternative; boundary="' + b + b'"' + CRLF, CRLF,
        b"--" + b + CRLF,
        b'Content-Type: text/plain; charset="utf-8"' + CRLF,
        b"Content-Transfer-Encoding: quoted-printable" + CRLF, CRLF,
        text if isinstance(text, bytes) else qp(text),
        b"--" + b + CRLF,
        b'Content-Type: text/html; charset="utf-8"' + CRLF,
        b"Content-Transfer-Encoding: quoted-printable" + CRLF, CRLF,
        html if isinstance(html, bytes) else qp(html),
        b"--" + b + b"--" + CRLF,
    ]
    return b"".join(out)
