"""Email through aiosmtplib: a pool of persistent connections fed from an asyncio.Queue.

Each send runs MAIL, RCPT and DATA itself so the outcome is honest about where it failed:
anything before DATA is safe to retry; a connection lost during DATA (after the message
may have been handed over) is `unknown` and never re-sent by default. After an error the
connection is RSET, or dropped and reopened, so one bad address never poisons the rest.

When the server's EHLO offers PIPELINING (RFC 2920; Postfix does), MAIL, RCPT and DATA go in
one write and their three replies are read afterwards: two round trips per message instead
of four. The outcomes are the same: a refused MAIL or RCPT is that reply's outcome (the first
refused), and should the server still answer DATA with 354 the client ends that DATA at once
with a lone "." before the RSET; only a loss after the message was written is `unknown`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import time

import aiosmtplib

from scheduler.channels import STOPPED, OutgoingEmail, OutgoingSms, SendResult, withdrawn
from scheduler.channels.config import SmtpConfig
from scheduler.channels.smtp_pipelining import PipeliningProtocol, PipeliningSMTP

log = logging.getLogger("campaigns.smtp")
AUTH_REFUSED = (530, 535)  # authentication required / credentials invalid: us, not the address
AUTH_HOLD_SECONDS = 10.0  # after a refused login, the other messages of the wave do not try again


def classify(code: int, message: str) -> SendResult:
    """An SMTP reply -> outcome. 4xx: retry; 5.7.x, 530, 535: policy (us, not the address);
    5.1.x or a bare 550/551/553: the address is bad; any other 5xx: this message failed."""
    text = (message or "").strip()
    detail = f"{code} {text}"[:300]
    if 400 <= code < 500:
        return SendResult("transient", None, detail)
    if text.startswith("5.7.") or code in AUTH_REFUSED:
        return SendResult("policy", None, detail)
    if text.startswith("5.1.") or (code in (550, 551, 553) and not text.startswith("5.")):
        return SendResult("hard_bounce", None, detail)
    return SendResult("failed", None, detail)


_UNSAFE_IN_PATH = re.compile(r"[\x00-\x20<>\x7f-\U0010ffff]")


def _path(address: str) -> bytes:
    """`<address>` for MAIL/RCPT; ValueError for anything that could smuggle a command."""
    if not address or _UNSAFE_IN_PATH.search(address):
        raise ValueError(f"refused envelope address {address[:80]!r}")
    return b"<" + address.encode("ascii") + b">"


def _wire(data: bytes) -> bytes:
    """The message as DATA puts it on the wire: CRLF line ends, lines starting '.' doubled,
    the closing '.' line. Ours are CRLF throughout already (three counts say so), which makes
    the stuffing one bytes.replace; aiosmtplib's data() runs two regular expressions over
    every message, a tenth of the sender's CPU per message."""
    crlf = data.count(b"\r\n")
    if data.count(b"\r") != crlf or data.count(b"\n") != crlf:
        data = _LINE_ENDS.sub(b"\r\n", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    data = data.replace(b"\r\n.", b"\r\n..")
    return (b"." + data if data.startswith(b".") else data) + b".\r\n"


_LINE_ENDS = re.compile(rb"\r\n|\n|\r(?!\n)")


async def _data(conn: aiosmtplib.SMTP, data: bytes) -> aiosmtplib.SMTPResponse:
    """DATA, then the message written as `_wire` makes it. The connection is ours alone while
    a send holds it (the pool lends each to one send), so nothing else writes between the
    two; a lost connection or a timeout closes it, like aiosmtplib's own data()."""
    reply = await conn.execute_command(b"DATA")
    if reply.code != 354:
        raise aiosmtplib.SMTPDataError(reply.code, reply.message)
    return await _body(conn, data)


async def _body(conn: aiosmtplib.SMTP, data: bytes) -> aiosmtplib.SMTPResponse:
    """After DATA's 354: the message as `_wire` makes it, and the server's reply to it."""
    reply = await _write_then_read(conn, _wire(data), "connection lost before the message was written")
    if reply.code != 250:
        raise aiosmtplib.SMTPDataError(reply.code, reply.message)
    return reply


async def _write_then_read(conn: aiosmtplib.SMTP, payload: bytes, lost: str) -> aiosmtplib.SMTPResponse:
    """`payload` written as it is, then one reply. The connection is ours alone while a send
    holds it; a lost connection or a timeout closes it, like aiosmtplib's own data()."""
    protocol = conn.protocol
    if protocol is None:
        raise aiosmtplib.SMTPServerDisconnected(lost)
    try:
        protocol.write(payload)
        return await protocol.read_response(timeout=conn.timeout)
    except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
        conn.close()
        raise


async def _pipelined(conn: PipeliningSMTP, mail_from: bytes, to: bytes) -> tuple[aiosmtplib.SMTPResponse, ...]:
    """MAIL, RCPT and DATA in one write, then their three replies. A lost connection or a
    timeout closes the connection, as aiosmtplib's execute_command does."""
    protocol = conn.protocol
    if not isinstance(protocol, PipeliningProtocol):
        raise aiosmtplib.SMTPServerDisconnected("connection lost before MAIL")
    try:
        replies = await protocol.pipeline(b"MAIL FROM:" + mail_from + b"\r\nRCPT TO:" + to + b"\r\nDATA\r\n", 3,
                                          timeout=conn.timeout)
    except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
        conn.close()
        raise
    if any(r.code == 421 for r in replies):  # the server is closing the connection: so do we
        conn.close()
    return tuple(replies)


async def _end_empty_data(conn: aiosmtplib.SMTP) -> None:
    """DATA got 354 although MAIL or RCPT was refused (RFC 2920 section 3.1): a lone "." ends
    it, an empty message for no recipient. Its reply does not matter; the caller RSETs."""
    await _write_then_read(conn, b".\r\n", "connection lost during DATA")


class _NamedContext(ssl.SSLContext):
    """A client context that checks the certificate against `server_name`, not the host we dial.

    asyncio hands the dialled host to wrap_bio for both implicit TLS and STARTTLS; a relay
    reached by IP or an internal alias still presents its public name.
    """

    server_name: str = ""

    def wrap_bio(self, incoming, outgoing, server_side=False, server_hostname=None, session=None):  # the ssl.SSLContext signature
        return super().wrap_bio(incoming, outgoing, server_side, self.server_name or server_hostname, session)


def tls_context(s: SmtpConfig) -> ssl.SSLContext:
    """Verifying TLS for SMTP: the system's CAs or [smtp] ca_file, the name [smtp] server_name or host."""
    context = _NamedContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the name by default
    if s.ca_file:
        context.load_verify_locations(cafile=s.ca_file)
    else:
        context.load_default_certs()
    context.server_name = s.server_name
    return context


class SmtpPool:
    """N connections; `send` borrows one, uses it, returns it (or replaces it when broken)."""

    def __init__(self, config: SmtpConfig) -> None:
        s = config
        self._config = config
        self._size = max(1, s.pool_size)
        self._queue: asyncio.Queue[PipeliningSMTP | None] | None = None
        self._where = f"{s.host}:{s.port}"
        self._down_since: float | None = None  # monotonic time of the first failed connect of an outage
        self._refused: tuple[float, aiosmtplib.SMTPResponseException] | None = None  # the last refused login

    def _new(self) -> PipeliningSMTP:
        s = self._config
        context = tls_context(s) if s.security != "none" else None
        return PipeliningSMTP(
            hostname=s.host, port=s.port, timeout=s.timeout_seconds, use_tls=s.security == "tls",
            start_tls=True if s.security == "starttls" else False, tls_context=context,
            username=s.username or None, password=s.password or None,
            local_hostname=s.helo_name or None,
        )

    async def _borrow(self) -> PipeliningSMTP:
        if self._queue is None:
            self._queue = asyncio.Queue()
            for _ in range(self._size):
                self._queue.put_nowait(None)  # lazily connected slots
        conn = await self._queue.get()
        if self._refused is not None and time.monotonic() - self._refused[0] < AUTH_HOLD_SECONDS:
            self._queue.put_nowait(conn)  # the login was just refused: do not try it again per message
            raise self._refused[1]
        if conn is None or not conn.is_connected:
            conn = self._new()
            try:
                await conn.connect()
                if conn.last_ehlo_response is None and conn.last_helo_response is None:
                    try:
                        await conn.ehlo()  # once per connection; MAIL and RCPT are sent raw below
                    except aiosmtplib.SMTPHeloError:
                        await conn.helo()
            except BaseException:
                self._queue.put_nowait(None)
                raise
        return conn

    def _give_back(self, conn: PipeliningSMTP | None) -> None:
        assert self._queue is not None
        self._queue.put_nowait(conn if conn is not None and conn.is_connected else None)

    async def send(self, message: OutgoingEmail | OutgoingSms) -> SendResult:
        assert isinstance(message, OutgoingEmail)
        try:
            conn = await self._borrow()
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code in AUTH_REFUSED:  # retrying a wrong password only locks the account: pause
                if self._refused is None or self._refused[1] is not exc:
                    self._refused = (time.monotonic(), exc)
                log.warning("SMTP server %s refused our login: %s %s; the campaign is paused until it is fixed",
                            self._where, exc.code, exc.message)
                return SendResult("policy", None, f"login refused: {exc.code} {exc.message}"[:300])
            self._note_down(exc)
            return SendResult("transient", None, f"connect: {exc}"[:300])
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            self._note_down(exc)
            return SendResult("transient", None, f"connect: {exc}"[:300])
        self._note_up()
        if withdrawn(message):  # the check sits here: after the wait for a connection, before MAIL
            self._give_back(conn)
            return STOPPED
        stage = "mail"
        try:
            if conn.pipelining:
                # Both paths are checked before anything is written (ValueError below).
                mail, rcpt, data = await _pipelined(conn, _path(message.mail_from), _path(message.to))
                refused = mail if mail.code != 250 else rcpt if rcpt.code not in (250, 251) else None
                if refused is not None:
                    if data.code == 354 and conn.is_connected:
                        try:
                            await _end_empty_data(conn)
                        except (TimeoutError, aiosmtplib.SMTPException, OSError):
                            await self._drop(conn)  # the refusal was a definite answer all the same
                            return classify(refused.code, refused.message)
                    raise aiosmtplib.SMTPResponseException(refused.code, refused.message)
                if data.code != 354:
                    raise aiosmtplib.SMTPDataError(data.code, data.message)
                if withdrawn(message):  # asked again (see the path below); after a 354 only closing the connection ends it without a message
                    await self._drop(conn)
                    return STOPPED
                stage = "data"
                response = await _body(conn, message.data)
                self._give_back(conn)
                return SendResult("sent", message.message_id, f"{response.code} {response.message}"[:300])
            # MAIL and RCPT as raw commands: both addresses were checked when the message was
            # built (plain ASCII, no <>, spaces or line breaks), and aiosmtplib's mail()/rcpt()
            # would parse each again with email.utils (a tenth of the send path's time).
            reply = await conn.execute_command(b"MAIL", b"FROM:" + _path(message.mail_from))
            if reply.code != 250:
                raise aiosmtplib.SMTPResponseException(reply.code, reply.message)
            stage = "rcpt"
            reply = await conn.execute_command(b"RCPT", b"TO:" + _path(message.to))
            if reply.code not in (250, 251):
                raise aiosmtplib.SMTPResponseException(reply.code, reply.message)
            if withdrawn(message):
                # Asked again once the envelope is accepted: a stop committed after the first
                # check but before the server saw MAIL (the person already told "unsubscribed")
                # is heard here, before the message leaves. Costs a PRAGMA on SQLite, a set
                # lookup on PostgreSQL.
                await self._reset(conn)
                return STOPPED
            stage = "data"
            response = await _data(conn, message.data)
            self._give_back(conn)
            return SendResult("sent", message.message_id, f"{response.code} {response.message}"[:300])
        except aiosmtplib.SMTPResponseException as exc:
            # The server answered: a definite outcome. Reset so the next message starts clean.
            await self._reset(conn)
            return classify(exc.code, exc.message)
        except (TimeoutError, aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as exc:
            await self._drop(conn)
            if stage == "data":
                return SendResult("unknown", None, f"connection lost during DATA: {exc}"[:300])
            return SendResult("transient", None, f"connection lost before DATA: {exc}"[:300])
        except ValueError as exc:  # an unsafe envelope address, refused before it was written: RSET and go on
            await self._reset(conn)
            return SendResult("failed", None, str(exc)[:300])
        except aiosmtplib.SMTPException as exc:
            await self._drop(conn)
            return SendResult("unknown" if stage == "data" else "transient", None, str(exc)[:300])

    def _note_down(self, exc: BaseException) -> None:
        """A WARNING with how long the server has been unreachable (the log prints it once a minute)."""
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
        log.warning("SMTP server %s unreachable for %.0f s: %s", self._where, now - self._down_since,
                    (str(exc).splitlines() or [type(exc).__name__])[0][:200])

    def _note_up(self) -> None:
        if self._down_since is not None:
            log.warning("SMTP server %s reachable again after %.0f s", self._where, time.monotonic() - self._down_since)
            self._down_since = None

    async def _reset(self, conn: PipeliningSMTP) -> None:
        try:
            await conn.rset()
            self._give_back(conn)
        except Exception:  # a connection that cannot even RSET is replaced
            await self._drop(conn)

    async def _drop(self, conn: aiosmtplib.SMTP) -> None:
        try:
            conn.close()
        except Exception:
            pass
        self._give_back(None)

    async def close(self) -> None:
        if self._queue is None:
            return
        while not self._queue.empty():
            conn = self._queue.get_nowait()
            if conn is not None and conn.is_connected:
                try:
                    await conn.quit()
                except Exception:
                    conn.close()
        self._queue = None
