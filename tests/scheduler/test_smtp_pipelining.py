"""SMTP PIPELINING (RFC 2920): when EHLO offers it, MAIL, RCPT and DATA leave in one write and
their three replies are read afterwards; the message follows only after DATA's 354. The
outcomes stay those of the one-command-at-a-time path (scheduler/channels/smtp.py)."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from scheduler.channels import STOPPED, OutgoingEmail
from scheduler.channels.config import SmtpConfig
from scheduler.channels.smtp import SmtpPool
from tests.support.smtp import FaultySmtp, free_port

TLS = Path(__file__).resolve().parents[1] / "support" / "tls"
BODY = b"Subject: hi\r\n\r\n.leading dot\r\nline\r\n"


def _email(i: int, to: str = "ann@example.com", body: bytes = BODY, **kw: object) -> OutgoingEmail:
    return OutgoingEmail(str(i), "news@example.com", to, body, f"<{i}@x>", **kw)  # type: ignore[arg-type]


class RawSmtp:
    """A scripted SMTP server on loopback that proves pipelining: when it offers PIPELINING it
    holds back its replies to MAIL and RCPT until DATA has arrived (RFC 2920 lets a server
    answer late), so a client waiting for the MAIL reply before sending RCPT would never get
    one. `at_data` records, per DATA, the commands that had arrived unanswered."""

    def __init__(self, pipelining: bool = True) -> None:
        self.pipelining = pipelining
        self.mail_reply = b"250 2.1.0 Ok"
        self.rcpt_reply: dict[str, bytes] = {}  # address -> reply (default 250)
        self.data_reply = b""  # empty: 354 when MAIL and RCPT were accepted, else 503
        self.after_dot = b"250 2.0.0 Ok: queued"
        self.after_empty = b"554 5.5.1 no valid recipients"  # the reply to an empty message
        self.drop_before_data_reply = False
        self.drop_after_body = False
        self.at_data: list[list[bytes]] = []
        self.bodies: list[bytes] = []
        self.commands: list[bytes] = []  # every command line, in order
        self.connections = 0
        self.dribble = False  # write replies one byte at a time
        self.tls: ssl.SSLContext | None = None  # offer STARTTLS with this context
        self.after_starttls = b""  # sent with the 220 to STARTTLS, in the clear (an injection)

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        if not self.dribble:
            writer.write(data)
            return
        for i in range(len(data)):  # each byte its own segment, as far as the kernel allows
            writer.write(data[i:i + 1])
            await writer.drain()
            await asyncio.sleep(0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.write(b"220 raw ESMTP\r\n")
        held: list[bytes] = []  # replies not yet written
        unanswered: list[bytes] = []
        envelope_ok = True
        try:
            while line := await reader.readline():
                command = line.rstrip(b"\r\n")
                self.commands.append(command)
                verb = command[:4].upper()
                if verb == b"EHLO":
                    offer = b"250-PIPELINING\r\n" if self.pipelining else b""
                    if self.tls and writer.get_extra_info("sslcontext") is None:
                        offer += b"250-STARTTLS\r\n"
                    writer.write(b"250-raw\r\n" + offer + b"250 8BITMIME\r\n")
                    continue
                if verb == b"STAR" and self.tls:
                    writer.write(b"220 ready\r\n" + self.after_starttls)
                    await writer.start_tls(self.tls)
                    continue
                unanswered.append(command)
                if verb == b"MAIL":
                    envelope_ok = self.mail_reply.startswith(b"250")
                    held.append(self.mail_reply)
                elif verb == b"RCPT":
                    address = command.split(b"<", 1)[1].rstrip(b">").decode()
                    reply = self.rcpt_reply.get(address, b"250 2.1.5 Ok")
                    envelope_ok = envelope_ok and reply.startswith(b"250")
                    held.append(reply)
                elif verb == b"DATA":
                    self.at_data.append(unanswered)
                    if self.drop_before_data_reply:
                        writer.transport.abort()
                        return
                    reply = self.data_reply or (b"354 go ahead" if envelope_ok else b"503 5.5.1 no valid recipients")
                    await self._write(writer, b"".join(r + b"\r\n" for r in [*held, reply]))
                    held, unanswered = [], []
                    if reply.startswith(b"354"):
                        body = b""
                        while (chunk := await reader.readline()) != b".\r\n":
                            if not chunk:
                                return
                            body += chunk
                        self.bodies.append(body)
                        if self.drop_after_body:
                            writer.transport.abort()
                            return
                        writer.write((self.after_dot if body else self.after_empty) + b"\r\n")
                    continue
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    await writer.drain()
                    writer.close()
                    return
                else:  # RSET, NOOP
                    envelope_ok = True
                    held.append(b"250 2.0.0 Ok")
                if not self.pipelining or verb not in (b"MAIL", b"RCPT"):
                    writer.write(b"".join(r + b"\r\n" for r in held))
                    held, unanswered = [], []
        except (ConnectionError, asyncio.CancelledError):  # the client went away; the test is over
            return
        finally:
            writer.close()


def _pool(port: int, timeout: float = 10.0, **kw: object) -> SmtpPool:
    return SmtpPool(SmtpConfig(host="127.0.0.1", port=port, pool_size=1, timeout_seconds=timeout, **kw))  # type: ignore[arg-type]


def _run(raw: RawSmtp, messages: list[OutgoingEmail], timeout: float = 10.0, **kw: object):  # type: ignore[no-untyped-def]
    async def go():  # type: ignore[no-untyped-def]
        pool = _pool(await raw.start(), timeout, **kw)
        try:
            return [await pool.send(m) for m in messages]
        finally:
            await pool.close()
            await raw.stop()

    return asyncio.run(go())


def test_mail_rcpt_and_data_leave_together_before_any_reply_when_pipelining_is_offered():
    raw = RawSmtp(pipelining=True)
    results = _run(raw, [_email(1, "a@example.com"), _email(2, "b@example.com")])
    assert [r.outcome for r in results] == ["sent", "sent"], results
    assert raw.at_data == [[b"MAIL FROM:<news@example.com>", b"RCPT TO:<a@example.com>", b"DATA"],
                           [b"MAIL FROM:<news@example.com>", b"RCPT TO:<b@example.com>", b"DATA"]]
    assert raw.bodies == [BODY.replace(b"\r\n.", b"\r\n..")] * 2
    assert raw.connections == 1


def test_pipelined_replies_that_arrive_a_byte_at_a_time_are_read_in_order():
    raw = RawSmtp()
    raw.dribble = True
    raw.rcpt_reply["gone@example.com"] = b"550 5.1.1 <gone@example.com>: User unknown"
    results = _run(raw, [_email(1), _email(2, "gone@example.com"), _email(3)])
    assert [r.outcome for r in results] == ["sent", "hard_bounce", "sent"], results
    assert len(raw.bodies) == 2 and raw.connections == 1


def test_replies_injected_before_the_starttls_handshake_are_not_read_as_the_servers():
    """RFC 3207 4.2: whatever follows the 220 to STARTTLS in the clear is discarded. Had the
    injected line been queued, it would answer the EHLO after the handshake and every later
    reply would be paired with the wrong command."""
    raw = RawSmtp()
    raw.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    raw.tls.load_cert_chain(TLS / "server.pem", TLS / "server.key")
    raw.after_starttls = b"250 injected\r\n250 injected\r\n"
    results = _run(raw, [_email(1), _email(2)], security="starttls", ca_file=str(TLS / "ca.pem"),
                   server_name="mail.test")
    assert [r.outcome for r in results] == ["sent", "sent"], results
    assert [len(batch) for batch in raw.at_data] == [3, 3]  # the real EHLO (PIPELINING) was read
    assert raw.connections == 1


def test_without_pipelining_on_offer_each_command_waits_for_its_reply():
    raw = RawSmtp(pipelining=False)
    results = _run(raw, [_email(1), _email(2)])
    assert [r.outcome for r in results] == ["sent", "sent"], results
    assert raw.at_data == [[b"DATA"], [b"DATA"]]
    assert len(raw.bodies) == 2 and raw.connections == 1


def test_a_rejected_mail_from_4xx_is_transient_and_the_connection_goes_on():
    raw = RawSmtp()
    raw.mail_reply = b"451 4.3.0 try again later"
    first = _run(raw, [_email(1)])[0]
    assert first.outcome == "transient" and "451" in first.detail, first
    assert raw.bodies == [] and b"RSET" in raw.commands

    raw = RawSmtp()
    raw.rcpt_reply["gone@example.com"] = b"550 5.1.1 <gone@example.com>: User unknown"
    results = _run(raw, [_email(1, "gone@example.com"), _email(2, "ann@example.com")])
    assert [r.outcome for r in results] == ["hard_bounce", "sent"], results
    assert "550 5.1.1" in results[0].detail
    assert raw.commands.count(b"RSET") == 1 and len(raw.bodies) == 1 and raw.connections == 1


def test_a_354_after_a_rejected_rcpt_gets_a_lone_dot_then_rset_and_the_rcpt_outcome():
    """RFC 2920: a server may accept DATA although every RCPT failed; the client then sends
    an empty message (a lone '.') so the server leaves DATA mode, and reports the RCPT's reply."""
    raw = RawSmtp()
    raw.rcpt_reply["gone@example.com"] = b"550 5.1.1 <gone@example.com>: User unknown"
    raw.data_reply = b"354 go ahead"
    results = _run(raw, [_email(1, "gone@example.com"), _email(2, "ann@example.com")])
    assert [r.outcome for r in results] == ["hard_bounce", "sent"], results
    assert "550 5.1.1" in results[0].detail
    assert raw.bodies == [b"", BODY.replace(b"\r\n.", b"\r\n..")]  # the lone dot: an empty message
    after_first = raw.commands[raw.commands.index(b"DATA"):]
    assert after_first[:2] == [b"DATA", b"RSET"] and raw.connections == 1


def test_a_data_reply_other_than_354_is_that_messages_outcome():
    raw = RawSmtp()
    raw.data_reply = b"554 5.7.1 sending refused"
    assert _run(raw, [_email(1)])[0].outcome == "policy"


def test_a_connection_lost_after_the_message_was_written_is_unknown():
    raw = RawSmtp()
    raw.drop_after_body = True
    result = _run(raw, [_email(1)])[0]
    assert result.outcome == "unknown" and len(raw.bodies) == 1, result


def test_a_connection_lost_before_354_is_transient():
    raw = RawSmtp()
    raw.drop_before_data_reply = True
    result = _run(raw, [_email(1)])[0]
    assert result.outcome == "transient" and raw.bodies == [], result


def test_a_withdrawn_message_or_an_unsafe_address_writes_nothing():
    raw = RawSmtp()
    results = _run(raw, [_email(1, still_wanted=lambda: False), _email(2, "x@example.com>\r\nRSET"),
                         _email(3, "ann@example.com")])
    assert results[0] is STOPPED or results[0].outcome == "suppressed"
    assert results[1].outcome == "failed" and "refused envelope address" in results[1].detail
    assert results[2].outcome == "sent"
    assert raw.at_data == [[b"MAIL FROM:<news@example.com>", b"RCPT TO:<ann@example.com>", b"DATA"]]
    assert [c for c in raw.commands if c.startswith((b"MAIL", b"RCPT"))] == raw.at_data[0][:2]  # none before


def test_with_aiosmtpd_offering_pipelining_messages_arrive_intact_and_a_bad_address_does_not_stop_the_next(smtp: FaultySmtp):
    smtp.pipelining = True
    smtp.hard_bounce.add("gone@example.com")
    bodies = [b"Subject: a\r\n\r\n.leading dot\r\n.\r\n..two\r\nend\r\n", b"Subject: lf\n\nline one\n.dot after lf\n"]

    async def go():  # type: ignore[no-untyped-def]
        pool = _pool(smtp.port)
        try:
            return [await pool.send(_email(1, body=bodies[0])), await pool.send(_email(2, "gone@example.com")),
                    await pool.send(_email(3, body=bodies[1]))]
        finally:
            await pool.close()

    results = asyncio.run(go())
    assert [r.outcome for r in results] == ["sent", "hard_bounce", "sent"], results
    assert "550 5.1.1" in results[1].detail
    assert smtp.raw == [bodies[0], bodies[1].replace(b"\n", b"\r\n")]
    assert smtp.ehlo_count == 1  # one connection throughout


def test_with_aiosmtpd_offering_pipelining_a_drop_at_rcpt_is_transient_and_a_hang_after_the_dot_unknown(smtp: FaultySmtp):
    smtp.pipelining = True
    smtp.drop_at_rcpt.add("drop@example.com")
    smtp.hang_after_dot.add("hang@example.com")

    async def go():  # type: ignore[no-untyped-def]
        pool = _pool(smtp.port, timeout=2.0)
        try:
            return [await pool.send(_email(1, "drop@example.com")), await pool.send(_email(2, "hang@example.com")),
                    await pool.send(_email(3))]
        finally:
            await pool.close()

    results = asyncio.run(go())
    assert [r.outcome for r in results] == ["transient", "unknown", "sent"], results
    assert [rcpt for rcpt, _mid, _from in smtp.received] == ["hang@example.com", "ann@example.com"]


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_pipelining_over_starttls_or_implicit_tls_with_a_login(security: str):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(TLS / "server.pem", TLS / "server.key")
    received: list[bytes] = []
    logins: list[bytes] = []

    class Handler:
        async def handle_EHLO(self, server, session, envelope, hostname, responses):  # type: ignore[no-untyped-def]
            session.host_name = hostname
            responses.insert(-1, "250-PIPELINING")
            return responses

        async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
            received.append(envelope.content)
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):  # type: ignore[no-untyped-def]
        logins.append(auth_data.login)
        return AuthResult(success=auth_data.password == b"secret")

    port = free_port()
    if security == "starttls":
        controller = Controller(Handler(), hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True,
                                authenticator=authenticator)
    else:  # aiosmtpd does not count implicit TLS as TLS for AUTH: allow it explicitly
        controller = Controller(Handler(), hostname="127.0.0.1", port=port, ssl_context=context,
                                authenticator=authenticator, auth_require_tls=False)
    controller.start()

    async def go():  # type: ignore[no-untyped-def]
        pool = _pool(port, security=security, ca_file=str(TLS / "ca.pem"), server_name="mail.test",
                     username="shop", password="secret")
        try:
            results = [await pool.send(_email(i)) for i in range(3)]
            conn = pool._queue.get_nowait()  # type: ignore[union-attr]
            pipelined = conn.supports_extension("pipelining")
            pool._queue.put_nowait(conn)  # type: ignore[union-attr]
            return results, pipelined
        finally:
            await pool.close()

    try:
        results, pipelined = asyncio.run(go())
    finally:
        controller.stop()
    assert [r.outcome for r in results] == ["sent"] * 3, results
    assert pipelined and logins == [b"shop"] and received == [BODY] * 3


def _stop_after(checks: int):  # type: ignore[no-untyped-def]
    """A `still_wanted` that says yes `checks` times, then no: the stop arrives in between."""
    asked = [0]

    def still_wanted() -> bool:
        asked[0] += 1
        return asked[0] <= checks

    return still_wanted


@pytest.mark.parametrize("pipelining", [True, False])
def test_a_stop_heard_while_the_envelope_was_on_its_way_keeps_the_message_back(pipelining: bool):
    """The check before MAIL can pass just before an unsubscribe commits; the server may then
    see MAIL after the person was told "unsubscribed". A second check once the envelope was
    accepted, before the message itself leaves, closes that window: without PIPELINING the
    transaction is reset, with it (354 already given) the connection is dropped, which ends
    the transaction without a message (RFC 5321 4.1.1.4)."""
    raw = RawSmtp(pipelining=pipelining)
    results = _run(raw, [_email(1, "a@example.com", still_wanted=_stop_after(1)), _email(2, "b@example.com")])
    assert results[0] is STOPPED, results
    assert results[1].outcome == "sent", results
    assert len(raw.bodies) == 1 and b"DATA" in raw.commands
    if pipelining:
        assert raw.connections == 2  # the first one was closed inside DATA
    else:
        assert raw.commands.count(b"DATA") == 1 and b"RSET" in raw.commands and raw.connections == 1
