"""Contacts import: validation, upsert, idempotency, all-or-nothing, rejects, consent."""

import json

from sqlalchemy import func, select

from campaigns.audience import consent as ledger
from campaigns.audience.messageable import may_message
from campaigns.store.models import ConsentEvent, Contact, Suppression

GOOD = (
    "external_id,email,phone,name,timezone,locale,city,age,zip,tags\n"
    "C1,Ann@Example.com,(415) 555-0100,Ann Lee,America/New_York,en-US,Shanghai,34,00123,vip;app\n"
    "C2,bob@example.com,,Bob Stone,Europe/Paris,fr,Paris,51,,\n"
    ",carol@example.com,+44 20 7946 0958,Carol,Europe/London,en-GB,London,,,\n"
)


def _write(tmp_path, text, name="contacts.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def _count(app, model=Contact):
    with app.session() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_import_validates_normalises_and_types_attributes(cli, app, tmp_path):
    r = cli("contacts", "import", str(_write(tmp_path, GOOD)), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["created"] == 3
    with app.session() as s:
        ann = s.scalar(select(Contact).where(Contact.external_id == "C1"))
        carol = s.scalar(select(Contact).where(Contact.email == "carol@example.com"))
    assert ann.email == "ann@example.com"
    assert ann.phone == "+14155550100"
    assert carol.phone == "+442079460958"
    assert ann.attributes == {"city": "Shanghai", "age": 34, "zip": "00123"}  # leading zeros stay text
    assert ann.tags == ["app", "vip"]
    assert ann.first_name == "Ann"
    assert ann.email_hash and len(ann.email_hash) == 64


def test_reimporting_the_same_file_changes_nothing(cli, app, tmp_path):
    path = _write(tmp_path, GOOD)
    cli("contacts", "import", str(path), "--consent", "email", "--source", "signup form")
    with app.session() as s:
        before = [(c.id, c.updated_at, c.attributes) for c in s.scalars(select(Contact).order_by(Contact.id))]
    events_before = _count(app, ConsentEvent)
    r = cli("contacts", "import", str(path), "--consent", "email", "--source", "signup form", "--json")
    assert json.loads(r.stdout) | {} == {"rows": 3, "created": 0, "updated": 0, "unchanged": 3, "rejected": 0,
                                         "consent_events": 0, "confirmation_requests": 0, "rejects_file": None}
    with app.session() as s:
        after = [(c.id, c.updated_at, c.attributes) for c in s.scalars(select(Contact).order_by(Contact.id))]
    assert before == after
    assert _count(app, ConsentEvent) == events_before == 3


def test_upsert_matches_external_id_first_then_email(cli, app, tmp_path):
    cli("contacts", "import", str(_write(tmp_path, GOOD)))
    update = "external_id,email,name,city\nC1,ann.new@example.com,Ann New,Hangzhou\n,bob@example.com,Bobby,\n"
    r = cli("contacts", "import", str(_write(tmp_path, update, "u.csv")), "--json")
    assert json.loads(r.stdout)["updated"] == 2, r.output
    with app.session() as s:
        ann = s.scalar(select(Contact).where(Contact.external_id == "C1"))
        bob = s.scalar(select(Contact).where(Contact.email == "bob@example.com"))
    assert ann.email == "ann.new@example.com" and ann.attributes["city"] == "Hangzhou" and ann.attributes["age"] == 34
    assert bob.name == "Bobby" and bob.external_id == "C2"  # empty cells never erase data
    assert _count(app) == 3


def test_an_update_rewrites_the_hashes_and_two_rows_for_one_contact_apply_in_file_order(cli, app, tmp_path, settings):
    """Row 2 finds C1 by its external_id, row 3 by its email: the same contact, one chunk.
    Both apply, in file order, and the stored hashes follow the new address."""
    from campaigns.signing import address_hash

    cli("contacts", "import", str(_write(tmp_path, GOOD)))
    with app.session() as s:
        before = s.scalar(select(Contact).where(Contact.external_id == "C1"))
    update = ("external_id,email,phone,name,city\nC1,,+1 415 555 0199,First,Hangzhou\n"
              ",ann@example.com,,Second,\n")
    r = cli("contacts", "import", str(_write(tmp_path, update, "u.csv")), "--json")
    assert json.loads(r.stdout)["updated"] == 2, r.output
    with app.session() as s:
        ann = s.scalar(select(Contact).where(Contact.external_id == "C1"))
    assert (ann.id, ann.name, ann.phone, ann.attributes["city"], ann.attributes["age"]) == \
        (before.id, "Second", "+14155550199", "Hangzhou", 34)
    assert ann.phone_hash == address_hash(settings, "sms", "+14155550199") != before.phone_hash
    assert ann.email_hash == address_hash(settings, "email", "ann@example.com") == before.email_hash
    assert ann.updated_at > before.updated_at and ann.tags == ["app", "vip"]
    assert _count(app) == 3


def test_bad_rows_are_listed_with_line_and_field_and_nothing_is_written(cli, app, tmp_path):
    bad = (
        "email,phone,timezone\n"
        "ok@example.com,,UTC\n"
        "not-an-email,,UTC\n"
        "x@example.com,12,UTC\n"
        "y@example.com,,Mars/Base\n"
        ",,UTC\n"
        "z@example.com,,UTC,extra\n"
    )
    r = cli("contacts", "import", str(_write(tmp_path, bad)))
    assert r.exit_code == 1
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert any("line 3, field 'email'" in line for line in lines)
    assert any("line 4, field 'phone'" in line for line in lines)
    assert any("line 5, field 'timezone'" in line and "Mars/Base" in line for line in lines)
    assert any("line 6, field 'email'" in line and "needs an email or a phone" in line for line in lines)
    assert any("line 7" in line and "has 4 fields" in line for line in lines)
    assert "5 of 6 rows are invalid; nothing was imported" in r.stderr
    assert "Traceback" not in r.output
    assert _count(app) == 0


def test_skip_invalid_imports_good_rows_and_writes_rejects_beside_the_input(cli, app, tmp_path):
    bad = "email,timezone\nok@example.com,UTC\nbad@,UTC\nok2@example.com,Nowhere/City\n"
    path = _write(tmp_path, bad)
    r = cli("contacts", "import", str(path), "--skip-invalid", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert (out["created"], out["rejected"]) == (1, 2)
    rejects = (tmp_path / "contacts.rejected.csv").read_text().splitlines()
    assert rejects[0] == "line,field,error,email,timezone"
    assert rejects[1].startswith("3,email,") and rejects[2].startswith("4,timezone,")
    assert _count(app) == 1


def test_wrong_encoding_missing_file_and_bad_header_are_one_line_errors(cli, app, tmp_path):
    latin = _write(tmp_path, "email,name\nzoe@example.com,Zoë\n", "latin.csv", encoding="latin-1")
    r = cli("contacts", "import", str(latin))
    assert r.exit_code == 1 and "line 2: not valid utf-8" in r.stderr and "--encoding" in r.stderr
    assert cli("contacts", "import", str(latin), "--encoding", "latin-1").exit_code == 0
    with app.session() as s:
        assert s.scalar(select(Contact.name).where(Contact.email == "zoe@example.com")) == "Zoë"
    r = cli("contacts", "import", str(tmp_path / "missing.csv"))
    assert r.exit_code == 1 and "no such file" in r.stderr
    r = cli("contacts", "import", str(_write(tmp_path, "name,city\nAnn,Paris\n", "h.csv")))
    assert r.exit_code == 1 and "at least one of the columns email, phone" in r.stderr
    r = cli("contacts", "import", str(_write(tmp_path, "", "empty.csv")))
    assert r.exit_code == 1 and "empty" in r.stderr
    assert "Traceback" not in r.output


def test_consent_from_flag_needs_a_source_and_consent_columns_are_read(cli, app, tmp_path):
    path = _write(tmp_path, "email,phone,consent_email,consent_sms\na@example.com,+14155550101,yes,no\n"
                            "b@example.com,+14155550102,,yes\n")
    r = cli("contacts", "import", str(path), "--consent", "email")
    assert r.exit_code == 1 and "--source" in r.stderr
    assert cli("contacts", "import", str(path)).exit_code == 0
    with app.session() as s:
        a = s.scalar(select(Contact).where(Contact.email == "a@example.com"))
        b = s.scalar(select(Contact).where(Contact.email == "b@example.com"))
        assert ledger.current_state(s, a.id, "email").action == "granted"
        assert ledger.current_state(s, a.id, "sms").action is None  # 'no' never granted: nothing to revoke
        assert ledger.current_state(s, b.id, "sms").action == "granted"
        assert ledger.current_state(s, b.id, "email").action is None
    # A later file saying "no" revokes what was granted, once.
    cli("contacts", "import", str(_write(tmp_path, "email,consent_email\na@example.com,no\n", "r.csv")))
    cli("contacts", "import", str(_write(tmp_path, "email,consent_email\na@example.com,no\n", "r.csv")))
    with app.session() as s:
        a = s.scalar(select(Contact).where(Contact.email == "a@example.com"))
        assert [e.action for e in ledger.history(s, a.id, "email")] == ["granted", "revoked"]


def test_duplicate_rows_in_one_file_merge_into_one_contact(cli, app, tmp_path):
    text = "email,name\ndup@example.com,First\ndup@example.com,Second\n"
    assert cli("contacts", "import", str(_write(tmp_path, text))).exit_code == 0
    with app.session() as s:
        assert s.scalars(select(Contact.name).where(Contact.email == "dup@example.com")).all() == ["Second"]


def test_phone_only_rows_reimport_without_duplicates(cli, app, tmp_path):
    path = _write(tmp_path, "phone,name\n+14155550111,Pat\n")
    cli("contacts", "import", str(path))
    cli("contacts", "import", str(path))
    assert _count(app) == 1


def test_an_email_owned_by_another_external_id_is_a_row_error(cli, app, tmp_path):
    cli("contacts", "import", str(_write(tmp_path, GOOD)))
    r = cli("contacts", "import", str(_write(tmp_path, "external_id,email\nC9,ann@example.com\n", "x.csv")))
    assert r.exit_code == 1 and "line 2, field 'email'" in r.stderr and "external_id C1" in r.stderr


def test_erased_contact_reimported_stays_suppressed(cli, app, tmp_path, settings):
    path = _write(tmp_path, GOOD)
    cli("contacts", "import", str(path), "--consent", "email", "--source", "form")
    r = cli("contacts", "erase", "ann@example.com", "--yes")
    assert r.exit_code == 0, r.output
    with app.session() as s:
        erased = s.scalar(select(Contact).where(Contact.erased_at.is_not(None)))
        assert (erased.email, erased.name, erased.phone, erased.attributes) == (None, None, None, {})
        assert s.scalar(select(Suppression).where(Suppression.reason == "erased", Suppression.channel == "email")).address is None
    cli("contacts", "import", str(path), "--consent", "email", "--source", "form")
    with app.session() as s:
        ann = s.scalar(select(Contact).where(Contact.email == "ann@example.com"))
        assert ann.id != erased.id
        assert ledger.current_state(s, ann.id, "email").allows(False)
        assert may_message(s, settings, ann, "email") is False  # the erased address's hash blocks it
    assert "(erased)" in cli("suppress", "list").stdout


def test_an_import_runs_with_a_bigger_page_cache_and_gives_the_connection_its_own_back(app, tmp_path, monkeypatch):
    """SQLite: the bulk cache is on while the chunks are written and the connection's own
    size is back after (a pooled connection must not keep 32 MB for whatever it does next).
    PostgreSQL has no such setting: the import is the same."""
    from campaigns.audience import contacts
    from campaigns.store.bulk import BULK_CACHE_KIB

    sqlite = app.engine.dialect.name == "sqlite"

    def cache(session):
        return session.connection().exec_driver_sql("PRAGMA cache_size").scalar() if sqlite else None

    seen = []
    write = contacts._write_chunk

    def spy(session, *args):
        seen.append(cache(session))
        return write(session, *args)

    monkeypatch.setattr(contacts, "_write_chunk", spy)
    with app.session() as s:
        before = cache(s)
        contacts.import_contacts(s, app.settings, _write(tmp_path, GOOD), consent_channels=["email"], source="test")
        after = cache(s)
    if sqlite:
        assert seen == [-BULK_CACHE_KIB] and before == after != -BULK_CACHE_KIB
    else:
        assert seen == [None]
    assert _count(app) == 3 and _count(app, ConsentEvent) == 3  # the new contacts' grants, looked up or not


def test_the_summary_counts_rows_in_words(cli, tmp_path):
    one = cli("contacts", "import", str(_write(tmp_path, "email\nann@example.com\n", name="one.csv")))
    assert one.exit_code == 0 and "one.csv: 1 row: 1 created" in one.output, one.output
    three = cli("contacts", "import", str(_write(tmp_path, GOOD)))
    assert three.exit_code == 0 and "contacts.csv: 3 rows: " in three.output, three.output


def test_one_rejected_row_is_said_in_words(cli, tmp_path):
    r = cli("contacts", "import", str(_write(tmp_path, "email\nann@example.com\nnot-an-address\n")), "--skip-invalid")
    assert r.exit_code == 0 and "1 row rejected; see " in r.output, r.output


def test_ctrl_c_mid_import_says_interrupted_and_writes_nothing(cli, app, tmp_path):
    """Ctrl-C arriving while SQLite runs an insert invalidates the connection; the import says
    `interrupted` (exit 130), not an internal error from restoring the page cache on that
    connection; nothing of the file is stored, and no half list of rejects replaces the
    earlier rejects file."""
    from sqlalchemy import Engine, event

    rows = "".join(f"C{i},{'bad' if i == 5 else f'p{i}@example.com'},Person {i}\n" for i in range(2500))
    path = _write(tmp_path, "external_id,email,name\n" + rows)
    (tmp_path / "contacts.rejected.csv").write_text("an earlier import's rejects\n")
    inserts = []

    def interrupt_the_second_chunk(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("INSERT INTO contact "):
            inserts.append(statement)
            if len(inserts) == 2:
                raise KeyboardInterrupt

    event.listen(Engine, "before_cursor_execute", interrupt_the_second_chunk)  # the CLI's own engine too
    try:
        r = cli("contacts", "import", str(path), "--skip-invalid", "--force")
    finally:
        event.remove(Engine, "before_cursor_execute", interrupt_the_second_chunk)
    assert r.exit_code == 130 and "interrupted" in r.output and "internal error" not in r.output, r.output
    assert _count(app) == 0 and len(inserts) == 2
    assert (tmp_path / "contacts.rejected.csv").read_text() == "an earlier import's rejects\n"  # not this one's half
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("contacts.rejected")] == ["contacts.rejected.csv"]
