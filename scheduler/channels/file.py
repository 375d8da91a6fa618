"""Development transport: each email as a .eml file, each SMS as a line, under the outbox folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

from scheduler.channels import STOPPED, OutgoingEmail, OutgoingSms, SendResult, withdrawn


class FileEmail:
    """Writes `<outbox>/email/<key>.eml` atomically (write then rename)."""

    def __init__(self, outbox: Path) -> None:
        self.folder = Path(outbox) / "email"

    async def send(self, message: OutgoingEmail | OutgoingSms) -> SendResult:
        assert isinstance(message, OutgoingEmail)
        if withdrawn(message):
            return STOPPED
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self.folder / f"{message.key}.eml"
        tmp = final.with_suffix(".tmp")
        tmp.write_bytes(message.data)
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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"key": message.key, "to": message.to, "body": message.body}, ensure_ascii=False) + "\n")
        return SendResult("sent", f"file-{message.key}")

    async def close(self) -> None:
        return None
