"""A render reused across recipients (campaigns/messages/rendering.py, `_REUSABLE`) gives the
same message, byte for byte, as rendering each one in full; and it is never used where a
message depends on more than the values it is keyed on."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime

import pytest

from campaigns.messages import rendering, sandbox_limits
from campaigns.messages.rendering import RenderedEmail, RenderError, render_delivery
from campaigns.messages.templates_store import MessageTemplate, load_template
from tests.rendering.conftest import add_contact, make_campaign, make_delivery

PEOPLE = [("ann@example.com", "Ann Lee"), ("ann.b@example.com", "Ann Berg"), ("zoe@example.com", "Zoë Ångström"),
          ("bob@example.com", None), ("eve@example.com", "Eve <script>&amp;"), ("mal@example.com", "Mal http://evil.example/x")]
CSS = "<style>.x { color: #123456; } a { font-weight: bold; }</style>"


def _template(html: str, subject: str = "Hi {{ first_name|default('there', true) }}", text: str | None = None) -> MessageTemplate:
    return MessageTemplate("t", "email", subject, html, text, None, hashlib.sha256((subject + html + str(text)).encode()).hexdigest(), None)  # type: ignore[arg-type]


@pytest.fixture
def fresh(monkeypatch):
    """A fixed Date header, and no renders kept from earlier tests."""
    monkeypatch.setattr(rendering, "utcnow", lambda: datetime(2026, 11, 28, 12, 0, tzinfo=UTC))
    monkeypatch.setattr(rendering, "_REUSED", type(rendering._REUSED)())


def _render_all(rapp, tmpl: MessageTemplate, monkeypatch,
                ways: tuple[bool, ...] = (True, False)) -> tuple[list[list[bytes | str]], list[int]]:
    """Every person's message (or render failure), once per way (reused, in full), for the
    same deliveries; and the deliveries' ids."""
    results: list[list[bytes | str]] = []
    with rapp.session() as s:
        camp, run = make_campaign(s, utm={"source": "news"})
        people = [add_contact(s, address, person) for address, person in PEOPLE]
        deliveries = [(c, make_delivery(s, run, c)) for c in people]
        for reuse in ways:
            out: list[bytes | str] = []
            with monkeypatch.context() as m:
                if not reuse:
                    m.setattr(rendering, "_reuse_key", lambda *a: None)
                for c, d in deliveries:
                    try:
                        rendered = render_delivery(s, rapp.settings, tmpl, contact=c, delivery_id=d.id, campaign=camp)
                        assert isinstance(rendered, RenderedEmail)
                        out.append(rendered.data)
                    except RenderError as exc:
                        out.append(str(exc))
            results.append(out)
        ids = [d.id for _, d in deliveries]
        s.rollback()
    return results, ids


def test_the_welcome_template_reused_gives_the_same_bytes_as_rendered_in_full(rapp, fresh, monkeypatch):
    tmpl = load_template(rapp.settings, "welcome")
    assert rendering.compile_template(tmpl).reads is not None
    (reused, full), ids = _render_all(rapp, tmpl, monkeypatch)
    assert all(isinstance(m, bytes) for m in full)
    assert reused == full
    # each message still carries its own unsubscribe link, in the HTML, the text and the header
    for delivery_id, data in zip(ids, reused, strict=True):
        assert isinstance(data, bytes)
        url = rendering.links.unsubscribe_url(rapp.settings, delivery_id)
        assert data.count(url.encode()) >= 3, (delivery_id, url)


@pytest.mark.parametrize("html", [
    f"<html><head>{CSS}</head><body><p class='x'>Hello {{{{ first_name }}}}</p>"
    "<a href='{{ unsubscribe_url }}'>stop</a> {{ unsubscribe_url }}</body></html>",
    "<p>{% if first_name %}Dear {{ first_name }}{% else %}Hello{% endif %}, from {{ sender.name }} "
    "<a href=\"https://shop.example.com/?c={{ campaign.name }}\">shop</a></p><a href=\"{{ unsubscribe_url }}\">u</a>",
    "<p>{{ first_name * 200 }}</p>",  # a long line, wrapped by quoted-printable
    # the link inside a tracked destination, twice on a line, next to text: each message's own
    "<p><a href=\"https://shop.example.com/?next={{ unsubscribe_url }}\">a</a>{{ unsubscribe_url }}x"
    "<a href='https://shop.example.com/b'>b</a>{{ unsubscribe_url }}</p>",
    "<p>{{ first_name.nope }}</p>",  # fails for everyone, the same way
])
def test_a_reusable_template_gives_the_same_messages_either_way(rapp, fresh, monkeypatch, html):
    tmpl = _template(html)
    assert rendering.compile_template(tmpl).reads is not None
    (reused, full), _ids = _render_all(rapp, tmpl, monkeypatch)
    assert reused == full


@pytest.mark.parametrize("html", [
    "<p>{{ unsubscribe_url|upper }}</p>",  # filtered: the placeholder would be filtered instead
    "<p>{% if unsubscribe_url %}x{% endif %}</p>",
    "<p>{{ unsubscribe_url[:20] }}</p>",
    "<p>{% set u = unsubscribe_url %}{{ u }}</p>",
    "<p>{{ contact.email }}</p>",  # the whole contact record: every message differs
    "<p>{{ now.year }}</p>",
    "<p>{{ coupon('SPRING') }}</p>",
    "<p>{{ purchase.total }}</p>",  # a trigger's data
    "<p>{{ confirm_url }}</p>",
    "<p>{{ ['a', 'b']|random }}</p>",  # a pick per message
])
def test_a_template_that_reads_more_than_the_keyed_values_renders_every_message(rapp, html):
    for shipped in ("newsletter", "winback"):  # `now` in the subject; a coupon
        assert rendering.compile_template(load_template(rapp.settings, shipped)).reads is None
    assert rendering.compile_template(_template(html)).reads is None
    assert rendering.compile_template(_template("<p>x</p>", subject="{{ now }}")).reads is None
    assert rendering.compile_template(_template("<p>x</p>", text=html)).reads is None


def test_messages_that_read_the_same_values_are_rendered_once(rapp, fresh, monkeypatch):
    calls: list[str] = []
    real = rendering._render_email_parts
    monkeypatch.setattr(rendering, "_render_email_parts", lambda t, c, ctx, b: calls.append(ctx["first_name"]) or real(t, c, ctx, b))
    (out,), _ids = _render_all(rapp, load_template(rapp.settings, "welcome"), monkeypatch, ways=(True,))
    assert len(out) == len(PEOPLE)
    # Ann Lee and Ann Berg share a first name: one render for both; the others each have their own
    assert calls.count("Ann") == 1
    assert len(calls) == len(set(calls)) == len(PEOPLE) - 1


def test_a_reused_render_still_keeps_the_output_cap(rapp, fresh, monkeypatch):
    monkeypatch.setattr(sandbox_limits, "MAX_OUTPUT_CHARS", 2_000)  # the cap of one part, during the render and after the links go in
    monkeypatch.setattr(rapp.settings.tracking, "public_url", "https://tracking.a-long-subdomain.example.net/links")
    many = "<p>{% for i in range(40) %}{{ unsubscribe_url }}{% endfor %}</p>"  # 40 placeholders fit, 40 links do not
    tmpl = _template(many)
    assert rendering.compile_template(tmpl).reads is not None
    (out,), _ids = _render_all(rapp, tmpl, monkeypatch, ways=(True,))
    assert all(isinstance(m, str) and "output passed 2,000 characters" in m for m in out), out[0]


def test_kept_renders_stay_within_their_count_and_characters(rapp, fresh, monkeypatch):
    """A template that prints the first name into a large part: each distinct name is a new
    render, and what is kept stays bounded however many names come."""
    kept = rendering._Kept(count=256, chars=5_000)
    monkeypatch.setattr(rendering, "_REUSED", kept)
    tmpl = _template("<p>{% for i in range(150) %}{{ first_name }} {% endfor %}<a href='{{ unsubscribe_url }}'>u</a></p>")
    (out,), _ids = _render_all(rapp, tmpl, monkeypatch, ways=(True,))
    assert all(isinstance(m, bytes) for m in out)
    assert 0 < kept.size <= 5_000
    assert kept.size == sum(len(p) for parts, _ in kept._kept.values() for p in parts if p is not None)
    assert len(kept._kept) < len(PEOPLE)  # the oldest went to make room
    kept.put(("huge",), ("s", "x" * 6_000, None))  # one render larger than the whole budget is not kept
    assert kept.get(("huge",)) is None and kept.size <= 5_000
    few = rendering._Kept(count=2)
    for n in range(5):
        few.put((n,), ("s", "d", None))
    assert few.get((0,)) is None and few.get((4,)) is not None and few.size == 4


@pytest.mark.parametrize("name", ["welcome", "newsletter"])
def test_the_encoded_parts_hold_what_rewriting_each_message_gives(rapp, fresh, name):
    """The parts are encoded once with slots and filled per message: decoded, each message's
    HTML and text are what tracking its links and adding its pixel in full gives."""
    import email
    from email import policy

    from campaigns.messages.link_registry import LinkRewriter

    tmpl = load_template(rapp.settings, name)
    with rapp.session() as s:
        camp, run = make_campaign(s, utm={"source": "news"})
        for address, person in PEOPLE:
            c = add_contact(s, address, person)
            d = make_delivery(s, run, c)
            rendered = render_delivery(s, rapp.settings, tmpl, contact=c, delivery_id=d.id, campaign=camp)
            assert isinstance(rendered, RenderedEmail)
            msg = email.message_from_bytes(rendered.data, policy=policy.default)
            html, text = msg.get_body(("html",)).get_content(), msg.get_body(("plain",)).get_content()
            ctx = rendering.build_context(s, rapp.settings, contact=c, delivery_id=d.id, campaign=camp,
                                          lifecycle=None, rfm_segment=None)
            ctx["now"] = rendering.utcnow()  # the fixed clock, as the render had
            _subject, doc, part = rendering._render_email_parts(tmpl, rendering.compile_template(tmpl), ctx, time.thread_time())
            linker = LinkRewriter(s, rapp.settings, d.id, ctx["campaign"]["utm"])
            want_html = rendering._pixel(linker.html(doc), rendering.links.open_url(rapp.settings, d.id))
            want_text = linker.text(part if part is not None else rendering.html_text(doc))
            assert _lines(html) == _lines(want_html.replace(rendering._DATA_MARK, ""))
            assert _lines(text) == _lines(want_text.replace(rendering._DATA_MARK, ""))
        s.rollback()


def _lines(part: str) -> list[str]:
    return part.replace("\r\n", "\n").rstrip("\n").split("\n")
