"""Purchases import: idempotent by order_id, clear row errors, all-or-nothing."""

import csv
import json

from sqlalchemy import func, select

from campaigns.store.models import Purchase

CONTACTS = "external_id,email\nC1,ann@example.com\nC2,bob@example.com\n"
ORDERS = (
    "order_id,external_id,email,amount,currency,occurred_at,items,utm_campaign\n"
    'A-1,C1,,19.99,usd,2026-01-05 10:00,"[{""sku"": ""X1""}]",\n'
    "A-2,,bob@example.com,120,EUR,2026-02-01T08:30:00Z,,spring\n"
    "A-3,C1,,5.50,,2026-03-01,,\n"
)


def _setup(cli, tmp_path):
    (tmp_path / "c.csv").write_text(CONTACTS)
    assert cli("contacts", "import", str(tmp_path / "c.csv")).exit_code == 0
    path = tmp_path / "orders.csv"
    path.write_text(ORDERS)
    return path


def test_import_stores_cents_utc_and_is_idempotent(cli, app, tmp_path):
    path = _setup(cli, tmp_path)
    r = cli("purchases", "import", str(path), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["created"] == 3
    r = cli("purchases", "import", str(path), "--json")
    assert json.loads(r.stdout)["unchanged"] == 3
    with app.session() as s:
        orders = {p.order_id: p for p in s.scalars(select(Purchase))}
    assert orders["A-1"].amount_cents == 1999 and orders["A-1"].currency == "USD"
    assert orders["A-1"].items == [{"sku": "X1"}]
    assert orders["A-2"].utm_campaign == "spring" and orders["A-2"].occurred_at.hour == 8
    assert orders["A-3"].amount_cents == 550 and orders["A-3"].currency == "USD"
    listed = json.loads(cli("purchases", "list", "--contact", "C1", "--json").stdout)
    assert [o["order_id"] for o in listed] == ["A-3", "A-1"]


def test_changed_rows_update_the_order(cli, app, tmp_path):
    path = _setup(cli, tmp_path)
    cli("purchases", "import", str(path))
    path.write_text(ORDERS.replace("19.99", "21.00"))
    assert json.loads(cli("purchases", "import", str(path), "--json").stdout)["updated"] == 1
    with app.session() as s:
        assert s.scalar(select(Purchase.amount_cents).where(Purchase.order_id == "A-1")) == 2100


def test_bad_rows_name_line_and_field_and_nothing_is_written(cli, app, tmp_path):
    _setup(cli, tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "order_id,external_id,amount,occurred_at\n"
        "B-1,C1,10,2026-01-01\n"
        "B-2,C404,10,2026-01-01\n"
        "B-3,C1,-4,2026-01-01\n"
        "B-4,C1,1.234,2026-01-01\n"
        "B-5,C1,10,yesterday-ish\n"
        "B-1,C1,10,2026-01-01\n"
        ",C1,10,2026-01-01\n"
        "B-8,C1,10,2999-01-01\n"
    )
    r = cli("purchases", "import", str(bad))
    assert r.exit_code == 1
    for expected in ("line 3, field 'external_id': no contact with external_id 'C404'",
                     "line 4, field 'amount'", "line 5, field 'amount'", "line 6, field 'occurred_at'",
                     "line 7, field 'order_id': 'B-1' appears twice", "line 8, field 'order_id'",
                     "line 9, field 'occurred_at'"):
        assert expected in r.stderr, r.stderr
    with app.session() as s:
        assert s.scalar(select(func.count()).select_from(Purchase)) == 0
    r = cli("purchases", "import", str(bad), "--skip-invalid", "--json")
    assert json.loads(r.stdout)["created"] == 1 and json.loads(r.stdout)["rejected"] == 7
    with open(tmp_path / "bad.rejected.csv", newline="") as fh:
        rejected = {row["line"]: row for row in csv.DictReader(fh)}
    # a row refused while its chunk is written (unknown contact) keeps its columns, as one refused by validation does
    assert rejected["3"]["external_id"] == "C404" and rejected["3"]["order_id"]
    assert rejected["4"]["amount"] == "'-4"  # spreadsheet-safe, as the rejects file writes it
