"""`bounces import`: read a mailbox of bounce reports, complaints and unsubscribe mails.

The mailbox is streamed one message at a time (never read whole); a message over
`MAX_MESSAGE_BYTES`, nesting more than `MAX_MULTIPARTS` multiparts, or that cannot be
parsed is skipped and counted. What each message may change:

- a DSN or ARF report: a hard bounce or complaint, only when it names a message we sent
  (signed VERP address or Message-ID; see campaigns/tracking/bounces.py), else "unmatched";
- an unsubscribe mail (the `mailto:` of our List-Unsubscribe): email consent is revoked
  when its To or Subject carries a genuine signed unsubscribe token ("mailto
  unsubscribe", with the mail's Message-ID and Date kept as proof); a forged token is
  "unmatched".

A report or unsubscribe already recorded for its message (the same mailbox read again) is
counted as "already recorded", not as a second bounce or unsubscribe.
"""

from __future__ import annotations

import mailbox
import os
import re
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from email import message_from_bytes, policy
from email.message import Message
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.orm import Session

from campaigns.config import Settings
from campaigns.errors import InputError
from campaigns.messages import links
from campaigns.tracking import bounces, responses
from campaigns.tracking.dsn import parse_report

MAX_MESSAGE_BYTES = 10 * 1024 * 1024  # reports and unsubscribe mails are a few kB; this is generous
MAX_MULTIPARTS = 100  # a real report nests three or four
_LINE = 64 * 1024  # mbox lines are read at most this long, so one huge line cannot fill memory
_TOKEN = re.compile(r"unsubscribe[-+]([0-9a-z]{1,13})-([A-Za-z0-9_-]{16})(?![A-Za-z0-9_-])")
TOO_LARGE = b""  # stands for a message skipped for its size


def iter_messages(path: Path) -> Iterator[bytes]:
    """Each message of a Maildir folder, an mbox file or one .eml file, one at a time;
    a message over the size cap is yielded as TOO_LARGE (its bytes are not kept)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        if not (path / "cur").is_dir() and not (path / "new").is_dir():
            raise InputError(f"{path}: not a Maildir (expected cur/ and new/)")
        box = mailbox.Maildir(str(path), factory=None, create=False)
        for key in box.iterkeys():
            with box.get_file(key) as fh:
                data = fh.read(MAX_MESSAGE_BYTES + 1)
            yield TOO_LARGE if len(data) > MAX_MESSAGE_BYTES else data
        return
    with open(path, "rb") as fh:
        if fh.read(5) != b"From ":
            yield TOO_LARGE if os.fstat(fh.fileno()).st_size > MAX_MESSAGE_BYTES else path.read_bytes()
            return
        fh.seek(0)
        yield from _mbox(fh)


def _mbox(fh: BinaryIO) -> Iterator[bytes]:
    chunks: list[bytes] = []
    size, started, too_large, at_line_start = 0, False, False, True
    while line := fh.readline(_LINE):
        if at_line_start and line.startswith(b"From "):
            if started:
                yield TOO_LARGE if too_large else b"".join(chunks)
            chunks, size, started, too_large = [], 0, True, False
        elif started and not too_large:
            size += len(line)
            if size > MAX_MESSAGE_BYTES:
                too_large, chunks = True, []
            else:
                chunks.append(line[1:] if line.startswith(b">From ") else line)
        at_line_start = line.endswith(b"\n")
    if started:
        yield TOO_LARGE if too_large else b"".join(chunks)


def parse_message(raw: bytes) -> Message | None:
    """The message, or None when it is too deep or cannot be parsed."""
    if len(re.findall(rb"(?i)content-type:\s*multipart/", raw)) > MAX_MULTIPARTS:
        return None
    try:
        return message_from_bytes(raw, policy=policy.compat32)
    except (RecursionError, MemoryError, ValueError, LookupError, TypeError):
        return None


def unsubscribe_token(msg: Message) -> tuple[str, str] | None:
    """(delivery b36, signature) from an unsubscribe mail's recipient or subject, if it has one."""
    for header in ("Subject", "To", "Delivered-To", "X-Original-To"):
        for value in msg.get_all(header) or []:
            m = _TOKEN.search(str(value))
            if m:
                return m.group(1), m.group(2)
    return None


def import_mailbox(session: Session, settings: Settings, path: Path, at: datetime) -> dict[str, int]:
    """Apply every report and unsubscribe mail in a mailbox; counts of what happened."""
    counts: Counter[str] = Counter({k: 0 for k in ("messages", "bounces", "complaints", "unsubscribes",
                                                   "already_recorded", "unmatched", "ignored", "skipped")})
    for raw in iter_messages(path):
        counts["messages"] += 1
        msg = parse_message(raw) if raw is not TOO_LARGE else None
        if msg is None:
            counts["skipped"] += 1
            continue
        try:
            kind = _apply(session, settings, msg, at, counts)
        except (RecursionError, ValueError, LookupError, TypeError, AttributeError):
            counts["skipped"] += 1  # a malformed part the parser let through
            continue
        if kind == "ignored":
            counts["ignored"] += 1
    return dict(counts)


def _apply(session: Session, settings: Settings, msg: Message, at: datetime, counts: Counter[str]) -> str:
    token = unsubscribe_token(msg)
    notices = parse_report(msg)
    if token is not None and not notices:
        delivery_id = links.verify_unsubscribe(settings, *token)
        proof = {"message_id": str(msg.get("Message-ID") or "")[:300], "date": str(msg.get("Date") or "")[:100]}
        done = responses.unsubscribe(session, delivery_id, at, False, None, None, source="mailto unsubscribe",
                                     proof=proof) if delivery_id is not None else None
        counts["unmatched" if done is None else "unsubscribes" if done.new else "already_recorded"] += 1
        return "unsubscribe"
    if not notices:
        return "ignored"
    seen: set[tuple[int, str]] = set()  # one report may list many recipients of the one message it names
    for n in notices:
        target = bounces.match(session, settings, return_path=n.verp, message_id=n.original_message_id)
        if target is None:
            counts["unmatched"] += 1
            continue
        if (target.delivery_id, n.kind) in seen:
            continue
        seen.add((target.delivery_id, n.kind))
        new = bounces.record(session, settings, target, n.kind, at=at, source="report", detail=n.status)
        counts[("complaints" if n.kind == "complaint" else "bounces") if new else "already_recorded"] += 1
    return "report"
