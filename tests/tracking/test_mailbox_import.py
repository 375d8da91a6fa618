"""The mailbox import: mailto unsubscribes, and hostile mail that must not stop the import."""

import json
import mailbox
import subprocess
import sys
import textwrap

import pytest
from sqlalchemy import select

from campaigns.audience import consent as ledger
from campaigns.audience.contacts import find_contact
from campaigns.store.models import ConsentEvent, Delivery, Event
from tests.conftest import CliRunner
from tests.tracking.test_bounces import _sample


def _mailto(shop, n=0):
    lu = shop.message(n)["List-Unsubscribe"]
    return lu.split("<mailto:", 1)[1].split(">", 1)[0]


def _unsubscribe_mail(to: str, subject: str, n: int = 1) -> bytes:
    return (f"From: Person <someone@example.net>\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <unsub-{n}@example.net>\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n\r\nplease\r\n").encode()


def _import(tmp_path, messages, name="Maildir"):
    box = mailbox.Maildir(str(tmp_path / name), create=True)
    for raw in messages:
        box.add(raw)
    r = CliRunner(tmp_path / "config.toml")("bounces", "import", str(tmp_path / name), "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_a_mailto_unsubscribe_revokes_email_consent_with_proof(shop, tmp_path):
    mailto = _mailto(shop)
    address, _, query = mailto.partition("?")
    subject = query.removeprefix("subject=")
    to = shop.message()["To"].addresses[0].addr_spec
    counts = _import(tmp_path, [_unsubscribe_mail(address, subject)])
    assert counts["unsubscribes"] == 1 and counts["ignored"] == 0
    again = _import(tmp_path, [], name="Maildir")  # the same mailbox read again: not a second unsubscribe
    assert (again["unsubscribes"], again["already_recorded"], again["unmatched"]) == (0, 1, 0)
    said = CliRunner(tmp_path / "config.toml")("bounces", "import", str(tmp_path / "Maildir")).stdout
    assert ": 1 message: 0 hard bounces, 0 complaints, 0 unsubscribes, 1 already recorded" in said, said
    assert "0 not reports" in said
    with shop.app.session() as s:
        c = find_contact(s, to)
        events = ledger.history(s, c.id, "email")
        assert events[-1].action == "revoked" and events[-1].source == "mailto unsubscribe"
        assert "<unsub-1@example.net>" in events[-1].consent_text
        unsub = s.scalar(select(Event).where(Event.type == "unsubscribe"))
        assert unsub.data["message_id"] == "<unsub-1@example.net>"


def test_a_forged_unsubscribe_token_changes_nothing(shop, tmp_path):
    mailto = _mailto(shop)
    address, _, query = mailto.partition("?")
    forged = query.removeprefix("subject=")[:-4] + "AAAA"
    counts = _import(tmp_path, [_unsubscribe_mail(address, forged)])
    assert counts["unsubscribes"] == 0 and counts["unmatched"] == 1
    with shop.app.session() as s:
        assert s.scalar(select(ConsentEvent).where(ConsentEvent.action == "revoked")) is None


def test_a_deeply_nested_message_is_skipped_and_the_rest_imported(shop, tmp_path):
    with shop.app.session() as s:
        d = s.scalar(select(Delivery).order_by(Delivery.id))
    from campaigns.messages import links

    nested = [b"From: x@example.net\r\nTo: y@example.com\r\nSubject: deep\r\nMIME-Version: 1.0\r\n"]
    for i in range(3000):
        nested.append(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i))
    nested.append(b"Content-Type: text/plain\r\n\r\nhi\r\n")
    nested += [b"--b%d--\r\n" % i for i in reversed(range(3000))]
    counts = _import(tmp_path, [b"".join(nested), _sample("postfix.eml", verp=links.return_path(shop.app.settings, d.id))])
    assert counts["messages"] == 2 and counts["skipped"] == 1 and counts["bounces"] == 1


# On SQLite only: what is measured is the mailbox reader's memory, which no database path
# changes (the skipped message writes nothing; PostgreSQL imports are tested above).
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_150_mb_report_is_skipped_without_reading_it_whole(shop, tmp_path):
    """In a subprocess, so its peak memory is its own."""
    mbox = tmp_path / "big.mbox"
    with open(mbox, "wb") as fh:
        fh.write(b"From MAILER-DAEMON Thu Nov 26 10:00:00 2026\n")
        fh.write(_sample("postfix.eml").replace(b"\r\n", b"\n").split(b"\n--3F1C")[0] + b"\n")
        lines = (b"x" * 999 + b"\n") * 1000  # 150,000 lines of 1,000 bytes, written 1 MB at a time
        for _ in range(150):
            fh.write(lines)
        fh.write(b"\nFrom MAILER-DAEMON Thu Nov 26 10:00:01 2026\n")
        fh.write(_sample("delayed.eml").replace(b"\r\n", b"\n"))
    small = tmp_path / "small.mbox"
    small.write_bytes(b"From MAILER-DAEMON Thu Nov 26 10:00:01 2026\n" + _sample("delayed.eml").replace(b"\r\n", b"\n"))

    def run(box):
        script = textwrap.dedent(f"""
            import json, sys
            from campaigns.cli import main
            try:
                main(["--config", {str(tmp_path / "config.toml")!r}, "bounces", "import", {str(box)!r}, "--json"])
            except SystemExit:
                pass
            # VmHWM, not ru_maxrss: ru_maxrss carries the parent's peak over fork and exec, so
            # under a long pytest run it reported pytest's size, not this command's.
            hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
            print(int(hwm.split()[1]), file=sys.stderr)
        """)
        r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
        return json.loads(r.stdout), int(r.stderr.strip().splitlines()[-1])

    counts, peak_kb = run(mbox)
    _small_counts, base_kb = run(small)  # the same command on a one-message mailbox: its own footprint
    assert counts["messages"] == 2 and counts["skipped"] == 1 and counts["ignored"] == 1
    print(f"bounces import of a 150 MB mbox: peak {peak_kb // 1024} MB (the same command on one small message: {base_kb // 1024} MB)")
    assert peak_kb - base_kb < 50 * 1024, f"peak {peak_kb // 1024} MB against {base_kb // 1024} MB"
