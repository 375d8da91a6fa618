"""Link rewriting and registration: which links are tracked, UTM tags, the cache and rollbacks."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from campaigns.errors import InputError
from campaigns.messages import links
from campaigns.messages.link_registry import LinkRewriter, link_id, link_url, with_utm
from campaigns.store.models import TrackedLink


def test_utm_tags_are_added_without_overriding_the_authors_own():
    url = with_utm("https://shop.example.com/p?id=1&utm_source=footer#top", {"source": "news", "utm_medium": "email"})
    assert url == "https://shop.example.com/p?id=1&utm_source=footer&utm_medium=email#top"
    assert with_utm("https://x.example/", {}) == "https://x.example/"


def test_only_http_links_are_rewritten_and_entities_are_decoded(rapp):
    with rapp.session() as s:
        rw = LinkRewriter(s, rapp.settings, 42, {})
        doc = ('<a href="https://shop.example.com/p?a=1&amp;b=2">x</a> <a href="mailto:help@shop.example.com">m</a> '
               '<a href="tel:+14155550100">t</a> <a href="#top">a</a> '
               f'<a href="{links.unsubscribe_url(rapp.settings, 42)}">u</a> <A HREF=\'http://old.example/x\'>y</A>')
        out = rw.html(doc)
        assert 'href="mailto:help@shop.example.com"' in out and 'href="tel:+14155550100"' in out
        assert 'href="#top"' in out and links.unsubscribe_url(rapp.settings, 42) in out
        assert "shop.example.com/p" not in out and "old.example" not in out
        urls = sorted(s.scalars(select(TrackedLink.url)).all())
    assert urls == ["http://old.example/x", "https://shop.example.com/p?a=1&b=2"]


def test_plain_text_urls_keep_their_trailing_punctuation(rapp):
    with rapp.session() as s:
        out = LinkRewriter(s, rapp.settings, 7, {}).text("See https://shop.example.com/sale. Or (https://x.example/a)!")
        sale, paren = (links.click_url(rapp.settings, 7, link_id(s, u))
                       for u in ("https://shop.example.com/sale", "https://x.example/a"))
    assert out == f"See {sale}. Or ({paren})!"


def test_a_rolled_back_registration_is_not_cached(rapp):
    url = "https://shop.example.com/rolled-back"
    with pytest.raises(RuntimeError), rapp.session() as s:
        link_id(s, url)
        raise RuntimeError("the dispatcher's transaction failed")
    with rapp.session() as s:
        assert s.scalar(select(func.count()).select_from(TrackedLink)) == 0
        new = link_id(s, url)
        assert link_url(s, new) == url
    with rapp.session() as s:  # now committed: cached, and still right
        assert link_id(s, url) == new and link_url(s, new) == url


def test_a_link_read_back_before_its_registration_commits_is_not_cached(rapp):
    """The click endpoint caches link URLs by id; one read inside the transaction that inserted
    it must not be, or a rollback (SQLite may hand the id to another URL) would redirect wrongly."""
    with pytest.raises(RuntimeError), rapp.session() as s:
        lost = link_id(s, "https://shop.example.com/never-sent")
        assert link_url(s, lost) == "https://shop.example.com/never-sent"
        raise RuntimeError("the dispatcher's transaction failed")
    with rapp.session() as s:
        assert link_url(s, lost) is None
        kept = link_id(s, "https://shop.example.com/sent")
    with rapp.session() as s:
        assert link_url(s, kept) == "https://shop.example.com/sent"
        assert link_url(s, kept) == "https://shop.example.com/sent"  # from the cache now


def test_an_absurdly_long_link_is_refused(rapp):
    with rapp.session() as s, pytest.raises(InputError, match="longer than"):
        link_id(s, "https://x.example/" + "a" * 5000)
