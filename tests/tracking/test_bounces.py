"""Real-world DSN shapes (Postfix, Exim, Gmail) read from a Maildir, matched through VERP."""

import mailbox
from pathlib import Path

from sqlalchemy import func, select

from campaigns.audience.suppression import is_suppressed
from campaigns.messages import links
from campaigns.store.models import Delivery, Event
from campaigns.tracking.dsn import parse_report

DSN = Path(__file__).parent / "dsn"


def _sample(name, verp="bounces+1-abc@example.com", message_id="<1.x@example.com>"):
    return (DSN / name).read_bytes().replace(b"VERP_ADDRESS", verp.encode()).replace(b"ORIGINAL_MESSAGE_ID", message_id.encode())


def test_each_sample_yields_its_hard_bounce():
    for name, rcpt in (("postfix.eml", "gone@customer.example"), ("exim.eml", "nobody@exim.example"),
                       ("gmail.eml", "missing.person@gmail.com")):
        notices = parse_report(_sample(name))
        assert [(n.kind, n.recipient) for n in notices] == [("bounce", rcpt)], name
        assert notices[0].verp == "bounces+1-abc@example.com"
        assert notices[0].original_message_id == "<1.x@example.com>"
    assert parse_report(_sample("delayed.eml")) == []  # a delay is not a bounce


def test_bounces_import_from_a_maildir_suppresses_and_counts_once(shop, tmp_path):
    with shop.app.session() as s:
        rows = list(s.scalars(select(Delivery).order_by(Delivery.id)))
    box = mailbox.Maildir(str(tmp_path / "Maildir"), create=True)
    verp = links.return_path(shop.app.settings, rows[0].id)
    box.add(_sample("postfix.eml", verp=verp).replace(b"gone@customer.example", b"p0@example.com"))
    box.add(_sample("exim.eml", verp="nobody@example.com", message_id=rows[1].provider_message_id)
            .replace(b"nobody@exim.example", b"p1@example.com"))
    box.add(_sample("delayed.eml"))
    from tests.conftest import CliRunner

    run = CliRunner(tmp_path / "config.toml")
    r = run("bounces", "import", str(tmp_path / "Maildir"), "--json")
    assert r.exit_code == 0, r.output
    import json

    assert json.loads(r.stdout) == {"messages": 3, "bounces": 2, "complaints": 0, "unsubscribes": 0,
                                     "already_recorded": 0, "unmatched": 0, "ignored": 1, "skipped": 0}
    again = run("bounces", "import", str(tmp_path / "Maildir"), "--json")  # again: nothing new, and said so
    assert json.loads(again.stdout) == {"messages": 3, "bounces": 0, "complaints": 0, "unsubscribes": 0,
                                         "already_recorded": 2, "unmatched": 0, "ignored": 1, "skipped": 0}
    text = run("bounces", "import", str(tmp_path / "Maildir")).stdout
    assert "0 hard bounces" in text and "2 already recorded (nothing changed)" in text, text
    with shop.app.session() as s:
        assert is_suppressed(s, shop.app.settings, "email", "p0@example.com")
        assert is_suppressed(s, shop.app.settings, "email", "p1@example.com")
        bounced = set(s.scalars(select(Event.delivery_id).where(Event.type == "bounce")))
        assert bounced == {rows[0].id, rows[1].id}
        assert s.scalar(select(func.count()).select_from(Event).where(Event.type == "bounce")) == 2
    missing = run("bounces", "import", str(tmp_path / "nowhere"))
    assert missing.exit_code == 1 and "no such file" in missing.stderr
