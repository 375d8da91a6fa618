"""The schedule as a marketer sees it in the CLI: refusals, extra runs, statuses, previews, calendar."""

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
import time_machine

REPO_TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def shop(cli, tmp_path):
    shutil.copytree(REPO_TEMPLATES, tmp_path / "templates", dirs_exist_ok=True)
    (tmp_path / "c.csv").write_text("email,name,city,timezone\na@example.com,Ann,Paris,UTC\nb@example.com,Bob,Paris,Asia/Tokyo\n")
    assert cli("contacts", "import", str(tmp_path / "c.csv"), "--consent", "email", "--source", "form").exit_code == 0
    assert cli("segments", "create", "paris", "--where", 'attributes.city = "Paris"').exit_code == 0
    with time_machine.travel(NOW, tick=False):
        yield cli


NEW = ("new", "--segment", "paris", "--channel", "email", "--template", "welcome", "--quiet-hours", "none", "--cap", "none")


def _new(shop, name, *extra):
    scheduled = any(x in ("--at", "--cron", "--step") for x in extra)
    r = shop(NEW[0], name, *NEW[1:], *extra, *(("--activate",) if scheduled else ()))  # live, as the daemon needs
    assert r.exit_code == 0, r.output
    return r


def test_an_at_in_the_past_is_refused_in_one_line_and_nothing_is_created(shop):
    r = shop(NEW[0], "late", *NEW[1:], "--at", "2026-12-01 07:00")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert r.stderr.strip().count("\n") == 0 and "--at: '2026-12-01 07:00' is in the past" in r.stderr
    assert json.loads(shop("list", "--json").stdout) == []


def test_a_manual_campaign_is_sent_once_send_now_finished(shop):
    _new(shop, "hello")
    assert json.loads(shop("show", "hello", "--json").stdout)["status"] == "draft"
    assert json.loads(shop("send", "hello", "--now", "--json").stdout)["sent"] == {"sent": 2}
    assert json.loads(shop("show", "hello", "--json").stdout)["status"] == "sent"


def test_send_now_keeps_a_far_schedule_and_status_shows_it_beyond_400_days(shop):
    _new(shop, "later", "--at", "2030-01-01 09:00")
    assert json.loads(shop("send", "later", "--now", "--json").stdout)["sent"] == {"sent": 2}
    shown = json.loads(shop("show", "later", "--json").stdout)
    assert shown["status"] == "scheduled" and shown["next_firing"].startswith("2030-01-01T09:00")
    assert [r["note"] for r in shown["runs"]] == ["extra run (send --now)"]
    upcoming = json.loads(shop("status", "--json").stdout)["upcoming"]
    assert [(u["campaign"], u["next"][:16]) for u in upcoming] == [("later", "2030-01-01T09:00")]


def test_dry_run_of_a_local_time_campaign_uses_its_next_firing_and_shows_who_is_capped(shop):
    _new(shop, "first")
    assert shop("send", "first", "--now").exit_code == 0  # Ann and Bob got one marketing message today
    _new(shop, "morning", "--local-time", "--at", "2026-12-02 10:00", "--cap", "1/7d")
    preview = json.loads(shop("send", "morning", "--dry-run", "--json").stdout)
    assert preview["firing"].startswith("2026-12-02T10:00")
    assert sorted(preview["capped"]) == ["a@example.com", "b@example.com"]
    assert preview["counts"]["skipped"]["capped"] == 2
    shop("edit", "morning", "--cap", "none")
    preview = json.loads(shop("send", "morning", "--dry-run", "--json").stdout)
    due = {s["contact"]: s["due_at"][:16] for s in preview["sample"]}
    assert due == {"a@example.com": "2026-12-02T10:00", "b@example.com": "2026-12-02T01:00"}  # 10:00 in UTC, in Tokyo
    assert json.loads(shop("show", "morning", "--json").stdout)["runs"] == []  # a preview writes nothing


def test_calendar_lists_every_upcoming_firing_with_its_audience(shop):
    _new(shop, "daily", "--cron", "0 9 * * *")
    _new(shop, "oneoff", "--at", "2026-12-02 09:00")
    _new(shop, "far", "--at", "2027-06-01 09:00")
    rows = json.loads(shop("calendar", "--days", "3", "--json").stdout)
    assert [(r["at"][:16], r["campaign"], r["audience"]) for r in rows] == [
        ("2026-12-01T09:00", "daily", 2), ("2026-12-02T09:00", "daily", 2), ("2026-12-02T09:00", "oneoff", 2),
        ("2026-12-03T09:00", "daily", 2)]
    table = shop("calendar", "--days", "3")
    assert table.exit_code == 0 and "oneoff" in table.stdout and "far" not in table.stdout


def test_an_empty_calendar_says_so_in_a_sentence_not_an_empty_table(shop):
    _new(shop, "far", "--at", "2027-06-01 09:00")
    r = shop("calendar", "--days", "3")
    assert r.exit_code == 0 and "┏" not in r.stdout
    assert "Nothing is planned in the next 3 days" in r.stdout and "campaigns status" in r.stdout
    assert json.loads(shop("calendar", "--days", "3", "--json").stdout) == []
    status = shop("status")
    assert "Running" not in status.stdout and "no daemon or worker is running" in status.output
    assert "The outbox is empty." in status.stdout and "Outbox" not in status.stdout


def test_send_now_on_a_drip_is_refused_in_one_line_instead_of_failing_every_message(shop):
    """It planned an extra run with an empty template name: every message failed and the drip auto-paused."""
    _new(shop, "drip", "--step", "0d:welcome", "--step", "2d:newsletter")
    for flag in ("--now", "--dry-run"):
        r = shop("send", "drip", flag)
        assert r.exit_code == 1 and "drip" in r.stderr and "calendar" in r.stderr, r.output
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.output
    shown = json.loads(shop("show", "drip", "--json").stdout)
    assert shown["status"] == "scheduled" and shown["runs"] == [] and shown["outbox"] == {}


def test_calendar_shows_drip_steps_waiting_in_the_outbox(shop):
    from campaigns.config import load_settings
    from campaigns.context import App
    from scheduler.jobs import tick

    _new(shop, "drip", "--step", "0d:welcome", "--step", "2d:newsletter")
    app = App(load_settings(shop.config, environ={}))
    try:
        tick(app, NOW)  # both contacts enrolled: step 1 due now, step 2 in two days
    finally:
        app.engine.dispose()
    rows = json.loads(shop("calendar", "--days", "3", "--json").stdout)
    assert [(r["at"][:16], r["campaign"], r["what"], r["audience"], r["source"]) for r in rows] == [
        ("2026-12-01T08:00", "drip", "drip step 1", 2, "queued"), ("2026-12-03T08:00", "drip", "drip step 2", 2, "queued")]
