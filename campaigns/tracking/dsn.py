"""Delivery status notifications (RFC 3464) and abuse reports (RFC 5965), from files.

A DSN names its message through the VERP return path it was sent to (bounces+<d>-<sig>@)
and, failing that, through the original Message-ID in the returned headers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import Message

MAX_DEPTH = 12  # MIME nesting a report may have; deeper parts are not looked at


@dataclass(frozen=True)
class Notice:
    """One permanent failure or complaint found in a report."""

    kind: str  # bounce | complaint
    recipient: str | None
    status: str | None
    verp: str | None
    original_message_id: str | None
    report_id: str


def _recipient(value: str | None) -> str | None:
    if not value:
        return None
    value = value.strip()
    if ";" in value:
        value = value.split(";", 1)[1]
    return value.strip().strip("<>").lower() or None


def _status_blocks(part: Message) -> list[dict[str, str]]:
    payload = part.get_payload()
    if isinstance(payload, list):  # the stdlib parses message/delivery-status into header blocks
        blocks = [{k.lower(): str(v) for k, v in p.items()} for p in payload if isinstance(p, Message)]
    else:
        raw = part.get_payload(decode=True)
        text = raw if isinstance(raw, bytes) else b""
        blocks = [{k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in chunk.splitlines() if ":" in line)}
                  for chunk in text.decode("utf-8", "replace").replace("\r\n", "\n").split("\n\n")]
    return [b for b in blocks if b]


def walk(msg: Message, max_depth: int = MAX_DEPTH) -> Iterator[Message]:
    """Every part down to `max_depth` levels, without recursion (a hostile message can nest
    thousands of multiparts)."""
    stack: list[tuple[Message, int]] = [(msg, 0)]
    while stack:
        part, depth = stack.pop()
        yield part
        payload = part.get_payload()
        if depth < max_depth and isinstance(payload, list):
            stack.extend((p, depth + 1) for p in reversed(payload) if isinstance(p, Message))


def parse_report(raw: bytes | Message) -> list[Notice]:
    """Hard bounces and complaints in one message; delays and successes are ignored."""
    msg = raw if isinstance(raw, Message) else message_from_bytes(raw, policy=policy.compat32)
    verp = None
    for header in ("X-Original-To", "Delivered-To", "To", "Envelope-To"):
        value = msg.get(header)
        if value and "bounces+" in value:
            verp = value.strip().split(",")[0].strip().strip("<>")
            if "<" in verp:
                verp = verp.split("<", 1)[1]
            break
    original_id = None
    report_id = (msg.get("Message-ID") or "").strip()
    notices: list[Notice] = []
    is_arf = "feedback-report" in (msg.get_param("report-type") or "")
    for part in walk(msg):
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "text/rfc822-headers"):
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                original_id = inner[0].get("Message-ID") or original_id
            else:
                raw = part.get_payload(decode=True)
                text = raw if isinstance(raw, bytes) else b""
                original_id = message_from_bytes(text).get("Message-ID") or original_id
        if ctype == "message/feedback-report" and is_arf:
            blocks = _status_blocks(part)
            fields = {k: v for b in blocks for k, v in b.items()}
            notices.append(Notice("complaint", _recipient(fields.get("original-rcpt-to")), None, verp, None, report_id))
        if ctype == "message/delivery-status":
            for block in _status_blocks(part)[1:] or _status_blocks(part):
                action = block.get("action", "").lower()
                status = block.get("status", "").split()[0] if block.get("status") else ""
                if action == "failed" or status.startswith("5."):
                    rcpt = _recipient(block.get("original-recipient") or block.get("final-recipient"))
                    notices.append(Notice("bounce", rcpt, status or None, verp, None, report_id))
    return [Notice(n.kind, n.recipient, n.status, n.verp, original_id.strip() if original_id else None, n.report_id)
            for n in notices]
