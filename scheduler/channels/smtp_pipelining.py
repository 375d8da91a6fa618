"""SMTP PIPELINING (RFC 2920) on top of aiosmtplib: several commands in one write, their
replies read in order afterwards.

aiosmtplib's SMTPProtocol (5.1.x) holds one parsed reply at a time: `data_received` parses a
single reply per chunk and ignores data that arrives while a parsed reply awaits pickup, and a
second reply already in its buffer is only parsed when more data comes. Pipelined replies
(MAIL, RCPT and DATA answered in one segment, as Postfix does) would be lost or stall.
`PipeliningProtocol` keeps a queue of parsed replies instead, as many as the commands written
are owed, and `PipeliningSMTP` is aiosmtplib's client with that protocol.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import Callable

import aiosmtplib
from aiosmtplib.protocol import MAX_RESPONSE_LENGTH, SMTPProtocol
from aiosmtplib.typing import SMTPStatus


class PipeliningProtocol(SMTPProtocol):
    """SMTPProtocol whose replies are queued: `pipeline(commands, n)` writes n commands at once
    and reads their n replies. Used one command at a time (execute_command, start_tls, AUTH) it
    behaves as its parent: data that arrives with no reply owed is ignored, a reader waiting
    when the connection drops gets SMTPServerDisconnected (or the 221 after QUIT), an over-long
    or malformed reply is raised to the reader it was meant for."""

    _replies: collections.deque[aiosmtplib.SMTPResponse | BaseException]
    _owed: int  # replies a pipeline still has to read (0: one command at a time)

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None,
                 connection_lost_callback: Callable[[SMTPProtocol], None] | None = None) -> None:
        super().__init__(loop=loop, connection_lost_callback=connection_lost_callback)
        self._init_queue()

    def _init_queue(self) -> None:
        self._replies = collections.deque()
        self._owed = 0

    def _wanted(self) -> int:
        return self._owed or 1

    def _parse(self) -> bool:
        """Move complete replies from the buffer to the queue, no more than are owed (the rest
        stays in the buffer, as in the parent, where start_tls discards it). True if any."""
        added = False
        while len(self._replies) < self._wanted():
            try:
                response = self._read_response_from_buffer()
            except Exception as exc:  # malformed or over-long line: the reader gets it
                self._replies.append(exc)
                return True
            if response is None:
                break
            self._replies.append(response)
            added = True
        return added

    def data_received(self, data: bytes) -> None:
        waiter = self._response_waiter
        if waiter is None or not self._response_pending or len(self._replies) >= self._wanted():
            return  # no connection, no reply owed, or all owed replies parsed: as the parent, ignore it
        self._buffer.extend(data)
        if len(self._buffer) > MAX_RESPONSE_LENGTH:
            del self._buffer[:]
            self._replies.append(aiosmtplib.SMTPResponseException(SMTPStatus.invalid_response.value,
                                                                  "Response too long"))
        elif not self._parse():
            return
        if not waiter.done():
            # Wake the reader; the reply itself is in the queue. (The parent's waiter carries a
            # reply; here None means "look in the queue", which read_response does.)
            waiter.set_result(None)  # type: ignore[arg-type]

    async def read_response(self, timeout: float | None = None) -> aiosmtplib.SMTPResponse:
        self._response_pending = True
        try:
            while True:
                self._parse()  # a reply may be complete in the buffer already
                if self._replies:
                    item = self._replies.popleft()
                    if isinstance(item, BaseException):
                        raise item
                    return item
                waiter = self._response_waiter
                if waiter is None:
                    raise aiosmtplib.SMTPServerDisconnected("Connection lost")
                try:
                    woken = await asyncio.wait_for(waiter, timeout)
                except TimeoutError as exc:
                    raise aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response") from exc
                finally:  # as the parent: a fresh waiter, none once disconnected
                    self._response_waiter = None if self.transport is None else self._loop.create_future()
                if woken is not None:  # the parent's connection_lost answers a QUIT with 221
                    return woken
        finally:
            if self._owed:
                self._owed -= 1
            self._response_pending = self._owed > 0

    async def pipeline(self, commands: bytes, replies: int, timeout: float | None = None) -> list[aiosmtplib.SMTPResponse]:
        """Write `commands` (already CRLF-terminated, already checked) in one write and read
        `replies` replies. Reading stops at the first exception (a lost connection, a timeout)."""
        if self._command_lock is None:
            raise aiosmtplib.SMTPServerDisconnected("Server not connected")
        async with self._command_lock:
            self._owed = replies
            self._response_pending = True
            try:
                self.write(commands)
                return [await self.read_response(timeout=timeout) for _ in range(replies)]
            finally:
                self._owed = 0
                self._response_pending = False

    async def start_tls(self, tls_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> aiosmtplib.SMTPResponse:
        response = await super().start_tls(tls_context, server_hostname=server_hostname, timeout=timeout)
        self._replies.clear()  # whatever came before the handshake is plaintext nobody vouches for
        return response


class PipeliningSMTP(aiosmtplib.SMTP):
    """aiosmtplib.SMTP on a PipeliningProtocol.

    aiosmtplib builds its SMTPProtocol inside `_create_connection` (along with the TLS, socket
    and timeout handling) and offers no factory argument. Rather than copy that method, the
    protocol it made is turned into a PipeliningProtocol once the greeting is read: the
    subclass adds only a reply queue and overrides methods, no state of the parent changes
    meaning, and STARTTLS and AUTH then run on it (start_tls keeps the same protocol object).
    If a future aiosmtplib hands back another protocol class, it is left alone and
    `pipelining` is False: the one-command-at-a-time path still works."""

    async def _create_connection(self, timeout: float | None) -> aiosmtplib.SMTPResponse:
        response = await super()._create_connection(timeout)
        protocol = self.protocol
        if type(protocol) is SMTPProtocol:
            protocol.__class__ = PipeliningProtocol
            protocol._init_queue()  # type: ignore[attr-defined]
        return response

    @property
    def pipelining(self) -> bool:
        """True when the server's EHLO offered PIPELINING and our protocol can use it."""
        return isinstance(self.protocol, PipeliningProtocol) and self.supports_extension("pipelining")
