"""Output a person reads: sentences and tables, shares with a unit, money with its currency,
tables that survive 80 columns, summarised import errors, decoded previews."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from campaigns.cli import output
from tests.conftest import CliRunner, write_config

REPO_TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
RAW_DICT = re.compile(r"\{'\w+': ")


@pytest.fixture
def shop(cli, tmp_path):
    shutil.copytree(REPO_TEMPLATES, tmp_path / "templates", dirs_exist_ok=True)
    (tmp_path / "c.csv").write_text("email,name,city\na@example.com,Ann,Paris\nb@example.com,Bob,Paris\n")
    assert cli("contacts", "import", str(tmp_path / "c.csv"), "--consent", "email", "--source", "form").exit_code == 0
    assert cli("segments", "create", "paris", "--where", 'attributes.city = "Paris"').exit_code == 0
    assert cli("new", "hello", "--segment", "paris", "--channel", "email", "--template", "welcome").exit_code == 0
    return cli


def test_numbers_read_as_a_person_writes_them() -> None:
    assert output.percent(0.1234) == "12.3%" and output.percent(0.05, signed=True) == "+5.0%"
    assert output.percent(-0.05, signed=True) == "-5.0%" and output.percent(None) == "—"
    assert output.points(-0.0049) == "-0.49 pts" and output.points(0.012) == "+1.20 pts"
    assert output.money(1234.5) == "$1,234.50" and output.money(12, "EUR") == "€12.00"
    assert output.money(-3, "GBP") == "-£3.00" and output.money(99, "SEK") == "SEK 99.00"
    assert output.money(1999, "USD", cents=True) == "$19.99"


def test_a_table_at_80_columns_never_breaks_a_word(monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = io.StringIO()
    monkeypatch.setattr(output, "console", Console(file=buffer, width=80, highlight=False))
    words = ["thanks", "campaign", "unsubscribed", "newsletter", "Christmas", "international"]
    rows = [{c: " ".join(words[(i + j) % len(words)] for j in range(4)) for i, c in enumerate(
        ["name", "channel", "segment", "template", "schedule", "status", "queued", "sent", "failed", "held_out"])}]
    output.emit_rows(rows, list(rows[0]), title="Campaigns")
    text = buffer.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    allowed = set(words) | {"Campaigns", "name", "channel", "segment", "template", "schedule", "status", "queued",
                            "sent", "failed", "held", "out"}
    for token in re.findall(r"[A-Za-z]+…?", text.split("columns hidden")[0]):
        assert token in allowed or token.endswith("…"), (token, text)
    assert "columns hidden at this width" in text


def test_rows_read_counts_rows_not_bytes(tmp_path: Path) -> None:
    f = tmp_path / "c.csv"
    f.write_bytes(b"email\n" + b"".join(b"p%d@example.com\n" % i for i in range(10)))
    ends = output._line_ends(f)
    assert output.rows_read(ends, 0) == 0
    assert output.rows_read(ends, len(b"email\n")) == 0
    assert output.rows_read(ends, f.stat().st_size) == 10
    assert output.rows_read(ends, ends[3]) == 3


def test_send_prints_sentences_not_dicts(shop) -> None:
    r = shop("send", "hello", "--dry-run")
    assert r.exit_code == 0, r.output
    assert "hello would send to 2 contacts (of 2 in the segment)" in r.stdout and not RAW_DICT.search(r.output)
    r = shop("send", "hello", "--now")
    assert r.exit_code == 0, r.output
    assert "planned for 2 contacts" in r.stdout and "just now: 2 sent" in r.stdout and not RAW_DICT.search(r.output)


def test_list_keeps_status_and_sent_at_80_columns(shop, monkeypatch: pytest.MonkeyPatch) -> None:
    """A narrow terminal hid the status column first (it dropped from the right), keeping 'schedule kind'."""
    monkeypatch.setattr(output, "console", Console(width=80, highlight=False))
    assert shop("new", "a-rather-long-campaign-name", "--segment", "paris", "--channel", "email",
                "--step", "0d:welcome", "--step", "3d:newsletter").exit_code == 0
    r = shop("list")
    assert r.exit_code == 0, r.output
    header = next(line for line in r.stdout.splitlines() if "name" in line)
    assert "status" in header and "sent" in header and "schedule" in header, r.stdout
    assert "draft" in r.stdout


def test_show_prints_runs_as_a_table(shop, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    assert shop("send", "hello", "--now").exit_code == 0
    r = shop("show", "hello")
    assert r.exit_code == 0, r.output
    assert "Runs" in r.stdout and "in segment" in r.stdout and "2 sent" in r.stdout
    assert "scheduled_for" not in r.stdout and not RAW_DICT.search(r.stdout) and '"counts"' not in r.stdout


def test_the_overview_shows_money_and_lift_in_points(tmp_path, db_url, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    cli = CliRunner(write_config(tmp_path, db_url, 'currency = "EUR"'))
    shutil.copytree(REPO_TEMPLATES, tmp_path / "templates", dirs_exist_ok=True)
    (tmp_path / "c.csv").write_text("email,city\n" + "".join(f"p{i}@example.com,Paris\n" for i in range(40)))
    assert cli("contacts", "import", str(tmp_path / "c.csv"), "--consent", "email", "--source", "form").exit_code == 0
    assert cli("segments", "create", "paris", "--where", 'attributes.city = "Paris"').exit_code == 0
    assert cli("new", "hello", "--segment", "paris", "--channel", "email", "--template", "welcome",
               "--holdout", "25%").exit_code == 0
    assert cli("send", "hello", "--now").exit_code == 0
    r = cli("report")
    assert r.exit_code == 0, r.output
    assert "€0.00" in r.stdout and re.search(r"[+-]\d+\.\d\d pts", r.stdout), r.stdout
    detail = cli("report", "hello")
    assert "€0.00" in detail.stdout and "%" in detail.stdout


def test_events_leave_the_user_agent_to_scripts(shop) -> None:
    r = shop("events", "hello")
    assert r.exit_code == 0 and "user agent" not in r.stdout
    r = shop("events", "hello", "--json")
    assert json.loads(r.stdout) == []


def test_templates_list_shows_subjects_for_a_sample_and_render_is_decoded(shop, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    r = shop("templates", "list")
    assert r.exit_code == 0, r.output
    assert "Welcome to Example Shop, Ann" in r.stdout
    # A template that needs what only a real message has (a confirmation link) is marked, not shown raw.
    assert all("template:" in line for line in r.stdout.splitlines() if "{{" in line), r.stdout
    r = shop("templates", "render", "welcome", "--contact", "a@example.com")
    assert r.exit_code == 0, r.output
    assert "----- text/plain -----" in r.stdout and "Subject: Welcome" in r.stdout
    assert "quoted-printable" not in r.stdout and "=3D" not in r.stdout
    raw = shop("templates", "render", "welcome", "--contact", "a@example.com", "--raw")
    assert "Content-Transfer-Encoding" in raw.stdout


def test_a_long_list_of_bad_rows_is_summarised(cli, tmp_path) -> None:
    f = tmp_path / "bad.csv"
    f.write_text("email,name\n" + "".join(f"not-an-email-{i},X\n" for i in range(57)))
    r = cli("contacts", "import", str(f))
    assert r.exit_code == 1
    lines = r.stderr.strip().splitlines()
    assert len([line for line in lines if "line " in line and "bad.csv:" in line]) == 20
    assert any("... and 37 more bad rows" in line for line in lines)
    listed = (tmp_path / "bad.errors.csv").read_text().splitlines()
    assert listed[0] == "line,field,error" and len(listed) == 58
    assert lines[-1].startswith("error: ") and "57 of 57 rows are invalid" in lines[-1]


def test_a_semicolon_file_gets_a_hint(cli, tmp_path) -> None:
    f = tmp_path / "excel.csv"
    f.write_text("email;name\nann@example.com;Ann\n")
    r = cli("contacts", "import", str(f))
    assert r.exit_code == 1 and "semicolons" in r.stderr and "Traceback" not in r.output
    assert len(r.stderr.strip().splitlines()) == 1


def test_config_show_prints_section_titles() -> None:
    buffer = io.StringIO()
    saved = output.console
    output.console = Console(file=buffer, width=100)
    try:
        output.emit_record({"host": "127.0.0.1"}, title="[smtp]")
    finally:
        output.console = saved
    assert "[smtp]" in buffer.getvalue()


def test_config_dkim_prints_the_record_in_strings_a_zone_file_accepts(tmp_path, db_url) -> None:
    key = Path(__file__).resolve().parents[1] / "support" / "dkim" / "test_a.pem"  # 2048-bit: a 410-character value
    cfg = write_config(tmp_path, db_url, f'[smtp]\ndkim_domain = "example.com"\ndkim_selector = "s1"\n'
                                         f'dkim_private_key_file = "{key}"\n')
    r = CliRunner(cfg)("config", "dkim", "--json")
    record = json.loads(r.stdout)
    assert len(record["value"]) > 255 and all(len(s) <= 255 for s in record["strings"])
    assert "".join(record["strings"]) == record["value"]
    text = CliRunner(cfg)("config", "dkim").stdout
    zone = next(line for line in text.splitlines() if "IN TXT" in line)
    quoted = re.findall(r'"([^"]*)"', zone)
    assert len(quoted) == len(record["strings"]) >= 2 and all(len(q) <= 255 for q in quoted)
