"""Secrets (issue 17): `config show` masks credentials in every URL, and a secret key
shorter than 32 bytes is refused in one line by `config check` and the commands that sign."""

from __future__ import annotations

from tests.conftest import CliRunner, write_config


def test_config_show_masks_userinfo_and_credential_parameters_in_every_url(tmp_path, db_url) -> None:
    cfg = write_config(tmp_path, db_url, extra='[sms]\nbase_url = "https://AC1:sms-pass@sms.example/api?api_key=sms-key&region=eu"\n')
    for as_json in ((), ("--json",)):
        r = CliRunner(cfg)("config", "show", *as_json)
        assert r.exit_code == 0, r.output
        assert "sms-pass" not in r.output and "sms-key" not in r.output and "AC1" not in r.output
        assert "sms.example" in r.output and "region=eu" in r.output


def test_a_database_url_query_credential_is_masked(tmp_path) -> None:
    from campaigns.config import safe_url

    shown = safe_url("postgresql://app:db-pass@db.example/campaigns?sslpassword=ssl-pass&application_name=x")
    assert "db-pass" not in shown and "ssl-pass" not in shown and "application_name=x" in shown


def test_a_short_secret_key_is_refused_in_one_line(tmp_path, db_url) -> None:
    cfg = write_config(tmp_path, db_url)
    cfg.write_text(cfg.read_text().replace('secret_key = "test-secret-key-not-for-production"', 'secret_key = "a"'))
    r = CliRunner(cfg)("config", "check")
    assert r.exit_code != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "at least 32 bytes" in lines[0] and "secret_key" in lines[0], r.stderr


def test_function_keys_and_bearer_tokens_in_a_query_are_masked() -> None:
    """Azure Functions take their key as ?code=, some gateways a ?jwt= or ?bearer=."""
    from campaigns.config import safe_url

    shown = safe_url("https://fn.example/api/sms?code=AZ-fn-key&jwt=j.w.t&bearer=b1&hmac=h1&country_code=FR")
    assert not any(s in shown for s in ("AZ-fn-key", "j.w.t", "b1", "h1")), shown
    assert "country_code=FR" in shown
