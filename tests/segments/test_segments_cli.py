"""`campaigns segments ...` and `campaigns customers ...` end to end, in-process."""

from __future__ import annotations

import json


def test_segments_create_show_count_list_delete(cli, shop):
    r = cli("segments", "create", "shanghai", "--where", 'attributes.city = "Shanghai"', "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["count"] == 2
    assert cli("segments", "count", "shanghai").stdout.strip() == "2"
    shown = json.loads(cli("segments", "show", "shanghai", "--sample", "5", "--json").stdout)
    assert shown["definition"] == 'attributes.city = "Shanghai"'
    assert [m["email"] for m in shown["sample"]] == ["a@example.com", "d@example.com"]
    table = cli("segments", "show", "shanghai")
    assert table.exit_code == 0 and "a@example.com" in table.stdout
    listed = json.loads(cli("segments", "list", "--counts", "--json").stdout)
    assert [(s["name"], s["count"]) for s in listed] == [("shanghai", 2)]
    assert cli("segments", "delete", "shanghai").exit_code == 0
    assert json.loads(cli("segments", "list", "--json").stdout) == []


def test_a_bad_filter_is_one_red_line_naming_the_column(cli, shop):
    r = cli("segments", "create", "bad", "--where", 'lifecycle = "at_risk" and rfm.x >= 4')
    assert r.exit_code == 1
    assert "column 27: unknown field 'rfm.x'" in r.stderr
    assert "Traceback" not in r.output
    missing = cli("segments", "count", "ghost")
    assert missing.exit_code == 1 and "no segment 'ghost'" in missing.stderr


def test_customers_views_print_distributions_as_tables_and_json(cli, shop):
    # The shop's purchases are dated relative to 2026-06-01 12:00 UTC.
    r = cli("customers", "lifecycle", "--at", "2026-06-01T12:00", "--json")
    assert r.exit_code == 0, r.output
    assert {row["lifecycle"]: row["contacts"] for row in json.loads(r.stdout)} == {
        "prospect": 2, "new": 2, "active": 4, "at_risk": 3, "lapsed": 1}
    rfm = json.loads(cli("customers", "rfm", "--at", "2026-06-01T12:00", "--json").stdout)
    assert {row["segment"]: row["contacts"] for row in rfm}["champions"] == 1
    table = cli("customers", "loyalty", "--at", "2026-06-01T12:00")
    assert table.exit_code == 0 and "true_friend" in table.stdout and "1,700.00" in table.stdout


def test_customers_show_gives_one_contacts_scores_and_stage(cli, shop):
    r = cli("customers", "show", "a@example.com", "--at", "2026-06-01T12:00", "--json")
    assert r.exit_code == 0, r.output
    p = json.loads(r.stdout)
    assert (p["rfm_score"], p["rfm_segment"], p["lifecycle"], p["loyalty"], p["abc"]) == (
        "555", "champions", "active", "true_friend", "A")
    text = cli("customers", "show", "EXT-A", "--at", "2026-06-01T12:00")
    assert "$900.00" in text.stdout and "champions" in text.stdout
