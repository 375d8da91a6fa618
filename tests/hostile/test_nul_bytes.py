"""A NUL byte in imported data is a row error naming the line, on every database (issue 17's
"every refusal one line"): SQLite stored it silently and PostgreSQL refused the whole
import with an internal error (text and JSON columns cannot hold U+0000)."""

from __future__ import annotations

import json


def test_a_nul_in_a_contacts_csv_is_a_row_error(cli, tmp_path) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes(b"email,name,city\nok@example.com,Ok,Paris\nnul@example.com,A\x00B,P\n")
    r = cli("contacts", "import", str(path))
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 1 and "line 3" in lines[0] and "NUL" in lines[0], r.stderr
    assert "internal error" not in r.stderr
    r = cli("contacts", "import", str(path), "--skip-invalid")
    assert r.exit_code == 0, r.output
    listed = json.loads(cli("contacts", "list", "--json").stdout)
    assert [c["email"] for c in listed] == ["ok@example.com"]


def test_a_nul_in_event_properties_is_a_row_error(cli, tmp_path) -> None:
    assert cli("contacts", "add", "--email", "ann@example.com").exit_code == 0
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps({"email": "ann@example.com", "name": "viewed", "occurred_at": "2026-11-01T10:00:00Z",
                                "properties": {"sku": "A\u0000"}}) + "\n")
    r = cli("events", "import", str(path))
    assert r.exit_code == 1 and "properties" in r.stderr and "internal error" not in r.stderr, r.stderr


def test_a_huge_json_line_is_one_row_error_and_the_rest_imported(cli, tmp_path) -> None:
    """A JSON-lines file is read a line at a time, each at most 64 KB (a CSV field's limit is
    128 KB): a 20 MB line was read whole into memory."""
    assert cli("contacts", "add", "--email", "ann@example.com").exit_code == 0
    good = json.dumps({"email": "ann@example.com", "name": "viewed", "occurred_at": "2026-11-01T10:00:00Z"})
    path = tmp_path / "events.jsonl"
    with path.open("w") as fh:
        fh.write('{"email": "ann@example.com", "name": "viewed", "properties": {"x": "' + "y" * 20_000_000 + '"}}\n')
        fh.write(good + "\n")
    r = cli("events", "import", str(path), "--skip-invalid")
    assert r.exit_code == 0, r.output
    assert "1 created" in r.stdout, r.stdout
    rejects = (tmp_path / "events.rejected.csv").read_text()
    assert "longer than" in rejects and len(rejects) < 10_000
