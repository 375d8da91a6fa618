"""Change things in place: segments edit (with a preview), contacts edit, tag, untag, export."""

from __future__ import annotations

import csv
import io
import json

import pytest


@pytest.fixture
def people(cli, tmp_path):
    (tmp_path / "c.csv").write_text("email,name,city\na@example.com,Ann,Paris\nb@example.com,Bob,Rome\n"
                                    "c@example.com,Cy,Paris\n")
    assert cli("contacts", "import", str(tmp_path / "c.csv"), "--consent", "email", "--source", "form").exit_code == 0
    assert cli("segments", "create", "paris", "--where", 'attributes.city = "Paris"').exit_code == 0
    return cli


def test_segments_edit_previews_who_joins_and_leaves_and_applies_only_when_told(people) -> None:
    r = people("segments", "edit", "paris", "--where", 'attributes.city = "Rome"', "--dry-run")
    assert r.exit_code == 0, r.output
    assert "2 -> 1 contacts (1 join, 2 leave)" in r.stdout and "b@example.com" in r.stdout
    assert "Nothing changed" in r.stdout
    assert people("segments", "count", "paris").stdout.strip() == "2"
    preview = json.loads(people("segments", "edit", "paris", "--where", 'attributes.city = "Rome"', "--json").stdout)
    assert (preview["joins"], preview["leaves"], preview["sample_joins"]) == (1, 2, ["b@example.com"])
    assert people("segments", "count", "paris").stdout.strip() == "2"  # --json alone previews
    r = people("segments", "edit", "paris", "--where", 'attributes.city = "Rome"', "--yes")
    assert r.exit_code == 0 and people("segments", "count", "paris").stdout.strip() == "1"


def test_segments_edit_refuses_a_bad_filter_or_a_cycle_and_changes_nothing(people) -> None:
    r = people("segments", "edit", "paris", "--where", "attributes.city = ", "--yes")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert people("segments", "create", "outer", "--where", 'in_segment("paris")').exit_code == 0
    r = people("segments", "edit", "paris", "--where", 'in_segment("outer")', "--yes")
    assert r.exit_code == 1 and "cycle" in r.stderr
    shown = json.loads(people("segments", "show", "paris", "--json").stdout)
    assert shown["definition"] == 'attributes.city = "Paris"'


def test_contacts_edit_tag_untag(people) -> None:
    r = people("contacts", "edit", "a@example.com", "--name", "Ann Lee", "--attr", "city=Leeds", "--unset-attr", "nothing")
    assert r.exit_code == 0, r.output
    c = json.loads(people("contacts", "show", "a@example.com", "--json").stdout)
    assert c["name"] == "Ann Lee" and c["attributes"]["city"] == "Leeds"
    r = people("contacts", "edit", "a@example.com", "--email", "b@example.com")
    assert r.exit_code == 1 and "belongs to another contact" in r.stderr
    r = people("contacts", "edit", "a@example.com", "--phone", "not a phone")
    assert r.exit_code == 1 and r.stderr.startswith("error: --phone:")
    assert people("contacts", "edit", "a@example.com", "--unset-attr", "city").exit_code == 0
    assert "city" not in json.loads(people("contacts", "show", "a@example.com", "--json").stdout)["attributes"]
    assert people("contacts", "tag", "a@example.com", "vip", "gold").exit_code == 0
    assert people("contacts", "untag", "a@example.com", "vip").exit_code == 0
    assert json.loads(people("contacts", "show", "a@example.com", "--json").stdout)["tags"] == ["gold"]


def test_contacts_export_reads_back_with_import(people, tmp_path) -> None:
    assert people("contacts", "tag", "b@example.com", "vip").exit_code == 0
    out = tmp_path / "out.csv"
    r = people("contacts", "export", str(out))
    assert r.exit_code == 0 and "wrote 3 contacts" in r.stdout
    rows = list(csv.DictReader(out.open()))
    assert [r["email"] for r in rows] == ["a@example.com", "b@example.com", "c@example.com"]
    assert rows[1]["tags"] == "vip" and rows[0]["city"] == "Paris" and "consent_email" not in rows[0]
    only = list(csv.DictReader(io.StringIO(people("contacts", "export", "-", "--tag", "vip").stdout)))
    assert [r["email"] for r in only] == ["b@example.com"]
    r = people("contacts", "import", str(out))
    assert r.exit_code == 0 and "3 unchanged" in r.stdout, r.output
