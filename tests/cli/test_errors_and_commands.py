"""The CLI as a marketer meets it: help, init, clear one-line errors, suppression, listing."""

import json
import os
import subprocess
import sys

from tests.conftest import CliRunner, write_config


def test_help_and_python_dash_m_work_without_a_config(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNS_")}
    r = subprocess.run([sys.executable, "-m", "campaigns", "--help"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "contacts" in r.stdout and "consent" in r.stdout


def test_init_creates_then_reports_up_to_date(tmp_path):
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path}/fresh.db")
    run = CliRunner(cfg)
    r = run("init")
    assert r.exit_code == 0 and "created database" in r.stdout, r.output
    assert "up to date" in run("init").stdout
    assert (tmp_path / "outbox").is_dir() and (tmp_path / "templates").is_dir()


def test_commands_on_an_uninitialised_database_say_to_run_init(tmp_path):
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path}/never.db")
    r = CliRunner(cfg)("contacts", "list")
    assert r.exit_code == 1 and "campaigns init" in r.stderr and "Traceback" not in r.output


def test_unreachable_database_is_one_line(tmp_path):
    cfg = write_config(tmp_path, "postgresql://nobody@127.0.0.1:1/none")
    r = CliRunner(cfg)("contacts", "list")
    assert r.exit_code == 1 and "cannot open the database" in r.stderr
    assert len([line for line in r.stderr.splitlines() if line.strip()]) == 1


def test_bad_config_is_one_line_naming_the_key(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text("[smtp]\nport = 'twenty-five'\n")
    r = CliRunner(cfg)("contacts", "list")
    assert r.exit_code == 1 and "[smtp] port" in r.stderr and "Traceback" not in r.output


def test_suppress_add_list_remove(cli):
    assert cli("suppress", "add", "Spam@Example.com", "--channel", "email", "--note", "asked").exit_code == 0
    assert "already" in cli("suppress", "add", "spam@example.com", "--channel", "email").stdout
    assert cli("suppress", "add", "(415) 555-0100", "--channel", "sms", "--reason", "stop").exit_code == 0
    listed = json.loads(cli("suppress", "list", "--json").stdout)
    assert {(e["channel"], e["address"], e["reason"]) for e in listed} == {
        ("email", "spam@example.com", "manual"), ("sms", "+14155550100", "stop")}
    assert cli("suppress", "remove", "spam@example.com", "--channel", "email").exit_code == 0
    r = cli("suppress", "remove", "spam@example.com", "--channel", "email")
    assert r.exit_code == 1 and "not suppressed" in r.stderr
    r = cli("suppress", "add", "x@example.com", "--channel", "email", "--reason", "bored")
    assert r.exit_code == 1 and "reason" in r.stderr
    r = cli("suppress", "add", "not-a-phone", "--channel", "sms")
    assert r.exit_code == 1 and "phone" in r.stderr


def test_contacts_add_list_show_and_csv(cli):
    r = cli("contacts", "add", "--email", "a@example.com", "--name", "Ann", "--attr", "city=Paris",
            "--tag", "vip", "--consent", "email", "--source", "phone call", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["attributes"] == {"city": "Paris"}
    dup = cli("contacts", "add", "--email", "A@example.com")
    assert dup.exit_code == 1 and "already exists" in dup.stderr
    assert cli("contacts", "add", "--email", "bad@").exit_code == 1
    assert cli("contacts", "add", "--email", "b@example.com", "--attr", "novalue").exit_code == 1
    rows = json.loads(cli("contacts", "list", "--json").stdout)
    assert [r["email"] for r in rows] == ["a@example.com"]
    csv_out = cli("contacts", "list", "--csv").stdout.splitlines()
    assert csv_out[0].startswith("id,external_id,email") and "a@example.com" in csv_out[1]
    shown = json.loads(cli("contacts", "show", "#1", "--json").stdout)
    assert shown["consent_email"] == "granted" and shown["tags"] == ["vip"]
    assert "Ann" in cli("contacts", "list", "--search", "ann").stdout
    assert cli("contacts", "show", "nobody").exit_code == 1
