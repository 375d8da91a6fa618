"""What an operator meets when the SMTP server is wrong: a refused login, a dead server."""

from __future__ import annotations

import asyncio
import logging

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from sqlalchemy import select

from campaigns.store.models import Campaign, Delivery
from scheduler.channels import OutgoingEmail
from scheduler.channels.smtp import SmtpPool
from scheduler.dispatcher import Dispatcher
from scheduler.transport import smtp_config
from tests.scheduler.conftest import add_people, make_campaign
from tests.scheduler.test_daemon import _plan_now
from tests.support.smtp import free_port


class _Refusing:
    """Accepts nothing: every AUTH is refused with 535 (a wrong password)."""

    def __init__(self) -> None:
        self.attempts = 0

    def __call__(self, server, session, envelope, mechanism, auth_data):  # type: ignore[no-untyped-def]
        self.attempts += 1
        return AuthResult(success=False, handled=False, message="535 5.7.8 Authentication credentials invalid")


class _Handler:
    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        return "250 OK"


def test_a_refused_login_pauses_the_campaign_at_once_with_the_servers_reason(make_app, caplog):
    refusing = _Refusing()
    port = free_port()
    server = Controller(_Handler(), hostname="127.0.0.1", port=port, authenticator=refusing, auth_require_tls=False)
    server.start()
    try:
        app = make_app(f'[sending]\ntransport = "smtp"\nretry_base_seconds = 0\n[smtp]\nhost = "127.0.0.1"\nport = {port}\n'
                       'username = "shop"\npassword = "wrong"\npool_size = 2\ntimeout_seconds = 5\n')
        add_people(app, 300)
        cid = make_campaign(app)
        _plan_now(app, cid)
        with caplog.at_level(logging.WARNING):
            for _ in range(3):  # a scheduler would keep polling; a paused campaign is not claimed again
                asyncio.run(Dispatcher(app).dispatch_once())
    finally:
        server.stop()
    with app.session() as s:
        campaign = s.get(Campaign, cid)
        states = list(s.scalars(select(Delivery.state).where(Delivery.campaign_id == cid)))
    assert campaign.status == "paused" and "535" in campaign.status_reason, campaign.status_reason
    assert set(states) == {"queued"}  # nothing failed, nothing lost: a resume after the fix sends them all
    assert refusing.attempts <= app.settings.sending.concurrency  # one wave's logins, not thousands
    assert any(r.levelno == logging.WARNING and "535" in r.getMessage() for r in caplog.records)


def test_a_dead_smtp_server_is_a_warning_with_how_long_it_has_been_down(make_app, caplog):
    port = free_port()  # nothing listens there
    app = make_app(f'[sending]\ntransport = "smtp"\n[smtp]\nhost = "127.0.0.1"\nport = {port}\ntimeout_seconds = 2\n')
    message = OutgoingEmail("1", "news@example.com", "ann@example.com", b"Subject: x\r\n\r\nx\r\n", "<1@x>")

    async def two_attempts():  # type: ignore[no-untyped-def]
        pool = SmtpPool(smtp_config(app.settings))
        first = await pool.send(message)
        await asyncio.sleep(1.1)
        second = await pool.send(message)
        await pool.close()
        return first, second

    with caplog.at_level(logging.INFO):
        first, second = asyncio.run(two_attempts())
    assert first.outcome == second.outcome == "transient"
    down = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and f"127.0.0.1:{port}" in r.getMessage()]
    assert down and all("unreachable for" in m for m in down), down
    assert "unreachable for 1" in down[-1] or "unreachable for 2" in down[-1], down  # how long, in seconds
    assert "ann@example.com" not in " ".join(down)


def test_the_message_arrives_byte_for_byte_dot_lines_and_bare_line_ends_included(make_app, smtp):
    """DATA is written by the pool itself (one bytes.replace for the dot-stuffing): a line that
    starts with '.', a lone '.' line and a message ending without CRLF reach the server as built,
    a lone LF is sent as CRLF, and a refusal after DATA is that message's failure."""
    smtp.refuse_after_dot.add("refused@example.com")
    app = make_app(smtp.config_toml(timeout=10, pool=1))
    bodies = [b"Subject: a\r\n\r\n.leading dot\r\n.\r\n..two\r\nend\r\n",
              b".Subject-less start\r\n\r\nno final line end",
              b"Subject: lf\n\nline one\n.dot after lf\n"]

    async def go():  # type: ignore[no-untyped-def]
        pool = SmtpPool(smtp_config(app.settings))
        results = [await pool.send(OutgoingEmail(str(i), "news@example.com", "ann@example.com", body, f"<{i}@x>"))
                   for i, body in enumerate(bodies)]
        refused = await pool.send(OutgoingEmail("9", "news@example.com", "refused@example.com", bodies[0], "<9@x>"))
        after = await pool.send(OutgoingEmail("10", "news@example.com", "ann@example.com", bodies[0], "<10@x>"))
        await pool.close()
        return results, refused, after

    results, refused, after = asyncio.run(go())
    assert [r.outcome for r in results] == ["sent"] * 3 and after.outcome == "sent"
    assert refused.outcome == "failed" and "554" in refused.detail
    assert smtp.raw == [bodies[0], bodies[1] + b"\r\n", bodies[2].replace(b"\n", b"\r\n"), bodies[0]]
