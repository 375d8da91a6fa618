"""The campaign lifecycle: a new campaign is a draft the daemon ignores until activated;
drafts can be cloned and deleted; a campaign with history cannot be deleted."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from campaigns.store.models import Campaign, Delivery
from scheduler.jobs import tick

REPO_TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


@pytest.fixture
def shop(cli, tmp_path):
    shutil.copytree(REPO_TEMPLATES, tmp_path / "templates", dirs_exist_ok=True)
    (tmp_path / "c.csv").write_text("email,name\na@example.com,Ann\nb@example.com,Bob\n")
    assert cli("contacts", "import", str(tmp_path / "c.csv"), "--consent", "email", "--source", "form").exit_code == 0
    assert cli("segments", "create", "all", "--where", 'email contains "@"').exit_code == 0
    return cli


def _deliveries(app, name: str) -> int:
    with app.session() as s:
        cid = s.scalar(select(Campaign.id).where(Campaign.name == name))
        return int(s.scalar(select(func.count()).select_from(Delivery).where(Delivery.campaign_id == cid)) or 0)


def _status(cli, name: str) -> str:
    return json.loads(cli("show", name, "--json").stdout)["status"]


def test_a_new_drip_is_a_draft_the_daemon_ignores_until_activated(shop, app) -> None:
    r = shop("new", "onboarding", "--segment", "all", "--channel", "email", "--step", "0d:welcome")
    assert r.exit_code == 0, r.output
    assert "draft" in r.stdout and "campaigns activate onboarding" in r.stdout
    tick(app)
    assert _deliveries(app, "onboarding") == 0 and _status(shop, "onboarding") == "draft"
    r = shop("activate", "onboarding")
    assert r.exit_code == 0, r.output
    assert _status(shop, "onboarding") == "scheduled"
    tick(app)
    assert _deliveries(app, "onboarding") == 2
    r = shop("activate", "onboarding")
    assert r.exit_code == 1 and "only a draft can be activated" in r.stderr


def test_new_with_activate_is_live_at_once(shop, app) -> None:
    r = shop("new", "drip", "--segment", "all", "--channel", "email", "--step", "0d:welcome", "--activate")
    assert r.exit_code == 0 and _status(shop, "drip") == "scheduled"
    tick(app)
    assert _deliveries(app, "drip") == 2


def test_editing_a_draft_does_not_make_it_live(shop) -> None:
    assert shop("new", "later", "--segment", "all", "--channel", "email", "--template", "welcome").exit_code == 0
    assert shop("edit", "later", "--at", "2030-01-01 09:00").exit_code == 0
    assert _status(shop, "later") == "draft"


def test_a_manual_campaign_cannot_be_activated_and_says_how_to_send(shop) -> None:
    assert shop("new", "now", "--segment", "all", "--channel", "email", "--template", "welcome").exit_code == 0
    r = shop("activate", "now")
    assert r.exit_code == 1 and "campaigns send now --now" in r.stderr


def test_clone_copies_the_definition_as_a_draft(shop) -> None:
    assert shop("new", "spring", "--segment", "all", "--channel", "email", "--template", "welcome",
                "--at", "2030-01-01 09:00", "--holdout", "10%", "--activate").exit_code == 0
    r = shop("clone", "spring", "spring-again")
    assert r.exit_code == 0, r.output
    copy = json.loads(shop("show", "spring-again", "--json").stdout)
    assert copy["status"] == "draft" and copy["holdout_pct"] == 10 and copy["segment"] == "all"
    assert copy["utm"]["campaign"] == "spring-again" and copy["runs"] == []
    r = shop("clone", "spring", "spring-again")
    assert r.exit_code == 1 and "already exists" in r.stderr


def test_a_clone_of_a_past_one_off_cannot_go_live_until_it_has_a_new_time(shop, app) -> None:
    """Cloning last month's one-off and activating it said 'live' for a time already gone: it would never fire."""
    assert shop("new", "spring", "--segment", "all", "--channel", "email", "--template", "welcome",
                "--at", "2030-01-01 09:00").exit_code == 0
    with app.session() as s:  # last year's campaign: its time has passed
        s.execute(update(Campaign).where(Campaign.name == "spring").values(send_at=datetime(2020, 3, 1, 9, tzinfo=UTC)))
    r = shop("clone", "spring", "spring-again")
    assert r.exit_code == 0 and "campaigns edit spring-again --at" in r.stdout
    r = shop("activate", "spring-again")
    assert r.exit_code == 1 and "2020-03-01 09:00" in r.stderr and "has passed" in r.stderr
    assert "campaigns edit spring-again --at" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert _status(shop, "spring-again") == "draft"
    assert shop("edit", "spring-again", "--at", "2030-03-01 09:00").exit_code == 0
    r = shop("activate", "spring-again")
    assert r.exit_code == 0, r.output


def test_delete_removes_a_draft_but_never_one_with_history(shop) -> None:
    assert shop("new", "oops", "--segment", "all", "--channel", "email", "--template", "welcome").exit_code == 0
    r = shop("delete", "oops", "--yes")
    assert r.exit_code == 0, r.output
    assert shop("show", "oops").exit_code == 1
    assert shop("new", "once", "--segment", "all", "--channel", "email", "--template", "welcome").exit_code == 0
    assert shop("send", "once", "--now").exit_code == 0
    r = shop("delete", "once", "--yes")  # a manual campaign that sent is 'sent', not a draft: it has history
    assert r.exit_code == 1 and "only a draft can be deleted" in r.stderr
    assert shop("new", "live", "--segment", "all", "--channel", "email", "--template", "welcome",
                "--at", "2030-01-01 09:00", "--activate").exit_code == 0
    r = shop("delete", "live", "--yes")
    assert r.exit_code == 1 and "only a draft can be deleted" in r.stderr


def test_archive_puts_a_finished_campaign_away(shop) -> None:
    assert shop("new", "old", "--segment", "all", "--channel", "email", "--template", "welcome",
                "--at", "2030-01-01 09:00", "--activate").exit_code == 0
    r = shop("archive", "old")
    assert r.exit_code == 1 and "cancel it first" in r.stderr
    assert shop("cancel", "old").exit_code == 0
    r = shop("archive", "old")
    assert r.exit_code == 0, r.output
    assert [c["name"] for c in json.loads(shop("list", "--json").stdout)] == []
    listed = json.loads(shop("list", "--all", "--json").stdout)
    assert [(c["name"], c["status"]) for c in listed] == [("old", "archived")]
    for args in (("send", "old", "--now"), ("edit", "old", "--holdout", "5%"), ("resume", "old")):
        r = shop(*args)
        assert r.exit_code == 1 and "archived" in r.stderr, args
    assert shop("clone", "old", "old-again").exit_code == 0  # last year's campaign, again
