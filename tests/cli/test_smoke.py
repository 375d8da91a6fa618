"""The CLI runs in-process against a migrated database."""

import json


def test_contacts_add_then_show_returns_the_contact(cli):
    r = cli("contacts", "add", "--email", "Ann@Example.com", "--name", "Ann Lee", "--json")
    assert r.exit_code == 0, r.output
    shown = json.loads(cli("contacts", "show", "ann@example.com", "--json").stdout)
    assert shown["email"] == "ann@example.com"
    assert shown["consent_email"] == "none"
