"""Archiving a campaign frees its segment (issue 23): `segments delete` works afterwards, while
the archived campaign keeps saying what it targeted (a snapshot of the segment's name and
definition), its reports stay intact and nothing crashes on a campaign without a segment.
Every other status still blocks the deletion, naming the campaign."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update

from campaigns.store.models import Campaign, Segment

REPO_TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
WHERE = 'email contains "@"'


@pytest.fixture
def shop(cli, tmp_path):
    shutil.copytree(REPO_TEMPLATES, tmp_path / "templates", dirs_exist_ok=True)
    (tmp_path / "c.csv").write_text("email,name\na@example.com,Ann\nb@example.com,Bob\n")
    assert cli("contacts", "import", str(tmp_path / "c.csv"), "--consent", "email", "--source", "form").exit_code == 0
    assert cli("segments", "create", "all", "--where", WHERE).exit_code == 0
    return cli


def _sent_and_archived(shop, name: str = "old") -> None:
    """A campaign with history (an extra run sent now), cancelled and archived."""
    assert shop("new", name, "--segment", "all", "--channel", "email", "--template", "welcome",
                "--at", "2030-01-01 09:00", "--activate").exit_code == 0
    r = shop("send", name, "--now")
    assert r.exit_code == 0, r.output
    assert shop("cancel", name).exit_code == 0
    r = shop("archive", name)
    assert r.exit_code == 0, r.output


def test_archiving_frees_the_segment_and_the_campaign_still_says_what_it_targeted(shop) -> None:
    _sent_and_archived(shop)
    before = json.loads(shop("report", "old", "--json").stdout)
    r = shop("segments", "delete", "all")
    assert r.exit_code == 0, r.output
    shown = json.loads(shop("show", "old", "--json").stdout)
    assert shown["segment"] == "all" and shown["segment_definition"] == WHERE
    assert shown["status"] == "archived" and len(shown["runs"]) == 1
    text = shop("show", "old")
    assert text.exit_code == 0 and "deleted" in text.stdout and "Traceback" not in text.output
    after = json.loads(shop("report", "old", "--json").stdout)
    assert after["funnel"] == before["funnel"] and after["funnel"]["sent"] == 2
    assert after["campaign"]["segment"] == "all" and after["campaign"]["segment_definition"] == WHERE
    r = shop("report", "old")
    assert r.exit_code == 0 and WHERE in r.stdout
    for args in (("list", "--all"), ("list", "--all", "--json"), ("calendar",), ("status",), ("report",)):
        r = shop(*args)
        assert r.exit_code == 0 and "Traceback" not in r.output, (args, r.output)
    assert [c["segment"] for c in json.loads(shop("list", "--all", "--json").stdout)] == ["all"]


def test_the_snapshot_is_what_the_campaign_targeted_not_a_later_edit(shop) -> None:
    _sent_and_archived(shop)
    r = shop("segments", "edit", "all", "--where", 'email contains "example"', "--yes")
    assert r.exit_code == 0, r.output
    shown = json.loads(shop("show", "old", "--json").stdout)
    assert shown["segment"] == "all" and shown["segment_definition"] == WHERE
    assert json.loads(shop("segments", "show", "all", "--json").stdout)["used_by_campaigns"] == []


def test_cloning_an_archived_campaign_whose_segment_was_deleted_says_how_in_one_line(shop) -> None:
    _sent_and_archived(shop)
    assert shop("segments", "delete", "all").exit_code == 0
    r = shop("clone", "old", "again")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert len(r.stderr.strip().splitlines()) == 1
    assert "segment 'all'" in r.stderr and "deleted" in r.stderr and "campaigns segments create all" in r.stderr
    assert shop("show", "again").exit_code == 1  # nothing half-made
    # Following the hint works: the segment made again under its name, the clone targets it.
    assert shop("segments", "create", "all", "--where", WHERE).exit_code == 0
    r = shop("clone", "old", "again")
    assert r.exit_code == 0, r.output
    assert json.loads(shop("show", "again", "--json").stdout)["segment"] == "all"
    r = shop("segments", "delete", "all")
    assert r.exit_code == 1 and "again" in r.stderr and "old" not in r.stderr


@pytest.mark.parametrize("status", ["draft", "scheduled", "paused", "completed", "cancelled", "sent"])
def test_a_campaign_not_archived_still_blocks_the_deletion_naming_it(shop, app, status) -> None:
    assert shop("new", "spring", "--segment", "all", "--channel", "email", "--template", "welcome",
                "--at", "2030-01-01 09:00").exit_code == 0
    with app.session() as s:
        s.execute(update(Campaign).where(Campaign.name == "spring").values(status=status))
    r = shop("segments", "delete", "all")
    assert r.exit_code == 1
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "spring" in r.stderr and "Traceback" not in r.output
    assert json.loads(shop("segments", "show", "all", "--json").stdout)["used_by_campaigns"] == ["spring"]


def test_a_manual_campaign_that_has_sent_can_be_archived(shop) -> None:
    assert shop("new", "once", "--segment", "all", "--channel", "email", "--template", "welcome").exit_code == 0
    assert shop("send", "once", "--now").exit_code == 0
    assert json.loads(shop("show", "once", "--json").stdout)["status"] == "sent"
    r = shop("archive", "once")
    assert r.exit_code == 0, r.output
    assert shop("segments", "delete", "all").exit_code == 0


def test_deleting_a_segment_row_sets_the_archived_campaigns_reference_to_null(shop, app) -> None:
    """The schema itself: segment_id is nullable, ON DELETE SET NULL (SQLite and PostgreSQL)."""
    _sent_and_archived(shop)
    with app.session() as s:
        s.execute(delete(Segment).where(Segment.name == "all"))
    with app.session() as s:
        c = s.scalar(select(Campaign).where(Campaign.name == "old"))
        assert c is not None and c.segment_id is None and c.segment is None
        assert (c.segment_name, c.segment_definition) == ("all", WHERE)
