"""Topics end to end: a recipient leaves one topic from the unsubscribe page (or by one-click),
the next campaign on that topic skips them, a campaign on another topic still reaches them;
forged or unsigned requests change nothing; each topic is its own List-Id."""

from __future__ import annotations

import asyncio
import shutil
from datetime import timedelta
from email import message_from_bytes, policy
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from campaigns.audience import consent as ledger
from campaigns.audience import stopped
from campaigns.audience.contacts import find_contact
from campaigns.audience.topics import create_topic
from campaigns.config import load_settings
from campaigns.context import App
from campaigns.messages import links
from campaigns.store.models import Campaign, CampaignRun, ConsentEvent, Delivery
from campaigns.timespec import utcnow
from campaigns.tracking.app import create_app
from scheduler.dispatcher import Dispatcher
from scheduler.planner import plan_firing
from tests.conftest import write_config
from tests.scheduler.conftest import add_people, make_campaign
from tests.support.http import ServedApp
from tests.support.smtp import free_port
from tests.tracking.conftest import REPO_TEMPLATES, URL


class Shop:
    def __init__(self, app: App, base: str, outbox: Path) -> None:
        self.app, self.base, self.outbox = app, base, outbox

    def messages(self):  # type: ignore[no-untyped-def]
        files = sorted((self.outbox / "email").glob("*.eml"), key=lambda p: int(p.stem))
        return [message_from_bytes(f.read_bytes(), policy=policy.default) for f in files]

    def send(self, name: str) -> dict[int, str]:
        """Plan and dispatch one firing of campaign `name`: {contact id: delivery state}."""
        with self.app.session() as s:
            c = s.scalar(select(Campaign).where(Campaign.name == name))
            now = utcnow()
            run = plan_firing(s, self.app.settings, c, now.replace(microsecond=0) + timedelta(seconds=1), now)
        asyncio.run(Dispatcher(self.app).dispatch_once(now + timedelta(seconds=5)))
        with self.app.session() as s:
            return {d.contact_id: d.state for d in s.scalars(select(Delivery).where(Delivery.run_id == run.run_id))}

    def unsubscribe_url(self, to: str, list_id: str) -> str:
        """The unsubscribe link of the message to `to` on list `list_id`."""
        for m in self.messages():
            if m["To"].addresses[0].addr_spec == to and m["List-Id"] == list_id:
                html = m.get_body(("html",)).get_content()
                return next(u for u in URL.findall(html) if "/u/" in u)
        raise AssertionError(f"no message to {to} on {list_id}")

    def ledger_size(self) -> int:
        with self.app.session() as s:
            return s.scalar(select(func.count()).select_from(ConsentEvent)) or 0


@pytest.fixture
def shop(tmp_path: Path, db_url: str):  # type: ignore[no-untyped-def]
    shutil.copytree(REPO_TEMPLATES, tmp_path / "templates", dirs_exist_ok=True)
    port = free_port()
    cfg = write_config(tmp_path, db_url, f'[tracking]\npublic_url = "http://127.0.0.1:{port}"\nmachine_open_seconds = 0\n')
    app = App(load_settings(cfg, environ={}))
    add_people(app, 3)
    with app.session() as s:
        create_topic(s, "news", "The monthly newsletter")
        create_topic(s, "offers", "Discounts and sales")
    make_campaign(app, "newsletter", topic="news")
    make_campaign(app, "newsletter-2", topic="news")
    make_campaign(app, "deals", topic="offers")
    make_campaign(app, "plain")
    with ServedApp(create_app(app.settings, app), port) as base:
        yield Shop(app, base, tmp_path / "outbox")
    app.engine.dispose()


def _contact(shop: Shop, email: str) -> int:
    with shop.app.session() as s:
        return find_contact(s, email).id


def test_each_topic_has_its_own_list_id_shared_by_its_campaigns(shop):
    shop.send("newsletter")
    shop.send("newsletter-2")
    shop.send("deals")
    shop.send("plain")
    ids = {m["List-Id"] for m in shop.messages()}
    with shop.app.session() as s:
        plain = s.scalar(select(Campaign.id).where(Campaign.name == "plain"))
    assert ids == {"<news.topics.example.com>", "<offers.topics.example.com>", f"<plain-{plain}.example.com>"}


def test_leaving_a_topic_on_the_page_skips_its_next_campaign_but_not_another_topics(shop):
    shop.send("newsletter")
    unsub = shop.unsubscribe_url("p0@example.com", "<news.topics.example.com>")
    before = shop.ledger_size()
    page = httpx.get(unsub)
    assert shop.ledger_size() == before  # GET changed nothing
    assert page.status_code == 200
    assert "value='topic'" in page.text and "news" in page.text and "The monthly newsletter" in page.text
    assert "value='everything'" in page.text
    r = httpx.post(unsub, data={"List-Unsubscribe": "One-Click", "scope": "topic"})
    assert r.status_code == 200 and "news" in r.text
    p0 = _contact(shop, "p0@example.com")
    with shop.app.session() as s:
        assert ledger.current_state(s, p0, "email").action == "granted"  # the channel stays
        assert not ledger.in_topic(s, p0, s.scalar(select(Campaign.topic_id).where(Campaign.name == "newsletter")))
    news = shop.send("newsletter-2")
    assert p0 not in news and set(news.values()) == {"sent"} and len(news) == 2
    with shop.app.session() as s:
        run = s.scalars(select(Campaign).where(Campaign.name == "newsletter-2")).one()
        counts = s.scalar(select(CampaignRun.counts).where(CampaignRun.campaign_id == run.id))
        assert counts["skipped"]["left_topic"] == 1
    deals = shop.send("deals")
    assert deals.get(p0) == "sent"
    assert shop.send("plain").get(p0) == "sent"


def test_everything_on_the_page_revokes_the_channel(shop):
    shop.send("newsletter")
    unsub = shop.unsubscribe_url("p1@example.com", "<news.topics.example.com>")
    r = httpx.post(unsub, data={"List-Unsubscribe": "One-Click", "scope": "everything"})
    assert r.status_code == 200 and "no more marketing email" in r.text
    p1 = _contact(shop, "p1@example.com")
    with shop.app.session() as s:
        assert ledger.current_state(s, p1, "email").action == "revoked"
    assert p1 not in shop.send("deals")


def test_one_click_post_leaves_the_topic_of_the_message_and_keeps_the_channel(shop):
    """RFC 8058: the mailbox provider POSTs only List-Unsubscribe=One-Click; docs/tracking.md
    says it leaves the topic of the message (its List-Id), since that is the list clicked from."""
    shop.send("newsletter")
    unsub = shop.unsubscribe_url("p2@example.com", "<news.topics.example.com>")
    for _ in range(2):  # idempotent: one ledger row
        r = httpx.post(unsub, data={"List-Unsubscribe": "One-Click"}, headers={"Cookie": ""})
        assert r.status_code == 200
    p2 = _contact(shop, "p2@example.com")
    with shop.app.session() as s:
        topic_rows = s.scalars(select(ConsentEvent).where(ConsentEvent.contact_id == p2, ConsentEvent.topic_id.is_not(None))).all()
        assert [e.action for e in topic_rows] == ["revoked"]
        assert ledger.current_state(s, p2, "email").action == "granted"
    assert p2 not in shop.send("newsletter-2")
    assert shop.send("deals").get(p2) == "sent"


def test_one_click_on_a_message_without_topic_revokes_the_channel(shop):
    shop.send("plain")
    with shop.app.session() as s:
        plain = s.scalar(select(Campaign.id).where(Campaign.name == "plain"))
    unsub = shop.unsubscribe_url("p0@example.com", f"<plain-{plain}.example.com>")
    assert "value='topic'" not in httpx.get(unsub).text
    assert httpx.post(unsub, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    p0 = _contact(shop, "p0@example.com")
    with shop.app.session() as s:
        assert ledger.current_state(s, p0, "email").action == "revoked"


def test_forged_unsigned_or_malformed_requests_change_nothing(shop):
    shop.send("newsletter")
    unsub = shop.unsubscribe_url("p0@example.com", "<news.topics.example.com>")
    d, sig = unsub.rsplit("/", 2)[-2:]
    other = links.b36(links.from_b36(d) + 1)  # type: ignore[operator]
    before = shop.ledger_size()
    attempts = [
        (f"{shop.base}/u/{other}/{sig}", {"List-Unsubscribe": "One-Click", "scope": "topic"}),  # signature of another delivery
        (f"{shop.base}/u/{d}/{'0' * len(sig)}", {"List-Unsubscribe": "One-Click"}),  # forged signature
        (f"{shop.base}/u/{d}", {"List-Unsubscribe": "One-Click"}),  # unsigned
        (unsub, {"scope": "topic"}),  # no List-Unsubscribe=One-Click
        (unsub, {"List-Unsubscribe": "One-Click", "scope": "offers"}),  # a scope that does not exist
        (unsub, {"List-Unsubscribe": "One-Click", "scope": "topic", "topic": "offers"}),  # naming another topic: ignored
    ]
    for url, data in attempts[:5]:
        r = httpx.post(url, data=data)
        assert 400 <= r.status_code < 500, (url, data, r.status_code)
    assert shop.ledger_size() == before
    assert httpx.get(f"{shop.base}/u/{d}/{'0' * len(sig)}").status_code == 404
    # the topic always comes from the signed delivery, never from the form
    url, data = attempts[5]
    assert httpx.post(url, data=data).status_code == 200
    p0 = _contact(shop, "p0@example.com")
    with shop.app.session() as s:
        left = {e.topic_id for e in s.scalars(select(ConsentEvent).where(ConsentEvent.contact_id == p0,
                                                                         ConsentEvent.topic_id.is_not(None)))}
        news = s.scalar(select(Campaign.topic_id).where(Campaign.name == "newsletter"))
    assert left == {news}


def test_scope_topic_on_a_message_without_topic_is_refused(shop):
    shop.send("plain")
    with shop.app.session() as s:
        plain = s.scalar(select(Campaign.id).where(Campaign.name == "plain"))
    unsub = shop.unsubscribe_url("p1@example.com", f"<plain-{plain}.example.com>")
    before = shop.ledger_size()
    assert httpx.post(unsub, data={"List-Unsubscribe": "One-Click", "scope": "topic"}).status_code == 400
    assert shop.ledger_size() == before


def test_leaving_after_planning_holds_the_queued_message_at_the_claim(shop):
    with shop.app.session() as s:
        c = s.scalar(select(Campaign).where(Campaign.name == "newsletter"))
        now = utcnow()
        run = plan_firing(s, shop.app.settings, c, now.replace(microsecond=0) + timedelta(seconds=1), now)
        p0 = find_contact(s, "p0@example.com")
        ledger.leave_topic(s, p0, c.topic_id, "email", "phone call")
        p0_id = p0.id
    asyncio.run(Dispatcher(shop.app).dispatch_once(now + timedelta(seconds=5)))
    with shop.app.session() as s:
        states = {d.contact_id: d.state for d in s.scalars(select(Delivery).where(Delivery.run_id == run.run_id))}
    assert states[p0_id] == "suppressed"
    assert sorted(states.values()).count("sent") == 2


def test_leaving_the_topic_during_the_send_stops_a_claimed_message_of_that_topic_only(shop):
    """The person leaves "news" (one-click) while the newsletter batch is being handed over:
    their claimed newsletter does not go, and a claimed message on another topic still does."""
    from scheduler.channels.file import FileEmail, FileSms
    from tests.tracking.test_stop_before_handover import StopDuringSend

    with shop.app.session() as s:
        now = utcnow()
        runs = []
        for name in ("newsletter", "deals"):
            c = s.scalar(select(Campaign).where(Campaign.name == name))
            runs.append(plan_firing(s, shop.app.settings, c, now.replace(microsecond=0) + timedelta(seconds=1), now).run_id)
        p2 = find_contact(s, "p2@example.com").id
        newsletter = s.scalar(select(Delivery.id).where(Delivery.run_id == runs[0], Delivery.contact_id == p2))
        deal = s.scalar(select(Delivery.id).where(Delivery.run_id == runs[1], Delivery.contact_id == p2))

    def leave_news() -> None:
        r = httpx.post(links.unsubscribe_url(shop.app.settings, newsletter), data={"List-Unsubscribe": "One-Click"})
        assert r.status_code == 200

    stopped.forget_all()
    channel = StopDuringSend(FileEmail(shop.outbox), leave_news)
    asyncio.run(Dispatcher(shop.app, channels={"email": channel, "sms": FileSms(shop.outbox)}).dispatch_once(now + timedelta(seconds=5)))
    with shop.app.session() as s:
        assert s.get(Delivery, newsletter).state == "suppressed"
        assert s.get(Delivery, deal).state == "sent"
    assert channel.sent_to.count("p2@example.com") == 1


def _topic_id(shop: Shop, name: str) -> int:
    with shop.app.session() as s:
        return s.scalar(select(Campaign.topic_id).where(Campaign.name == name))


def test_the_page_lists_every_topic_so_a_recipient_can_rejoin_one_they_left(shop):
    news, offers = _topic_id(shop, "newsletter"), _topic_id(shop, "deals")
    p0 = _contact(shop, "p0@example.com")
    with shop.app.session() as s:
        ledger.leave_topic(s, find_contact(s, "p0@example.com"), offers, "email", "phone call")
    shop.send("plain")  # a message without a topic still links to the page with every topic
    with shop.app.session() as s:
        plain = s.scalar(select(Campaign.id).where(Campaign.name == "plain"))
    unsub = shop.unsubscribe_url("p0@example.com", f"<plain-{plain}.example.com>")
    before = shop.ledger_size()
    page = httpx.get(unsub).text
    assert shop.ledger_size() == before  # GET changed nothing
    assert f"name='topic_{news}' value='1' checked" in page and "The monthly newsletter" in page
    assert f"name='topic_{offers}' value='1'>" in page and "Discounts and sales" in page  # left: unchecked
    # rejoin "offers", leave "news": one POST from the signed page
    r = httpx.post(unsub, data={"List-Unsubscribe": "One-Click", "scope": "preferences", f"topic_{offers}": "1"})
    assert r.status_code == 200 and "saved" in r.text.lower()
    with shop.app.session() as s:
        assert ledger.in_topic(s, p0, offers) and not ledger.in_topic(s, p0, news)
        assert ledger.current_state(s, p0, "email").action == "granted"  # the channel is untouched
    assert shop.send("deals").get(p0) == "sent"
    assert p0 not in shop.send("newsletter-2")
    again = shop.ledger_size()  # saving the same choice again adds nothing
    assert httpx.post(unsub, data={"List-Unsubscribe": "One-Click", "scope": "preferences", f"topic_{offers}": "1"}).status_code == 200
    assert shop.ledger_size() == again


def test_the_preferences_form_needs_the_signed_link(shop):
    shop.send("plain")
    with shop.app.session() as s:
        plain = s.scalar(select(Campaign.id).where(Campaign.name == "plain"))
    unsub = shop.unsubscribe_url("p1@example.com", f"<plain-{plain}.example.com>")
    d, sig = unsub.rsplit("/", 2)[-2:]
    before = shop.ledger_size()
    for url, data in [(f"{shop.base}/u/{d}/{'0' * len(sig)}", {"List-Unsubscribe": "One-Click", "scope": "preferences"}),
                      (f"{shop.base}/u/{d}", {"List-Unsubscribe": "One-Click", "scope": "preferences"}),
                      (unsub, {"scope": "preferences"})]:
        assert 400 <= httpx.post(url, data=data).status_code < 500
    assert shop.ledger_size() == before
