"""`topics` as a segment field, the topics commands, --topic on campaigns, and consent history."""

from __future__ import annotations

import json

import pytest

from campaigns.audience import consent as ledger
from campaigns.audience.contacts import find_contact
from campaigns.audience.topics import create_topic, get_topic
from campaigns.errors import InputError
from campaigns.segments import count_segment, create_segment
from tests.conftest import CliRunner
from tests.scheduler.conftest import add_people


@pytest.fixture
def app(make_app):  # type: ignore[no-untyped-def]
    a = make_app()
    add_people(a, 4)
    with a.session() as s:
        news = create_topic(s, "news", "The newsletter")
        offers = create_topic(s, "offers")
        ledger.leave_topic(s, find_contact(s, "p0@example.com"), news.id, "email", "test")
        ledger.leave_topic(s, find_contact(s, "p1@example.com"), news.id, "email", "test")
        ledger.leave_topic(s, find_contact(s, "p1@example.com"), offers.id, "email", "test")
        ledger.join_topic(s, find_contact(s, "p1@example.com"), news.id, "email", "came back")
    return a


def _count(app, where: str) -> int:  # type: ignore[no-untyped-def]
    with app.session() as s:
        seg = create_segment(s, app.settings, f"s{abs(hash(where)) % 10**8}", where)
        return count_segment(s, seg, app.settings)


def test_topics_field_counts_who_is_in_a_topic(app):
    assert _count(app, 'topics contains "news"') == 3  # p0 left; p1 left and came back
    assert _count(app, 'topics contains "offers"') == 3  # p1 left
    assert _count(app, 'topics not in ["news"]') == 1
    assert _count(app, 'topics in ["news", "offers"]') == 4
    assert _count(app, 'not topics contains "offers" and consent.email') == 1
    assert _count(app, 'topics contains "nosuchtopic"') == 0  # a missing topic has nobody in it


def test_topics_field_refuses_operators_it_has_not(app):
    with app.session() as s, pytest.raises(InputError, match="topics"):
        create_segment(s, app.settings, "bad", "topics > 3")


@pytest.fixture
def cli(make_app, tmp_path):  # type: ignore[no-untyped-def]
    a = make_app()
    add_people(a, 2)
    return CliRunner(tmp_path / "config.toml")


def test_topics_commands_and_campaign_topic(cli):
    r = cli("topics", "create", "news", "--description", "The monthly newsletter")
    assert r.exit_code == 0, r.output
    assert cli("topics", "create", "news").exit_code != 0  # taken
    bad = cli("topics", "create", "Bad Name!")
    assert bad.exit_code != 0 and "NAME" in bad.output and "Traceback" not in bad.output
    assert cli("segments", "create", "all", "--where", 'email contains "@"').exit_code == 0
    r = cli("new", "monthly", "--segment", "all", "--channel", "email", "--template", "welcome", "--topic", "news")
    assert r.exit_code == 0, r.output
    missing = cli("new", "other", "--segment", "all", "--channel", "email", "--template", "welcome", "--topic", "nope")
    assert missing.exit_code != 0 and "--topic" in missing.output and "Traceback" not in missing.output
    shown = json.loads(cli("show", "monthly", "--json").stdout)
    assert shown["topic"] == "news"
    assert cli("clone", "monthly", "monthly-2").exit_code == 0
    assert json.loads(cli("show", "monthly-2", "--json").stdout)["topic"] == "news"
    listed = json.loads(cli("topics", "list", "--json").stdout)
    assert listed == [{"name": "news", "description": "The monthly newsletter", "campaigns": 2, "left": 0,
                       "created_at": listed[0]["created_at"]}]
    refused = cli("topics", "delete", "news")
    assert refused.exit_code != 0 and "monthly" in refused.output
    assert cli("edit", "monthly", "--topic", "none").exit_code == 0
    assert json.loads(cli("show", "monthly", "--json").stdout)["topic"] is None
    assert "news" in cli("topics", "list").stdout


def test_consent_history_shows_topic_events_in_every_format(cli):
    assert cli("topics", "create", "news").exit_code == 0
    assert cli("topics", "leave", "p0@example.com", "news", "--source", "phone call").exit_code == 0
    rows = json.loads(cli("consent", "history", "p0@example.com", "--json").stdout)
    assert [(r["topic"], r["action"]) for r in rows] == [(None, "granted"), ("news", "left topic")]
    csv_out = cli("consent", "history", "p0@example.com", "--csv").stdout
    assert "news,left topic" in csv_out
    assert "left topic" in cli("consent", "history", "p0@example.com").stdout
    assert json.loads(cli("topics", "list", "--json").stdout)[0]["left"] == 1
    assert cli("topics", "join", "p0@example.com", "news", "--source", "form").exit_code == 0
    refused = cli("topics", "delete", "news")
    assert refused.exit_code != 0 and "ledger" in refused.output
    assert cli("topics", "create", "spare").exit_code == 0
    assert cli("topics", "delete", "spare").exit_code == 0


def test_get_topic_names_the_option(app):
    with app.session() as s, pytest.raises(Exception, match="--topic: no topic 'x'"):
        get_topic(s, "x")


def test_send_dry_run_previews_the_topic_skip(cli):
    assert cli("topics", "create", "news").exit_code == 0
    assert cli("segments", "create", "all", "--where", 'email contains "@"').exit_code == 0
    assert cli("new", "monthly", "--segment", "all", "--channel", "email", "--template", "welcome", "--topic", "news").exit_code == 0
    assert cli("new", "plain", "--segment", "all", "--channel", "email", "--template", "welcome").exit_code == 0
    assert cli("topics", "leave", "p1@example.com", "news", "--source", "phone call").exit_code == 0
    preview = cli("send", "monthly", "--dry-run")
    assert preview.exit_code == 0, preview.output
    assert "1 left topic" in preview.output and "p1@example.com" not in preview.output
    plain = cli("send", "plain", "--dry-run")
    assert "left topic" not in plain.output and "p1@example.com" in plain.output


def test_an_archived_campaign_does_not_keep_its_topic_from_deletion(cli):
    assert cli("topics", "create", "news").exit_code == 0
    assert cli("segments", "create", "all", "--where", 'email contains "@"').exit_code == 0
    assert cli("new", "old", "--segment", "all", "--channel", "email", "--template", "welcome", "--topic", "news").exit_code == 0
    assert cli("new", "live", "--segment", "all", "--channel", "email", "--template", "welcome", "--topic", "news").exit_code == 0
    assert cli("cancel", "old").exit_code == 0
    assert cli("archive", "old").exit_code == 0
    refused = cli("topics", "delete", "news")  # the live one still carries it, and only it is named
    assert refused.exit_code != 0 and "live" in refused.output and "old" not in refused.output
    assert cli("delete", "live", "--yes").exit_code == 0
    done = cli("topics", "delete", "news")
    assert done.exit_code == 0, done.output
    assert "news" not in cli("topics", "list").stdout
    assert json.loads(cli("show", "old", "--json").stdout)["topic"] == "news"  # what it was about, kept as archived
