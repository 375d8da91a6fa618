"""An http public_url under smtp is said out loud; each campaign's mail carries a List-Id."""

import pytest

from campaigns.config import load_settings
from tests.conftest import CliRunner, write_config


def test_config_check_warns_in_one_line_when_smtp_mail_would_carry_http_links(tmp_path, db_url):
    smtp = '[sending]\ntransport = "smtp"\npostal_address = "1 Main St, Springfield"\n'
    cfg = write_config(tmp_path, db_url, smtp + '[tracking]\npublic_url = "http://track.example.com"\n')
    run = CliRunner(cfg)
    assert run("init").exit_code == 0
    r = run("config", "check")
    assert r.exit_code == 0, r.output
    lines = [line for line in r.stderr.splitlines() if "https" in line]
    assert len(lines) == 1 and "public_url" in lines[0]
    https = write_config(tmp_path, db_url, smtp + '[tracking]\npublic_url = "https://track.example.com"\n')
    assert "https" not in CliRunner(https)("config", "check").stderr


def test_daemon_start_lines_name_http_links_and_an_unauthenticated_sms_endpoint(tmp_path, db_url):
    from campaigns.tracking.guard import startup_warnings

    cfg = write_config(tmp_path, db_url, '[sending]\ntransport = "smtp"\npostal_address = "1 Main St"\n')
    lines = startup_warnings(load_settings(cfg, environ={}))
    assert len(lines) == 2 and "https" in lines[0] and "inbound SMS" in lines[1] and "\n" not in "".join(lines)


def _started(tmp_path, db_url, monkeypatch, extra, *command):
    """What a command that would run until signalled prints at start (it returns at once here)."""
    import scheduler.daemon

    monkeypatch.setattr(scheduler.daemon, "run_until_signalled", lambda run: None)
    from tests.support.smtp import free_port

    run = CliRunner(write_config(tmp_path, db_url, extra.replace("port = 0", f"port = {free_port()}")))
    assert run("init").exit_code == 0
    r = run(*command)
    assert r.exit_code == 0, r.output
    return [line for line in r.stderr.splitlines() if line.strip()]


SMTP_HTTP = '[sending]\ntransport = "smtp"\n[tracking]\npublic_url = "http://track.example.com"\nport = 0\n'


@pytest.mark.parametrize("command", [("daemon",), ("worker",), ("track", "serve")])
def test_each_process_that_sends_or_serves_says_at_start_that_links_are_http_and_sms_inbound_is_off(tmp_path, db_url, monkeypatch, command):
    lines = _started(tmp_path, db_url, monkeypatch, SMTP_HTTP + '[smtp]\nhost = "127.0.0.1"\n', *command)
    assert len([line for line in lines if "public_url is http://track.example.com" in line]) == 1, lines
    sms_off = [line for line in lines if "inbound SMS (/sms/inbound) is off: set [sms] auth_token" in line]
    assert len(sms_off) == (0 if command == ("worker",) else 1), lines  # only what serves the endpoint says so


@pytest.mark.parametrize("command", [("daemon",), ("worker",)])
def test_each_sender_says_at_start_that_marketing_email_lacks_a_postal_address(tmp_path, db_url, monkeypatch, command):
    lines = _started(tmp_path, db_url, monkeypatch, SMTP_HTTP + '[smtp]\nhost = "127.0.0.1"\n', *command)
    assert len([line for line in lines if "[sending] postal_address is empty" in line]) == 1, lines
    with_address = SMTP_HTTP.replace('transport = "smtp"\n', 'transport = "smtp"\npostal_address = "1 Main St"\n')
    assert not [line for line in _started(tmp_path, db_url, monkeypatch, with_address, *command) if "postal_address" in line]


def test_each_campaign_email_has_a_list_id(shop):
    msg = shop.message()
    list_id = msg["List-Id"]
    assert list_id == f"<promo-{shop.campaign_id}.example.com>"
