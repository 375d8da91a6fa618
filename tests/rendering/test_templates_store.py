"""The template folder convention: loading, listing, version hashes, lint, the template table."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from campaigns.errors import InputError, NotFoundError
from campaigns.messages.templates_store import (
    lint_template,
    list_templates,
    load_template,
    sync_template,
)
from campaigns.store.models import Template


def test_shipped_examples_load_with_their_channels(rsettings):
    found = {t.name: t for t in list_templates(rsettings)}
    assert {n: found[n].channel for n in ("welcome", "winback", "newsletter", "flash_sale")} == {
        "welcome": "email", "winback": "email", "newsletter": "email", "flash_sale": "sms"}
    assert found["welcome"].text is None and found["winback"].text is not None
    assert found["flash_sale"].sms_body and found["flash_sale"].subject is None


def test_every_shipped_example_lints_clean(rsettings):
    for name in ("welcome", "winback", "newsletter", "flash_sale"):
        assert lint_template(rsettings, name) == [], name


def test_version_hash_changes_with_any_file_of_the_template(rsettings, tdir):
    before = load_template(rsettings, "winback").version_hash
    (tdir / "winback" / "body.txt").write_text("changed {{ unsubscribe_url }}")
    assert load_template(rsettings, "winback").version_hash != before


@pytest.mark.parametrize(("files", "error"), [
    ({"body.html": "x"}, "missing subject.txt"),
    ({"subject.txt": "x"}, "missing body.html"),
    ({"subject.txt": "x", "body.html": "x", "sms.txt": "x"}, "both sms.txt and email files"),
    ({}, "missing subject.txt and body.html"),
])
def test_broken_folders_say_which_file_is_missing(rsettings, tdir, files, error):
    (tdir / "broken").mkdir()
    for fname, text in files.items():
        (tdir / "broken" / fname).write_text(text)
    with pytest.raises(InputError, match=error):
        load_template(rsettings, "broken")
    assert "broken" not in {t.name for t in list_templates(rsettings)}
    assert lint_template(rsettings, "broken")[0].level == "error"


def test_unknown_and_unsafe_names_are_refused(rsettings):
    with pytest.raises(NotFoundError, match="template 'nope' not found"):
        load_template(rsettings, "nope")
    for bad in ("../etc", "Welcome", "_private", ""):
        with pytest.raises(InputError):
            load_template(rsettings, bad)


def _write(tdir, name, subject, html, text=None):
    (tdir / name).mkdir()
    (tdir / name / "subject.txt").write_text(subject)
    (tdir / name / "body.html").write_text(html)
    if text is not None:
        (tdir / name / "body.txt").write_text(text)


def test_lint_finds_syntax_errors_unknown_variables_and_missing_unsubscribe(rsettings, tdir):
    _write(tdir, "bad", "Hi {{ contact.firstname }} {{ customer }}", "<p>{% if x %}unclosed</p>", "no link")
    messages = [(i.level, i.message) for i in lint_template(rsettings, "bad")]
    text = "\n".join(m for _, m in messages)
    assert "body.html line 1" in text and "Unexpected end of template" in text
    assert "'customer' is not in the context" in text
    assert "contact.firstname is not a contact field" in text
    assert ("warning", "body.txt: no {{ unsubscribe_url }} in the text part") in messages
    _write(tdir, "nounsub", "Hi", "<p>Hello {{ contact.attributes.city }}</p>")
    issues = lint_template(rsettings, "nounsub")
    assert any(i.level == "error" and "no unsubscribe link" in i.message for i in issues)
    assert any(i.level == "warning" and "'city' attribute will fail" in i.message for i in issues)


def test_sync_template_upserts_by_name_and_tracks_the_version(rapp, tdir):
    with rapp.session() as s:
        row = sync_template(s, load_template(rapp.settings, "welcome"))
        first_hash, row_id = row.version_hash, row.id
        assert sync_template(s, load_template(rapp.settings, "welcome")).id == row_id
    (tdir / "welcome" / "subject.txt").write_text("New subject")
    with rapp.session() as s:
        row = sync_template(s, load_template(rapp.settings, "welcome"))
        assert row.id == row_id and row.version_hash != first_hash and row.subject == "New subject"
        assert s.scalars(select(Template)).all() == [row]
