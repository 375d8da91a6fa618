"""Development transport: each email as a .eml file, each SMS as a line, under the outbox folder.

They hold addresses and message text: files 0600 and folders 0700 whatever the umask,
never written through a symlink."""

from __future__ import annotations

import json
import os
from pathlib import Path

from scheduler.channels import STOPPED, OutgoingEmail, OutgoingSms, SendResult, withdrawn

PRIVATE_FILE = 0o600


def private_dir(path: Path) -> None:
    """`path` and its missing parents made 0700 (mkdir's parents=True would use the umask)."""
    if not path.exists():
        private_dir(path.parent)
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            pass  # made meanwhile by another worker


class FileEmail:
    """Writes `<outbox>/email/<key>.eml` atomically (write then rename)."""

    def __init__(self, outbox: Path) -> None:
        self.folder = Path(outbox) / "email"

    async def send(self, message: OutgoingEmail | OutgoingSms) -> SendResult:
        assert isinstance(message, OutgoingEmail)
        if withdrawn(message):
            return STOPPED
        private_dir(self.folder)
        final = self.folder / f"{message.key}.eml"
        tmp = final.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, PRIVATE_FILE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(message.data)
        os.replace(tmp, final)
        return SendResult("sent", message.message_id)

    async def close(self) -> None:
        return None


class FileSms:
    """Appends one JSON line per text to `<outbox>/sms.jsonl`."""

    def __init__(self, outbox: Path) -> None:
        self.path = Path(outbox) / "sms.jsonl"

    async def send(self, message: OutgoingEmail | OutgoingSms) -> SendResult:
        assert isinstance(message, OutgoingSms)
        if withdrawn(message):
            return STOPPED
        private_dir(self.path.parent)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, PRIVATE_FILE)
        with os.fdopen(fd, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"key": message.key, "to": message.to, "body": message.body}, ensure_ascii=False) + "\n")
        return SendResult("sent", f"file-{message.key}")

    async def close(self) -> None:
        return None
