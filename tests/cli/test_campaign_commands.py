"""Campaign commands as a marketer types them: clear refusals, previews, steering."""

import json
import shutil
from pathlib import Path

import pytest

REPO_TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


@pytest.fixture
def shop(cli, tmp_path):
    shutil.copytree(REPO_TEMPLATES, tmp_path / "templates", dirs_exist_ok=True)
    (tmp_path / "c.csv").write_text("email,name,city\na@example.com,Ann,Paris\nb@example.com,Bob,Rome\n")
    assert cli("contacts", "import", str(tmp_path / "c.csv"), "--consent", "email", "--source", "form").exit_code == 0
    assert cli("segments", "create", "paris", "--where", 'attributes.city = "Paris"').exit_code == 0
    return cli


def test_new_refuses_what_is_missing_with_one_line(shop):
    cases = [
        (["new", "x", "--segment", "nope", "--channel", "email", "--template", "welcome"], "no segment 'nope'"),
        (["new", "x", "--segment", "paris", "--channel", "email", "--template", "ghost"], "ghost"),
        (["new", "x", "--segment", "paris", "--channel", "sms", "--template", "welcome"], "is for email"),
        (["new", "x", "--segment", "paris", "--channel", "email", "--template", "welcome", "--cron", "every day"], "--cron"),
        (["new", "x", "--segment", "paris", "--channel", "email", "--template", "welcome", "--holdout", "150%"], "--holdout"),
        (["new", "x", "--segment", "paris", "--channel", "email", "--template", "welcome", "--cap", "lots"], "--cap"),
        (["new", "x", "--segment", "paris", "--channel", "email", "--template", "welcome", "--at", "tomorrow-ish"], "--at"),
        (["new", "x", "--segment", "paris", "--channel", "email", "--template", "welcome", "--at", "2026-12-01 09:00",
          "--cron", "0 9 * * *"], "choose one schedule"),
    ]
    for args, expected in cases:
        r = shop(*args)
        assert r.exit_code == 1, (args, r.output)
        assert expected in r.stderr and "Traceback" not in r.output, (args, r.stderr)
    assert json.loads(shop("list", "--json").stdout) == []


def test_dry_run_writes_nothing_and_send_now_sends(shop, tmp_path):
    assert shop("new", "hello", "--segment", "paris", "--channel", "email", "--template", "welcome",
                "--quiet-hours", "none").exit_code == 0
    preview = json.loads(shop("send", "hello", "--dry-run", "--json").stdout)
    assert preview["counts"]["planned"] == 1 and preview["sample"][0]["contact"] == "a@example.com"
    assert json.loads(shop("show", "hello", "--json").stdout)["runs"] == []
    sent = json.loads(shop("send", "hello", "--now", "--json").stdout)
    assert sent["sent"] == {"sent": 1}
    assert len(list((tmp_path / "outbox" / "email").glob("*.eml"))) == 1


def test_pause_resume_cancel_and_show(shop):
    assert shop("new", "later", "--segment", "paris", "--channel", "email", "--template", "welcome",
                "--at", "2030-01-01 09:00").exit_code == 0
    assert shop("pause", "later", "--reason", "waiting for legal").exit_code == 0
    shown = json.loads(shop("show", "later", "--json").stdout)
    assert shown["status"] == "paused" and shown["status_reason"] == "waiting for legal"
    r = shop("send", "later", "--now")
    assert r.exit_code == 1 and "resume it first" in r.stderr
    assert shop("resume", "later").exit_code == 0
    assert shop("cancel", "later").exit_code == 0
    again = shop("resume", "later")
    assert again.exit_code == 1 and "cancelled" in again.stderr
    status = json.loads(shop("status", "--json").stdout)
    assert status["processes"] == [] and status["upcoming"] == []
