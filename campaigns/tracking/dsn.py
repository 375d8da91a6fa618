"""Delivery status notifications (RFC 3464) and abuse reports (RFC 5965), from files.

A DSN names its message through the VERP return path it was sent to (bounces+<d>-<sig>@)
and, failing that, through the original Message-ID in the returned headers.
"""

from __future__ import annotations

import mailbox
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import Message
from pathlib import Path

from campaigns.errors import InputError


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
        blocks = [{k.lower(): str(v) for k, v in p.items()} for p in payload]
    else:
        text = part.get_payload(decode=True) or b""
        blocks = [dict((k.strip().lower(), v.strip()) for k, v in (line.split(":", 1) for line in chunk.splitlines() if ":" in line))
                  for chunk in text.decode("utf-8", "replace").replace("\r\n", "\n").split("\n\n")]
    return [b for b in blocks if b]


def parse_report(raw: bytes) -> list[Notice]:
    """Hard bounces and complaints in one message; delays and successes are ignored."""
    msg = message_from_bytes(raw, policy=policy.compat32)
    verp = None
    for header in ("X-Original-To", "Delivered-To", "To", "Envelope-To"):
        value = msg.get(header)
        if value and "bounces+" in value:
            verp = value.strip().split(",")[0].strip().strip("<>")
            if "<" in verp:
                verp = verp.split("<", 1)[1]
            break
    original_id = None
    report_id = (msg.get("Message-ID") or "").strip() or str(hash(raw))
    notices: list[Notice] = []
    is_arf = "feedback-report" in (msg.get_param("report-type") or "")
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "text/rfc822-headers"):
            inner = part.get_payload()
            if isinstance(inner, list) and inner:
                original_id = inner[0].get("Message-ID") or original_id
            else:
                text = part.get_payload(decode=True) or b""
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


def read_messages(path: Path) -> list[bytes]:
    """Messages from a Maildir folder, an mbox file, or a single .eml file."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        if not (path / "cur").is_dir() and not (path / "new").is_dir():
            raise InputError(f"{path}: not a Maildir (expected cur/ and new/)")
        box = mailbox.Maildir(str(path), factory=None, create=False)
        return [box.get_bytes(key) for key in box.iterkeys()]
    head = path.read_bytes()[:5]
    if head.startswith(b"From "):
        return [m.as_bytes() for m in mailbox.mbox(str(path), create=False)]
    return [path.read_bytes()]
