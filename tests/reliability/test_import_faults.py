"""1,000 malformed rows among 10,000: every one reported with its line, nothing half-written, re-runs idempotent."""

import csv

from sqlalchemy import func, select

from bench.datagen import write_contacts_csv
from campaigns.store.models import ConsentEvent, Contact

CMD = "python -m pytest tests/reliability/test_import_faults.py"


def _count(app, model):
    with app.session() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_thousand_bad_rows_among_ten_thousand(cli, app, tmp_path, record, db_url):
    path = write_contacts_csv(tmp_path / "contacts.csv", 10_000, seed=7, invalid_every=10)
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    bad_lines = {i + 2 for i in range(len(rows)) if i % 10 == 9}
    assert len(bad_lines) == 1000

    r = cli("contacts", "import", str(path), "--consent", "email", "--source", "reliability")
    assert r.exit_code == 1
    shown = {int(line.split("line ")[1].split(",")[0]) for line in r.stderr.splitlines() if ": line " in line}
    assert shown == set(sorted(bad_lines)[:20])  # the first 20 on the terminal, then a count ...
    assert "and 980 more bad rows" in r.stderr
    with open(tmp_path / "contacts.errors.csv", newline="") as fh:  # ... and every one in the errors file
        reported = {int(row["line"]) for row in csv.DictReader(fh)}
    assert reported == bad_lines
    assert "1,000 of 10,000 rows are invalid; nothing was imported" in r.stderr
    assert _count(app, Contact) == 0 and _count(app, ConsentEvent) == 0

    r = cli("contacts", "import", str(path), "--consent", "email", "--source", "reliability", "--skip-invalid")
    assert r.exit_code == 0, r.output
    assert "10,000 rows: 9,000 created, 0 updated, 0 unchanged, 9,000 consent events recorded" in r.stdout
    assert _count(app, Contact) == 9000 and _count(app, ConsentEvent) == 9000
    with open(tmp_path / "contacts.rejected.csv", newline="") as fh:
        rejected = {int(row["line"]) for row in csv.DictReader(fh)}
    assert rejected == bad_lines

    again = cli("contacts", "import", str(path), "--consent", "email", "--source", "reliability", "--skip-invalid",
                "--force")  # the rejects file of the first run is replaced only when asked
    assert again.exit_code == 0
    assert _count(app, Contact) == 9000 and _count(app, ConsentEvent) == 9000
    record(f"import_malformed_rows[{'postgres' if 'postgresql' in db_url else 'sqlite'}]", CMD,
           rows=10_000, malformed=1000, reported=len(reported), written_on_failure=0,
           imported_with_skip=9000, rerun_changes=0)
