"""`templates send-test` hands its message to the dispatcher's SMTP channel (one transport
layer): the server's answer is classified as it is for a campaign's messages."""

from __future__ import annotations

import email
from email import policy

from tests.conftest import CliRunner, write_config
from tests.support.smtp import FaultySmtp


def _cli(tmp_path, db_url, server: FaultySmtp) -> CliRunner:  # type: ignore[no-untyped-def]
    import shutil
    from pathlib import Path

    shutil.copytree(Path(__file__).resolve().parents[2] / "templates", tmp_path / "templates")
    return CliRunner(write_config(tmp_path, db_url, 'templates_dir = "templates"\n' + server.config_toml()))


def test_send_test_goes_through_the_channel_and_says_what_the_server_meant(tmp_path, db_url):
    server = FaultySmtp().start()
    server.hard_bounce = {"gone@example.com"}
    try:
        cli = _cli(tmp_path, db_url, server)
        r = cli("templates", "send-test", "welcome", "--to", "me@example.com")
        assert r.exit_code == 0, r.output
        (rcpt, message_id, mail_from), = server.received
        assert rcpt == "me@example.com" and mail_from.startswith("bounces+0-")
        msg = email.message_from_bytes(server.raw[0], policy=policy.default)
        assert msg["Message-ID"] == message_id and msg["To"].addresses[0].addr_spec == "me@example.com"

        r = cli("templates", "send-test", "welcome", "--to", "gone@example.com")
        assert r.exit_code == 1 and "Traceback" not in r.output
        line, = r.stderr.strip().splitlines()
        assert "this address does not exist" in line and "5.1.1" in line
        assert len(server.received) == 1
    finally:
        server.stop()
