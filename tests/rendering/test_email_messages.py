"""Every shipped email template renders into a standards-correct message for several contacts."""

from __future__ import annotations

import email
import re
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select

from campaigns.messages import links
from campaigns.messages.coupons import import_pool
from campaigns.messages.link_registry import link_url
from campaigns.messages.rendering import RenderedEmail, RenderError, render_delivery
from campaigns.messages.templates_store import list_templates, load_template, sync_template
from campaigns.store.models import Contact, Coupon, Template, TrackedLink
from tests.rendering.conftest import add_contact, make_campaign, make_delivery

CLICK = re.compile(r"https://t\.example\.net/c/([0-9a-z]+)/([0-9a-z]+)/([A-Za-z0-9_-]+)")
CONTACTS = [
    ("ann@example.com", "Ann Lee", {"city": "Paris"}),
    ("zoe@example.com", "Zoë Ångström-Ñúñez", {}),  # non-ASCII name in To, no city
    ("bob@example.com", None, {"city": "Tokyo"}),    # no name at all
]


def parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    assert not msg.defects, msg.defects
    return msg


def parts(msg: EmailMessage) -> tuple[str, str]:
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


@pytest.fixture
def winback_codes(tmp_path: Path) -> Path:
    f = tmp_path / "codes.txt"
    f.write_text("\n".join(f"WB-{i:04d}" for i in range(20)) + "\n")
    return f


def test_every_shipped_email_template_parses_back_with_headers_parts_and_tracked_links(rapp, winback_codes):
    settings = rapp.settings
    # The double opt-in request renders only under its system campaign (tests/consent/test_double_opt_in.py).
    emails = [t for t in list_templates(settings) if t.channel == "email" and t.name != "confirm"]
    assert {t.name for t in emails} >= {"welcome", "winback", "newsletter"}
    with rapp.session() as s:
        import_pool(s, "WINBACK", winback_codes)
        camp, run = make_campaign(s, utm={"source": "newsletter", "medium": "email", "campaign": "spring"})
        for step, tmpl in enumerate(emails):
            sync_template(s, tmpl)
            for addr, name, attrs in CONTACTS:
                contact = s.scalar(select(Contact).where(Contact.email == addr)) or add_contact(s, addr, name, **attrs)
                d = make_delivery(s, run, contact, step=step)
                out = render_delivery(s, settings, tmpl, contact=contact, delivery_id=d.id, campaign=camp)
                assert isinstance(out, RenderedEmail)
                msg = parse(out.data)
                assert out.to == addr
                assert msg["To"].addresses[0].addr_spec == addr
                if name:
                    assert msg["To"].addresses[0].display_name == name
                assert msg["From"].addresses[0].display_name == "Example Shop"
                assert msg["From"].addresses[0].addr_spec == "news@shop.example.com"
                assert msg["Subject"] == out.subject and out.subject
                assert msg["Message-ID"] == out.message_id and links.b36(d.id) in out.message_id
                assert out.mail_from == links.return_path(settings, d.id)
                assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
                lu = msg["List-Unsubscribe"]
                unsub = links.unsubscribe_url(settings, d.id)
                assert f"<{unsub}>" in lu
                assert re.search(r"<mailto:unsubscribe@shop\.example\.com\?subject=unsubscribe-[0-9a-z]+-[\w-]+>", lu)
                text, html = parts(msg)
                assert unsub in html and unsub in text
                assert links.open_url(settings, d.id) in html
                # Every http(s) link except unsubscribe is a signed click link naming this delivery
                hrefs = re.findall(r'href="([^"]+)"', html)
                assert hrefs
                for href in hrefs:
                    if href == unsub:
                        continue
                    m = CLICK.fullmatch(href)
                    assert m, href
                    ref = links.verify_click(settings, *m.groups())
                    assert ref is not None and ref.delivery_id == d.id
                    dest = link_url(s, ref.link_id)
                    assert dest.startswith("https://shop.example.com/")
                    assert "utm_source=newsletter" in dest and "utm_medium=email" in dest
                assert "shop.example.com" not in html, "a raw destination link escaped rewriting"
                assert "shop.example.com" not in text
                assert 'style="' in html and "<style" not in html  # CSS inlined
        assert s.scalar(select(Template.version_hash).where(Template.name == "welcome")) == load_template(settings, "welcome").version_hash


def test_winback_gives_each_delivery_its_own_code_and_the_same_code_when_re_rendered(rapp, winback_codes):
    settings = rapp.settings
    tmpl = load_template(settings, "winback")
    with rapp.session() as s:
        import_pool(s, "WINBACK", winback_codes)
        camp, run = make_campaign(s)
        codes = []
        for i in range(3):
            c = add_contact(s, f"p{i}@example.com", f"P{i} Doe")
            d = make_delivery(s, run, c)
            first = parts(parse(render_delivery(s, settings, tmpl, contact=c, delivery_id=d.id, campaign=camp).data))
            again = parts(parse(render_delivery(s, settings, tmpl, contact=c, delivery_id=d.id, campaign=camp).data))
            found = set(re.findall(r"WB-\d{4}", first[0] + first[1]))
            assert len(found) == 1
            assert found == set(re.findall(r"WB-\d{4}", again[0] + again[1]))
            codes.append(found.pop())
        assert len(set(codes)) == 3
        used = s.scalars(select(Coupon.code).where(Coupon.assigned_at.is_not(None))).all()
        assert sorted(used) == sorted(codes)


def test_empty_coupon_pool_fails_only_that_delivery_with_a_clear_reason(rapp, tmp_path):
    settings = rapp.settings
    tmpl = load_template(settings, "winback")
    one = tmp_path / "one.txt"
    one.write_text("ONLY-ONE\n")
    with rapp.session() as s:
        import_pool(s, "WINBACK", one)
        camp, run = make_campaign(s)
        a, b = add_contact(s, "a@example.com", "A"), add_contact(s, "b@example.com", "B")
        ok = render_delivery(s, settings, tmpl, contact=a, delivery_id=make_delivery(s, run, a).id, campaign=camp)
        assert b"ONLY-ONE" in ok.data
        with pytest.raises(RenderError, match="coupon pool 'WINBACK' has no unused codes left"):
            render_delivery(s, settings, tmpl, contact=b, delivery_id=make_delivery(s, run, b).id, campaign=camp)
        welcome = load_template(settings, "welcome")  # the session is still usable afterwards
        assert render_delivery(s, settings, welcome, contact=b, delivery_id=make_delivery(s, run, b, step=1).id)


def test_missing_attribute_fails_that_contact_with_the_attribute_named(rapp, tdir):
    (tdir / "citynote").mkdir()
    (tdir / "citynote" / "subject.txt").write_text("News for {{ contact.attributes.city }}")
    (tdir / "citynote" / "body.html").write_text('<p>Hi</p><a href="{{ unsubscribe_url }}">unsubscribe</a>')
    tmpl = load_template(rapp.settings, "citynote")
    with rapp.session() as s:
        camp, run = make_campaign(s)
        paris = add_contact(s, "p@example.com", "P", city="Paris")
        nowhere = add_contact(s, "n@example.com", "N")
        out = render_delivery(s, rapp.settings, tmpl, contact=paris, delivery_id=make_delivery(s, run, paris).id,
                              campaign=camp)
        assert out.subject == "News for Paris"
        with pytest.raises(RenderError, match="has no attribute 'city'"):
            render_delivery(s, rapp.settings, tmpl, contact=nowhere, delivery_id=make_delivery(s, run, nowhere).id,
                            campaign=camp)


def test_each_destination_is_registered_once_across_deliveries(rapp):
    tmpl = load_template(rapp.settings, "welcome")
    with rapp.session() as s:
        _, run = make_campaign(s)
        for i in range(4):
            c = add_contact(s, f"w{i}@example.com", "W")
            render_delivery(s, rapp.settings, tmpl, contact=c, delivery_id=make_delivery(s, run, c).id)
    with rapp.session() as s:
        urls = s.scalars(select(TrackedLink.url)).all()
    assert sorted(urls) == ["https://shop.example.com/account/email-preferences", "https://shop.example.com/help",
                            "https://shop.example.com/new-arrivals"]


def test_text_part_is_derived_from_html_when_the_template_has_none(rapp):
    tmpl = load_template(rapp.settings, "welcome")
    assert tmpl.text is None
    with rapp.session() as s:
        _, run = make_campaign(s)
        c = add_contact(s, "t@example.com", "Tess Ng")
        text, _ = parts(parse(render_delivery(s, rapp.settings, tmpl, contact=c,
                                                 delivery_id=make_delivery(s, run, c).id).data))
    assert "Welcome, Tess!" in text and "<h1" not in text
    assert "See what is new" in text and CLICK.search(text)


@pytest.mark.parametrize("html", [
    "<table>{% for i in [1, 2] %}<tr><td>row {{ i }}</td></tr>{% endfor %}</table>",  # derived per message
    "<p>Use &#123;&#123; braces &#125;&#125; literally, {{ first_name }}</p>",  # entities that look like Jinja
    "<p>qqjj0jjqq {{ first_name }}</p>",  # text that looks like our placeholder
])
def test_derived_text_part_is_right_even_when_the_html_defeats_the_shortcut(rapp, html):
    from campaigns.messages.templates_store import MessageTemplate

    tmpl = MessageTemplate("odd", "email", "s", html + '<a href="{{ unsubscribe_url }}">u</a>', None, None,
                           str(hash(html)), rapp.settings.base_dir)
    with rapp.session() as s:
        c = add_contact(s, "t@example.com", "Tess Ng")
        text, _ = parts(parse(render_delivery(s, rapp.settings, tmpl, contact=c, delivery_id=0).data))
    assert "Tess" in text or "row 1" in text
    if "braces" in html:
        assert "{{ braces }}" in text and "Tess" in text
    if "qqjj" in html:
        assert "qqjj0jjqq Tess" in text
    if "row" in html:
        assert "row 1" in text and "row 2" in text


def _welcome_counting_signatures(rapp, monkeypatch):
    """The welcome email rendered for Ann, and the purpose of every signature made for it."""
    from campaigns import signing

    purposes: list[str] = []
    real = signing.sign

    def counting(settings, purpose, message, length=16):
        purposes.append(purpose)
        return real(settings, purpose, message, length)

    monkeypatch.setattr(links, "sign", counting)  # every URL, the Message-ID and the return path are signed there
    with rapp.session() as s:
        camp, run = make_campaign(s)
        d = make_delivery(s, run, add_contact(s, "ann@example.com", "Ann Lee"))
        out = render_delivery(s, rapp.settings, load_template(rapp.settings, "welcome"), contact=s.get(Contact, d.contact_id),
                              delivery_id=d.id, campaign=camp)
    return out, purposes, d


def test_the_unsubscribe_url_is_signed_once_per_message_and_is_the_same_in_body_and_header(rapp, monkeypatch):
    out, purposes, d = _welcome_counting_signatures(rapp, monkeypatch)
    assert isinstance(out, RenderedEmail)
    assert purposes.count("unsubscribe") == 1, purposes
    url = links.unsubscribe_url(rapp.settings, d.id)
    msg = parse(out.data)
    assert f"<{url}>" in msg["List-Unsubscribe"]
    assert url in parts(msg)[0] or url in parts(msg)[1]


@pytest.mark.parametrize("postal", ["", "1 Rue de la Paix, 75002 Paris"])
@pytest.mark.parametrize("name", ["welcome"])  # the newsletter's links come out reordered: derived per message
def test_a_shipped_templates_text_part_is_derived_once_and_reads_as_the_per_message_derivation(rapp, monkeypatch, name,
                                                                                              postal):
    """An expression the text form drops (the <title>, a <style>) does not force deriving the
    text part from every rendered message (the send path's largest cost); the text reads the same."""
    from campaigns.messages import rendering

    monkeypatch.setattr(rapp.settings.sending, "postal_address", postal)
    tmpl = load_template(rapp.settings, name)
    assert tmpl.text is None
    assert not rendering.compile_template(tmpl).derived_per_message
    with rapp.session() as s:
        camp, run = make_campaign(s)
        texts = []
        for email_address, person, attributes in CONTACTS:
            c = add_contact(s, email_address, person, **attributes)
            d = make_delivery(s, run, c)
            once = parts(parse(render_delivery(s, rapp.settings, tmpl, contact=c, delivery_id=d.id, campaign=camp).data))[0]
            with monkeypatch.context() as m:
                m.setattr(rendering, "_derived_text", lambda html: None)
                m.setattr(rendering, "_COMPILED", type(rendering._COMPILED)())
                each = parts(parse(render_delivery(s, rapp.settings, tmpl, contact=c, delivery_id=d.id, campaign=camp).data))[0]
            texts.append((once, each))
    for once, each in texts:
        assert [line.rstrip() for line in once.splitlines()] == [line.rstrip() for line in each.splitlines()]


def test_a_statement_the_text_form_would_lose_still_derives_per_message():
    from campaigns.messages.rendering import derive_text_source

    assert derive_text_source("<title>{{ a }}</title><p>{{ b }}</p>") == "{{ b }}\n"
    assert derive_text_source("<title>{% if a %}x{% endif %}</title><p>{{ b }}</p>") is None
    assert derive_text_source("<style>{% set a = 1 %}</style><p>{{ a }}</p>") is None
    # a line that starts after a block printing nothing starts without an indent, as it would per message
    assert derive_text_source("<p>a<br>{% if b %}b<br>{% endif %} c</p>") == "a\n{% if b %}b\n{% endif %}c\n"


def test_each_destination_is_signed_once_per_message_though_both_parts_link_to_it(rapp, monkeypatch):
    out, purposes, _d = _welcome_counting_signatures(rapp, monkeypatch)
    text, html = parts(parse(out.data))
    assert {m.group(0) for m in CLICK.finditer(text)} == {m.group(0) for m in CLICK.finditer(html)}
    assert purposes.count("click") == len({m.group(0) for m in CLICK.finditer(html)}) == 3, purposes
