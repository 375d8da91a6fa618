"""Contact-supplied text is shown, never interpreted, on the terminal (issue 17): rich
markup in a name stays literal text and escape sequences are shown escaped."""

from __future__ import annotations

from campaigns.store.models import Contact, Event
from campaigns.timespec import utcnow

MARKUP = "[link=https://evil.example]Ann[/link]"
ESCAPE = "Bob\x1b[2J\x1b]8;;https://evil.example\x07x\u202egpj.exe"


def test_contacts_list_and_show_print_names_as_text(cli, app) -> None:
    with app.session() as s:
        s.add(Contact(email="ann@example.com", name=MARKUP, attributes={"note": "[bold]x[/bold]"}, tags=[]))
        s.add(Contact(email="bob@example.com", name=ESCAPE, attributes={}, tags=[]))
    r = cli("contacts", "list")
    assert r.exit_code == 0, r.output
    assert MARKUP in r.stdout
    assert "\x1b" not in r.stdout and "\x07" not in r.stdout and "\u202e" not in r.stdout
    assert "\\x1b[2J" in r.stdout and "\\u202e" in r.stdout
    shown = cli("contacts", "show", "ann@example.com")
    assert shown.exit_code == 0, shown.output
    assert "[bold]x[/bold]" in shown.stdout


def test_a_user_agent_in_events_is_shown_escaped(cli, app) -> None:
    with app.session() as s:
        person = Contact(email="ann@example.com", name="Ann", attributes={}, tags=[])
        s.add(person)
        s.flush()
        s.add(Event(contact_id=person.id, type="open", user_agent="\x1b[31m[red]UA[/red]", dedup_key="k",
                    occurred_at=utcnow()))
    r = cli("events", "ann@example.com")
    assert r.exit_code == 0, r.output
    assert "\x1b" not in r.stdout  # the table leaves user agents out; nothing of it reaches the terminal raw
    r = cli("events", "ann@example.com", "--json")
    assert r.exit_code == 0, r.output
    assert "\x1b" not in r.stdout and "\\u001b[31m[red]UA[/red]" in r.stdout  # JSON escapes it
