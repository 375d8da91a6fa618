"""A contact without a time zone gets the one its phone number's area has, when there is
exactly one; `customers show` says where the zone comes from."""

from __future__ import annotations

import json

from campaigns.audience.contacts import timezone_for_phone


def test_the_zone_of_a_phone_number_only_when_unambiguous() -> None:
    assert timezone_for_phone("+14155550100") == "America/Los_Angeles"  # California
    assert timezone_for_phone("+12125550100") == "America/New_York"
    assert timezone_for_phone("+33612345678") == "Europe/Paris"  # one zone for the country
    assert timezone_for_phone("+61412345678") is None  # Australia: eight zones
    assert timezone_for_phone("+18005550100") is None  # toll-free: anywhere in the NANP


def _contacts(cli) -> dict[str, dict]:
    return {c["email"]: c for c in json.loads(cli("contacts", "list", "--json").stdout)}


def test_import_fills_a_missing_zone_from_the_phone_and_never_overrides_one(cli, tmp_path) -> None:
    f = tmp_path / "c.csv"
    f.write_text("email,phone,timezone\n"
                 "ca@example.com,+1 415 555 0100,\n"
                 "au@example.com,+61 412 345 678,\n"
                 "given@example.com,+1 415 555 0101,Europe/Berlin\n"
                 "nophone@example.com,,\n")
    assert cli("contacts", "import", str(f)).exit_code == 0
    got = {e: c["timezone"] for e, c in _contacts(cli).items()}
    assert got == {"ca@example.com": "America/Los_Angeles", "au@example.com": None,
                   "given@example.com": "Europe/Berlin", "nophone@example.com": None}
    # A re-import without the zone keeps the given one; a contact gaining a phone gains a zone.
    f.write_text("email,phone\ngiven@example.com,+1 415 555 0101\nnophone@example.com,+33 6 12 34 56 78\n")
    assert cli("contacts", "import", str(f)).exit_code == 0
    got = {e: c["timezone"] for e, c in _contacts(cli).items()}
    assert got["given@example.com"] == "Europe/Berlin" and got["nophone@example.com"] == "Europe/Paris"


def test_contacts_add_and_customers_show_say_which_zone_applies(cli) -> None:
    assert cli("contacts", "add", "--email", "ca@example.com", "--phone", "+14155550100").exit_code == 0
    assert cli("contacts", "add", "--email", "au@example.com", "--phone", "+61412345678").exit_code == 0
    assert cli("contacts", "add", "--email", "de@example.com", "--timezone", "Europe/Berlin").exit_code == 0
    zone = {e: json.loads(cli("customers", "show", e, "--json").stdout)["timezone"]
            for e in ("ca@example.com", "au@example.com", "de@example.com")}
    assert zone["ca@example.com"] == "America/Los_Angeles (matches the phone number's area)"
    assert zone["au@example.com"] == "none: each campaign's zone applies (by default UTC)"
    assert zone["de@example.com"] == "Europe/Berlin (given)"
