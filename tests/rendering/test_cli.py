"""`campaigns templates ...` and `campaigns coupons ...` against a real database and transports."""

from __future__ import annotations

import email
import json
import socket
from email import policy

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select

from campaigns.store.models import Coupon, TrackedLink
from tests.conftest import CliRunner, write_config


def test_list_shows_every_template_and_flags_broken_folders(rcli, tdir):
    (tdir / "half").mkdir()
    (tdir / "half" / "subject.txt").write_text("x")
    rows = {r["name"]: r for r in json.loads(rcli("templates", "list", "--json").stdout)}
    assert rows["welcome"]["channel"] == "email" and rows["flash_sale"]["channel"] == "sms"
    assert "missing body.html" in rows["half"]["problem"]


def test_lint_exits_non_zero_on_errors_and_zero_on_a_clean_template(rcli, tdir):
    assert rcli("templates", "lint", "welcome").exit_code == 0
    (tdir / "nolink").mkdir()
    (tdir / "nolink" / "subject.txt").write_text("Hi")
    (tdir / "nolink" / "body.html").write_text("<p>{{ shopper }}</p>")
    r = rcli("templates", "lint", "nolink")
    assert r.exit_code == 1
    assert "'shopper' is not in the context" in r.stderr and "no unsubscribe link" in r.stderr


def test_render_prints_the_exact_message_and_leaves_no_trace(rcli, rapp, tmp_path):
    (tmp_path / "codes.txt").write_text("WB-1\nWB-2\n")
    assert rcli("coupons", "import", "WINBACK", str(tmp_path / "codes.txt")).exit_code == 0
    assert rcli("contacts", "add", "--email", "ann@example.com", "--name", "Ann Lee").exit_code == 0
    r = rcli("templates", "render", "winback", "--contact", "ann@example.com", "--raw")
    assert r.exit_code == 0, r.output
    msg = email.message_from_bytes(r.stdout.encode("ascii"), policy=policy.default)
    assert msg["To"].addresses[0].addr_spec == "ann@example.com"
    assert msg["Subject"] == "Ann, we miss you: 20% off your next order"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "WB-1" in msg.get_body(("html",)).get_content() or "WB-2" in msg.get_body(("html",)).get_content()
    with rapp.session() as s:  # a dry run: the code is still free and no link was registered
        assert s.scalar(select(func.count()).select_from(Coupon).where(Coupon.assigned_at.is_not(None))) == 0
        assert s.scalar(select(func.count()).select_from(TrackedLink)) == 0


def test_render_of_an_sms_shows_body_encoding_and_segments(rcli):
    rcli("contacts", "add", "--phone", "+14155550100", "--name", "Ann Lee")
    r = rcli("templates", "render", "flash_sale", "--contact", "+14155550100", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["encoding"] == "GSM-7" and out["segments"] == 1 and out["body"].endswith("Reply STOP to opt out")


def test_render_failure_for_a_contact_is_one_red_line(rcli, tdir):
    rcli("contacts", "add", "--email", "ann@example.com")
    (tdir / "city").mkdir()
    (tdir / "city" / "subject.txt").write_text("{{ contact.attributes.city }}")
    (tdir / "city" / "body.html").write_text("<a href='{{ unsubscribe_url }}'>u</a>")
    r = rcli("templates", "render", "city", "--contact", "ann@example.com")
    assert r.exit_code == 1
    assert "has no attribute 'city'" in r.stderr and "Traceback" not in r.output


def test_send_test_with_the_file_transport_writes_an_eml_to_the_outbox(rcli, rsettings):
    r = rcli("templates", "send-test", "welcome", "--to", "me@example.com")
    assert r.exit_code == 0, r.output
    files = list(rsettings.path(rsettings.sending.outbox_dir).glob("test-welcome-*.eml"))
    assert len(files) == 1
    msg = email.message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert msg["To"].addresses[0].addr_spec == "me@example.com"
    assert "Welcome, Test!" in msg.get_body(("html",)).get_content()


class _Sink:
    def __init__(self) -> None:
        self.envelopes: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def smtp_sink():
    sink = _Sink()
    port = _free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    yield sink, port
    controller.stop()


def test_send_test_with_smtp_delivers_to_a_real_server(tmp_path, db_url, tdir, smtp_sink):
    sink, port = smtp_sink
    config = write_config(tmp_path, db_url, 'templates_dir = "templates"\n'
                          f'[sending]\ntransport = "smtp"\n[smtp]\nhost = "127.0.0.1"\nport = {port}\n')
    cli = CliRunner(config)
    r = cli("templates", "send-test", "newsletter", "--to", "me@example.com")
    assert r.exit_code == 0, r.output
    (mail_from, rcpts, data), = sink.envelopes
    assert rcpts == ["me@example.com"] and mail_from.startswith("bounces+0-")
    msg = email.message_from_bytes(data, policy=policy.default)
    assert msg["Subject"].startswith("Example Shop monthly:")
    assert msg.get_body(("plain",)) is not None


def test_send_test_reports_an_unreachable_smtp_server_in_one_line(tmp_path, db_url, tdir):
    config = write_config(tmp_path, db_url, 'templates_dir = "templates"\n'
                          f'[sending]\ntransport = "smtp"\n[smtp]\nhost = "127.0.0.1"\nport = {_free_port()}\n'
                          'timeout_seconds = 2\n')
    r = CliRunner(config)("templates", "send-test", "welcome", "--to", "me@example.com")
    assert r.exit_code == 1 and "could not send through SMTP" in r.stderr and "Traceback" not in r.output


def test_coupons_import_and_list(rcli, tmp_path):
    (tmp_path / "c.txt").write_text("A\nB\nC\n")
    r = rcli("coupons", "import", "SPRING", str(tmp_path / "c.txt"), "--json")
    assert json.loads(r.stdout) == {"pool": "SPRING", "added": 3, "total": 3, "available": 3}
    rows = json.loads(rcli("coupons", "list", "--json").stdout)
    assert rows == [{"pool": "SPRING", "total": 3, "used": 0, "available": 3}]
    bad = rcli("coupons", "import", "bad pool", str(tmp_path / "c.txt"))
    assert bad.exit_code == 1 and "coupon pool 'bad pool'" in bad.stderr
