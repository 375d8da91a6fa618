"""A URL in contact data is printed as text, never turned into a tracked redirect."""

import asyncio
import re
from email import message_from_bytes, policy

import httpx
from sqlalchemy import select

from campaigns.audience import consent as ledger
from campaigns.audience.contacts import add_contact
from campaigns.store.models import Campaign, TrackedLink
from campaigns.timespec import utcnow
from scheduler.dispatcher import Dispatcher
from scheduler.planner import plan_firing

EVIL = "https://evil.example/login"


def test_a_contact_named_like_a_url_gets_no_tracked_link_to_it(shop):
    with shop.app.session() as s:
        c = add_contact(s, shop.app.settings, {"email": "mallory@example.com", "name": f"{EVIL} Smith"})
        ledger.grant(s, shop.app.settings, c, "email", "test")
        campaign = s.get(Campaign, shop.campaign_id)
        now = utcnow()
        plan_firing(s, shop.app.settings, campaign, now.replace(microsecond=0).replace(second=0), now)
    asyncio.run(Dispatcher(shop.app).dispatch_once())
    files = sorted((shop.outbox / "email").glob("*.eml"), key=lambda p: p.stat().st_mtime_ns)
    msg = next(m for m in (message_from_bytes(f.read_bytes(), policy=policy.default) for f in files)
               if "mallory" in str(m["To"]))
    html = msg.get_body(("html",)).get_content()
    text = msg.get_body(("plain",)).get_content()
    assert "Welcome, https://evil.example/login!" in html  # shown as text, escaped
    assert EVIL in text and EVIL in str(msg["Subject"])
    assert "\ue000" not in html + text + str(msg["Subject"])
    with shop.app.session() as s:
        assert not [u for u in s.scalars(select(TrackedLink.url)) if "evil" in u]
    for url in re.findall(r'https?://127\.0\.0\.1:\d+/c/[A-Za-z0-9/_\-]+', html + text):
        r = httpx.get(url)
        assert "evil" not in r.headers.get("location", "")
    # the author's own links are still tracked
    assert "/c/" in html


def test_a_link_whose_host_is_built_from_template_data_is_refused(shop, tmp_path):
    """`https://shop.example.com{{ contact.attributes.path }}` looks like a link to the shop, but
    a contact whose path is "@evil.example/login" (userinfo) or ".evil.example" turns its host
    into evil.example, and the tracked click would redirect there: lint refuses the template,
    so nothing is sent with it. Data after the host (a path, a query) is fine."""
    from tests.conftest import CliRunner

    run = CliRunner(tmp_path / "config.toml")
    for name, href in (("glued", "https://shop.example.com{{ contact.attributes.path | default('') }}"),
                       ("hostless", "https://{{ contact.attributes.shop | default('shop') }}.example.com/"),
                       ("fine", "https://shop.example.com/{{ contact.attributes.path | default('') }}?e={{ contact.email }}")):
        folder = tmp_path / "templates" / name
        folder.mkdir()
        (folder / "subject.txt").write_text("Hello\n", encoding="utf-8")
        (folder / "body.html").write_text(f'<p>\n<a href="{href}">Go</a> <a href="{{{{ unsubscribe_url }}}}">Unsubscribe</a></p>\n',
                                          encoding="utf-8")
        r = run("templates", "lint", name)
        if name == "fine":
            assert r.exit_code == 0, r.output
        else:
            assert r.exit_code == 1 and "body.html line 2" in r.stderr and "host" in r.stderr, r.output
