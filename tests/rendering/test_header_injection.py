"""Header injection through the subject, the From name, and contact fields is refused."""

from __future__ import annotations

import email
from email import policy

import pytest

from campaigns.messages.email_build import HeaderError, check_header, mailbox
from campaigns.messages.rendering import RenderError, render_delivery
from campaigns.messages.templates_store import load_template
from campaigns.store.models import Contact


def add_contact(_session, email: str, name: str | None = None, **attributes: object) -> Contact:
    """A contact that is never stored: some payloads (NUL) cannot even reach PostgreSQL."""
    return Contact(id=1, email=email, name=name, attributes=dict(attributes), tags=[])

INJECTIONS = [
    "Ann\r\nBcc: victim@evil.example",
    "Ann\nBcc: victim@evil.example",
    "Ann\rBcc: victim@evil.example",
    "Ann\r\n\r\n<html>body takeover</html>",
    "Ann\x00Bcc: x@evil.example",
    "Ann\u2028Bcc: x@evil.example",
    "Ann\x85Bcc: x@evil.example",
    "Ann\x0bBcc: x@evil.example",
]


def _subject_template(tdir, subject: str) -> None:
    (tdir / "hdr").mkdir(exist_ok=True)
    (tdir / "hdr" / "subject.txt").write_text(subject)
    (tdir / "hdr" / "body.html").write_text('<p>x</p><a href="{{ unsubscribe_url }}">unsubscribe</a>')


@pytest.mark.parametrize("value", INJECTIONS)
def test_line_breaks_and_controls_in_any_header_value_are_refused(value):
    with pytest.raises(HeaderError, match="header injection"):
        check_header("Subject", value)
    with pytest.raises(HeaderError):
        mailbox("To", value, "ann@example.com")


@pytest.mark.parametrize("value", INJECTIONS)
def test_contact_field_used_in_the_subject_cannot_inject_headers(rapp, tdir, value):
    _subject_template(tdir, "Hello {{ contact.attributes.nick }}")
    tmpl = load_template(rapp.settings, "hdr")
    with rapp.session() as s:
        c = add_contact(s, "ann@example.com", "Ann", nick=value)
        with pytest.raises(RenderError, match="Subject: contains a line break"):
            render_delivery(s, rapp.settings, tmpl, contact=c, delivery_id=7)


@pytest.mark.parametrize("value", INJECTIONS)
def test_contact_name_in_to_cannot_inject_headers(rapp, value):
    tmpl = load_template(rapp.settings, "welcome")
    with rapp.session() as s:
        c = add_contact(s, "ann@example.com", value)
        with pytest.raises(RenderError, match="To: contains a line break"):
            render_delivery(s, rapp.settings, tmpl, contact=c, delivery_id=7)


def test_contact_email_with_a_line_break_is_refused(rapp):
    tmpl = load_template(rapp.settings, "welcome")
    with rapp.session() as s:
        c = add_contact(s, "ann@example.com\r\nBcc: victim@evil.example", "Ann")
        with pytest.raises(RenderError, match="To: contains a line break"):
            render_delivery(s, rapp.settings, tmpl, contact=c, delivery_id=7)


@pytest.mark.parametrize("value", INJECTIONS[:3])
def test_from_name_with_a_line_break_is_refused(rapp, value):
    rapp.settings.sending.from_name = value
    tmpl = load_template(rapp.settings, "welcome")
    with rapp.session() as s:
        c = add_contact(s, "ann@example.com", "Ann")
        with pytest.raises(RenderError, match="From: contains a line break"):
            render_delivery(s, rapp.settings, tmpl, contact=c, delivery_id=7)


def test_address_tricks_in_the_display_name_stay_one_quoted_recipient(rapp):
    tmpl = load_template(rapp.settings, "welcome")
    with rapp.session() as s:
        c = add_contact(s, "ann@example.com", 'Ann" <victim@evil.example>, "Eve')
        out = render_delivery(s, rapp.settings, tmpl, contact=c, delivery_id=7)
    msg = email.message_from_bytes(out.data, policy=policy.default)
    assert [a.addr_spec for a in msg["To"].addresses] == ["ann@example.com"]
    assert msg["Bcc"] is None and msg["Cc"] is None


def test_encoded_word_lookalikes_in_a_subject_stay_literal_text(rapp, tdir):
    _subject_template(tdir, "{{ contact.attributes.nick }}")
    tmpl = load_template(rapp.settings, "hdr")
    trick = "=?utf-8?q?x=0D=0ABcc:_victim@evil.example?="
    with rapp.session() as s:
        c = add_contact(s, "ann@example.com", "Ann", nick=trick)
        out = render_delivery(s, rapp.settings, tmpl, contact=c, delivery_id=7)
    msg = email.message_from_bytes(out.data, policy=policy.default)
    assert msg["Bcc"] is None
    assert len(msg.keys()) == len({k.lower() for k in msg.keys()})


def test_non_ascii_subject_is_encoded_and_decodes_back(rapp, tdir):
    _subject_template(tdir, "Grüße, {{ contact.name }} — ünïcödé ✓ " + "long " * 20)
    tmpl = load_template(rapp.settings, "hdr")
    with rapp.session() as s:
        c = add_contact(s, "ann@example.com", "Zoë")
        out = render_delivery(s, rapp.settings, tmpl, contact=c, delivery_id=7)
    assert out.data.isascii()
    msg = email.message_from_bytes(out.data, policy=policy.default)
    assert msg["Subject"] == out.subject and out.subject.startswith("Grüße, Zoë — ünïcödé ✓ long")
    assert all(len(line) <= 78 for line in out.data.split(b"\r\n\r\n")[0].split(b"\r\n"))


def test_non_ascii_mailbox_name_is_refused_clearly(rapp):
    tmpl = load_template(rapp.settings, "welcome")
    with rapp.session() as s:
        c = add_contact(s, "zoë@example.com", "Zoë")
        with pytest.raises(RenderError, match="non-ASCII mailbox name"):
            render_delivery(s, rapp.settings, tmpl, contact=c, delivery_id=7)
