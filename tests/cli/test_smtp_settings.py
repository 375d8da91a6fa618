"""SMTP over TLS with a private CA and a certificate name other than the host we dial; the
EHLO name is ours to set; a TLS failure is shown with its cause where the marketer looks."""

from __future__ import annotations

import json
import shutil
import ssl
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from tests.conftest import CliRunner, write_config
from tests.support.smtp import free_port

TLS = Path(__file__).resolve().parents[1] / "support" / "tls"
REPO_TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


class _Recorder:
    def __init__(self) -> None:
        self.helo: list[str] = []
        self.messages: list[bytes] = []

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # type: ignore[no-untyped-def]
        self.helo.append(hostname)
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.messages.append(envelope.content)
        return "250 OK"


@pytest.fixture
def tls_server():
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(TLS / "server.pem", TLS / "server.key")
    recorder = _Recorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True)
    controller.start()
    try:
        yield recorder, port
    finally:
        controller.stop()


def _shop(tmp_path: Path, db_url: str, port: int, smtp: str) -> CliRunner:
    extra = ('[sending]\ntransport = "smtp"\npostal_address = "1 Main St, Springfield"\n'
             f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "starttls"\ntimeout_seconds = 5\n{smtp}')
    cli = CliRunner(write_config(tmp_path, db_url, extra))
    shutil.copytree(REPO_TEMPLATES, tmp_path / "templates", dirs_exist_ok=True)
    assert cli("init").exit_code == 0
    (tmp_path / "c.csv").write_text("email\na@example.com\n")
    assert cli("contacts", "import", str(tmp_path / "c.csv"), "--consent", "email", "--source", "form").exit_code == 0
    assert cli("segments", "create", "all", "--where", 'email contains "@"').exit_code == 0
    assert cli("new", "hi", "--segment", "all", "--channel", "email", "--template", "welcome",
               "--quiet-hours", "none").exit_code == 0
    return cli


def test_starttls_with_a_private_ca_a_server_name_and_our_helo_name(tmp_path, db_url, tls_server) -> None:
    recorder, port = tls_server
    cli = _shop(tmp_path, db_url, port, f'ca_file = "{TLS / "ca.pem"}"\nserver_name = "mail.test"\n'
                                         'helo_name = "mailer.example.com"\n')
    r = cli("send", "hi", "--now")
    assert r.exit_code == 0, r.output
    assert "just now: 1 sent" in r.stdout and len(recorder.messages) == 1
    assert "mailer.example.com" in recorder.helo


def test_a_tls_failure_shows_its_cause_in_send_show_and_status(tmp_path, db_url, tls_server) -> None:
    recorder, port = tls_server
    cli = _shop(tmp_path, db_url, port, 'server_name = "mail.test"\n')  # the system CAs do not know ours
    r = cli("send", "hi", "--now")
    assert r.exit_code == 0, r.output
    assert "certificate verify failed" in r.stderr.lower() and "quiet hours" not in r.stderr
    assert recorder.messages == []
    shown = json.loads(cli("show", "hi", "--json").stdout)
    assert "certificate verify failed" in shown["last_error"].lower()
    status = json.loads(cli("status", "--json").stdout)
    assert any(e["campaign"] == "hi" and "certificate" in e["last_error"].lower() for e in status["errors"])


def test_config_check_names_a_missing_postal_address_and_ca_file(tmp_path, db_url) -> None:
    cfg = write_config(tmp_path, db_url, '[sending]\ntransport = "smtp"\n')
    assert CliRunner(cfg)("init").exit_code == 0
    r = CliRunner(cfg)("config", "check")
    assert r.exit_code == 1 and "[sending] postal_address" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    cfg = write_config(tmp_path, db_url, '[sending]\ntransport = "smtp"\npostal_address = "1 Main St"\n'
                                         '[smtp]\nca_file = "nowhere.pem"\n')
    r = CliRunner(cfg)("config", "check")
    assert r.exit_code == 1 and "[smtp] ca_file" in r.stderr
    cfg = write_config(tmp_path, db_url, '[sending]\ntransport = "smtp"\npostal_address = "1 Main St"\n')
    assert CliRunner(cfg)("config", "check").exit_code == 0
