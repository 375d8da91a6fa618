"""An http public_url under smtp is said out loud; each campaign's mail carries a List-Id."""

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

    cfg = write_config(tmp_path, db_url, '[sending]\ntransport = "smtp"\n')
    lines = startup_warnings(load_settings(cfg, environ={}))
    assert len(lines) == 2 and "https" in lines[0] and "inbound SMS" in lines[1] and "\n" not in "".join(lines)


def test_each_campaign_email_has_a_list_id(shop):
    msg = shop.message()
    list_id = msg["List-Id"]
    assert list_id == f"<promo-{shop.campaign_id}.example.com>"
