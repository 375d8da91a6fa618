"""Logging for the long-running commands (daemon, worker): quiet, one line per condition.

- One line per record: an exception is summarised as `Type: first line`; the traceback is
  printed only with `--verbose`.
- Never a contact address, a phone number or SQL parameters: driver errors carry the
  statement and its parameters (addresses among them), so they are cut, and addresses
  that reach a message anyway are masked.
- A warning or error that repeats (the database down, the SMTP server gone) is printed
  at most once a minute while it lasts, with how many times it was held back.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import IO

REPEAT_SECONDS = 60.0
# A driver error's statement and parameters, up to the SQLAlchemy link line or a blank line.
_SQL = re.compile(r"\n?\[SQL: .*?(?=\n\(Background on this error|\n\n|\Z)", re.DOTALL)
_BACKGROUND = re.compile(r"\n?\(Background on this error at: [^)]*\)")
_EMAIL = re.compile(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"\+\d{8,15}\b")
_NUMBER = re.compile(r"(?<![#\w])\d+(?:\.\d+)?")


def redact(text: str) -> str:
    """`text` without SQL statements, their parameters, email addresses or phone numbers."""
    text = _BACKGROUND.sub("", _SQL.sub("", text))
    return _PHONE.sub("<phone>", _EMAIL.sub("<address>", text))


def first_line(exc: BaseException) -> str:
    """An exception's first line, redacted (driver errors run to many lines)."""
    return (redact(str(exc)).strip().splitlines() or [""])[0][:300]


class OneLineFormatter(logging.Formatter):
    """`time LEVEL logger: message`; the traceback only when verbose; always redacted."""

    def __init__(self, verbose: bool) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and not self.verbose:
            message = f"{message}: {type(exc).__name__}: {first_line(exc)}"
        line = f"{self.formatTime(record)} {record.levelname} {record.name}: {message}"
        if not self.verbose:
            return " ".join(redact(line).split("\n"))
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line)


class RepeatFilter(logging.Filter):
    """Warnings and errors: the same condition at most once per REPEAT_SECONDS.

    A condition is the logger, the level and the message with its measurements (numbers)
    blanked, so "down for 12 s" and "down for 22 s" are one condition; `#id`s are kept,
    so two campaigns' pauses are two conditions.
    """

    def __init__(self, every: float = REPEAT_SECONDS) -> None:
        super().__init__()
        self.every = every
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        text = record.getMessage()
        key = (record.name, record.levelno, _NUMBER.sub("#", text.split("\n", 1)[0])[:300])
        now = time.monotonic()
        last, held = self._seen.get(key, (None, 0))
        if last is not None and now - last < self.every:
            self._seen[key] = (last, held + 1)
            return False
        if held:
            record.msg, record.args = f"{text} (and {held} times more in the last {now - last:.0f} s)", None  # type: ignore[operator]
        if len(self._seen) > 1000:  # conditions that ended long ago
            self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.every}
        self._seen[key] = (now, 0)
        return True


def configure(verbose: bool, stream: IO[str] | None = None) -> logging.Handler:
    """Set up the root logger for a daemon or worker; returns its handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(OneLineFormatter(verbose))
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("apscheduler", "httpx", "aiosmtplib", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler
