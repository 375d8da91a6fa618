"""Output files are created without following symlinks and replace an existing file only
with --force; files holding personal data are 0600 (issue 17)."""

from __future__ import annotations

import os
import stat

from campaigns.store.db import make_engine


def _mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_the_rejects_file_is_private_refuses_to_overwrite_and_never_follows_a_symlink(cli, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    source = tmp_path / "contacts.csv"
    source.write_text("email\nok@example.com\nbad@\n")
    rejects = tmp_path / "contacts.rejected.csv"
    os.symlink(victim, rejects)
    r = cli("contacts", "import", str(source), "--skip-invalid")
    assert r.exit_code == 1 and "already exists; add --force" in r.stderr
    assert victim.read_text() == "precious"
    r = cli("contacts", "import", str(source), "--skip-invalid", "--force")
    assert r.exit_code == 0, r.output
    assert victim.read_text() == "precious" and not rejects.is_symlink()
    assert "bad@" in rejects.read_text() and _mode(rejects) == 0o600


def test_report_output_refuses_an_existing_file_and_replaces_a_symlink_not_its_target(cli, app, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "loyalty.html"
    os.symlink(victim, out)
    r = cli("report", "loyalty", "--html", "-o", str(out))
    assert r.exit_code == 1 and "already exists; add --force" in r.stderr
    r = cli("report", "loyalty", "--html", "-o", str(out), "--force")
    assert r.exit_code == 0, r.output
    assert victim.read_text() == "precious" and not out.is_symlink() and "<html" in out.read_text().lower()


def test_a_new_sqlite_database_file_is_private(tmp_path):
    db = tmp_path / "campaigns.db"
    engine = make_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x)")
    engine.dispose()
    assert _mode(db) == 0o600


def test_contacts_export_refuses_an_existing_file_and_never_writes_through_a_symlink(cli, app, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "contacts.csv"
    os.symlink(victim, out)
    os.symlink(victim, tmp_path / "other.csv.part")  # the name the export used to write first
    r = cli("contacts", "export", str(out))
    assert r.exit_code == 1 and "already exists; add --force" in r.stderr
    r = cli("contacts", "export", str(tmp_path / "other.csv"))
    assert r.exit_code == 0, r.output
    assert victim.read_text() == "precious" and _mode(tmp_path / "other.csv") == 0o600
    r = cli("contacts", "export", str(out), "--force")
    assert r.exit_code == 0, r.output
    assert victim.read_text() == "precious" and not out.is_symlink() and out.read_text().startswith("external_id,")
    assert _mode(out) == 0o600


def test_an_output_folder_that_does_not_exist_is_one_line(cli, app, tmp_path):
    for args in (("contacts", "export"), ("report", "loyalty", "--html", "-o")):
        r = cli(*args, str(tmp_path / "missing" / "out.file"))
        assert r.exit_code == 1, (args, r.output)
        assert r.stderr.count("\n") == 1 and "missing" in r.stderr and "internal error" not in r.stderr, r.stderr


def test_the_file_outbox_is_private_whatever_the_umask(tmp_path):
    """The daemon's .eml files and sms.jsonl hold addresses and message text: 0600 in a 0700
    folder even when the process was not started by our CLI (which sets umask 077)."""
    import asyncio

    from scheduler.channels import OutgoingEmail, OutgoingSms
    from scheduler.channels.file import FileEmail, FileSms

    old = os.umask(0o022)
    try:
        outbox = tmp_path / "outbox"
        asyncio.run(FileEmail(outbox).send(OutgoingEmail("7", "a@example.com", "b@example.com", b"hi", "<m@x>")))
        asyncio.run(FileSms(outbox).send(OutgoingSms("8", "+14155550100", "hi")))
    finally:
        os.umask(old)
    assert _mode(outbox / "email" / "7.eml") == 0o600 and _mode(outbox / "email") == 0o700
    assert _mode(outbox / "sms.jsonl") == 0o600 and _mode(outbox) == 0o700
