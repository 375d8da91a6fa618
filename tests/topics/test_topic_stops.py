"""A topic left is news for the senders' last check: it holds back that topic's messages only."""

from __future__ import annotations

from datetime import timedelta

from campaigns.audience import stopped
from campaigns.timespec import utcnow


def test_a_topic_stop_holds_back_that_topic_only():
    stopped.forget_all()
    planned = utcnow() - timedelta(seconds=5)
    stopped.remember(7, stopped.topic_scope(3), utcnow().timestamp())
    assert not stopped.wanted(7, "email", planned, topic_id=3)
    assert stopped.wanted(7, "email", planned, topic_id=4)
    assert stopped.wanted(7, "email", planned)
    assert stopped.wanted(8, "email", planned, topic_id=3)
    assert stopped.wanted(7, "email", utcnow() + timedelta(seconds=5), topic_id=3)  # planned after: not held back
    stopped.forget_all()


def test_notification_payloads_carry_topic_scopes_and_refuse_anything_else():
    assert stopped.parse_payload("5:topic-3:1.5") == (5, "topic-3", 1.5)
    assert stopped.parse_payload("5:email:2") == (5, "email", 2.0)
    # The schema first: a listener hears its own schema's stops, not another shop's (or test's).
    assert stopped.parse_payload("shop_a:5:email:2", "shop_a") == (5, "email", 2.0)
    assert stopped.parse_payload("shop_b:5:email:2", "shop_a") is None
    for bad in ("5:topic-x:1", "5:topic-:1", "5:topic-3:1:2", "5:news:1", "x:email:1", "5:topic-3:nan-ish"):
        assert stopped.parse_payload(bad) is None, bad
