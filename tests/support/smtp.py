"""A real SMTP server on loopback (aiosmtpd) that records what it accepts and fails on command.

    server = FaultySmtp(); server.start()
    server.transient_rate = 0.1          # 10% of RCPTs get 451 4.3.0
    server.hard_bounce = {"gone@x.com"}  # 550 5.1.1 at RCPT
    server.policy = True                 # 554 5.7.1 at MAIL FROM
    server.drop_at_rcpt = {"a@x.com"}    # connection dropped before DATA (once per address)
    server.hang_after_dot = {"b@x.com"}  # message taken, no reply after the final dot
    server.data_delay = 0.5              # every DATA takes half a second (a slow server)
    server.pipelining = False            # EHLO stops offering PIPELINING (RFC 2920; offered by default, as Postfix does)
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time
from collections import Counter
from email import message_from_bytes

from aiosmtpd.controller import Controller


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Handler:
    def __init__(self, server: FaultySmtp) -> None:
        self.s = server

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # type: ignore[no-untyped-def]
        session.host_name = hostname  # what aiosmtpd does itself when no handler takes EHLO
        with self.s.lock:
            self.s.ehlo_count += 1  # one per connection: a test can tell a reused connection
        if self.s.pipelining:
            responses.insert(-1, "250-PIPELINING")  # before the last line ("250 HELP")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # type: ignore[no-untyped-def]
        if self.s.policy:
            return "554 5.7.1 Service unavailable; client host blocked by policy"
        envelope.mail_from = address
        envelope.began = time.monotonic()  # when the client started handing this message over
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
        with self.s.lock:
            self.s.rcpt_attempts[address] += 1
            if address in self.s.drop_at_rcpt and address not in self.s._dropped:
                self.s._dropped.add(address)
                server.transport.abort()
                return "421 4.4.2 connection dropped"
            if address in self.s.hard_bounce:
                return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
            if self.s.transient_rate and self.s.rng.random() < self.s.transient_rate:
                self.s.transient_given += 1
                return "451 4.3.0 Temporary failure, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        if self.s.data_delay:
            await asyncio.sleep(self.s.data_delay)
        if any(r in self.s.refuse_after_dot for r in envelope.rcpt_tos):
            return "554 5.6.0 message content rejected"
        msg = message_from_bytes(envelope.content)
        with self.s.lock:
            for rcpt in envelope.rcpt_tos:
                self.s.received.append((rcpt, msg.get("Message-ID", ""), envelope.mail_from))
                self.s.raw.append(envelope.original_content or envelope.content)
                self.s.began.append(getattr(envelope, "began", time.monotonic()))
        if any(r in self.s.hang_after_dot for r in envelope.rcpt_tos):
            await asyncio.sleep(3600)  # the message is here, but the client never hears back
        return "250 2.0.0 Ok: queued"


class FaultySmtp:
    """Start/stop an aiosmtpd server in a thread; inspect `received` afterwards."""

    def __init__(self, seed: int = 1) -> None:
        self.port = free_port()
        self.lock = threading.Lock()
        self.rng = random.Random(seed)
        self.transient_rate = 0.0
        self.hard_bounce: set[str] = set()
        self.policy = False
        self.drop_at_rcpt: set[str] = set()
        self.hang_after_dot: set[str] = set()
        self.refuse_after_dot: set[str] = set()  # their message is refused once sent (554), not kept
        self.data_delay = 0.0
        self.pipelining = True  # offered, as Postfix does; tests of the other path turn it off
        self.ehlo_count = 0
        self.received: list[tuple[str, str, str]] = []
        self.raw: list[bytes] = []  # the DATA bytes exactly as they arrived, per recipient
        self.began: list[float] = []  # per received message: time.monotonic() at its MAIL FROM
        self.rcpt_attempts: Counter[str] = Counter()
        self.transient_given = 0
        self._dropped: set[str] = set()
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)

    def start(self) -> FaultySmtp:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    @property
    def message_ids(self) -> list[str]:
        return [mid for _rcpt, mid, _from in self.received]

    def config_toml(self, timeout: float = 30.0, pool: int = 4) -> str:
        """The [sending]/[smtp] settings that point the product at this server. The timeout is
        generous so a loaded machine (CI, pytest -n) does not turn a slow reply into a retry;
        a test of a hanging server passes a short one."""
        return (f'[sending]\ntransport = "smtp"\nretry_base_seconds = 1\n'
                f'[smtp]\nhost = "127.0.0.1"\nport = {self.port}\npool_size = {pool}\ntimeout_seconds = {timeout}\n')
