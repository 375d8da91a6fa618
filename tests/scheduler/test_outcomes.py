"""The outcome-to-state table, alone: no database, no clock, no transport."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from campaigns.vocab import DeliveryState
from scheduler.outcomes import MAX_BACKOFF, RetryPolicy, backoff, decide, draw_jitter

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=3, max_retry_age=timedelta(hours=48), retry_base_seconds=60)


@pytest.mark.parametrize(
    ("outcome", "attempts", "age_hours", "state", "counted_as", "refund", "suppress", "pause", "retry_in"),
    [
        ("sent", 1, 0, DeliveryState.SENT, "sent", False, False, False, None),
        ("transient", 1, 0, DeliveryState.RETRY_WAIT, "retry_wait", False, False, False, 60),
        ("transient", 2, 0, DeliveryState.RETRY_WAIT, "retry_wait", False, False, False, 120),
        ("transient", 3, 0, DeliveryState.FAILED, "failed", False, False, False, None),  # out of attempts
        ("transient", 1, 49, DeliveryState.FAILED, "failed", False, False, False, None),  # too old to retry
        ("hard_bounce", 1, 0, DeliveryState.FAILED, "hard_bounce", False, True, False, None),
        ("policy", 2, 0, DeliveryState.QUEUED, "policy", True, False, True, None),
        ("failed", 1, 0, DeliveryState.FAILED, "failed", False, False, False, None),
        ("unknown", 1, 0, DeliveryState.UNKNOWN, "unknown", False, False, False, None),
        ("suppressed", 1, 0, DeliveryState.SUPPRESSED, "suppressed", True, False, False, None),
        ("released", 1, 0, DeliveryState.QUEUED, "released", True, False, False, None),
        ("something_new", 1, 0, DeliveryState.FAILED, "something_new", False, False, False, None),
    ],
)
def test_each_outcome_moves_the_row_as_the_table_says(outcome, attempts, age_hours, state, counted_as, refund,
                                                      suppress, pause, retry_in) -> None:  # type: ignore[no-untyped-def]
    d = decide(outcome, "why", attempts=attempts, age=timedelta(hours=age_hours), now=NOW, policy=POLICY)
    assert (d.state, d.counted_as) == (state, counted_as)
    assert (d.rule.refund_attempt, d.rule.suppress_address, d.rule.pause_campaign) == (refund, suppress, pause)
    assert d.due_at == (NOW + timedelta(seconds=retry_in) if retry_in is not None else None)


def test_giving_up_says_how_many_attempts_were_made() -> None:
    d = decide("transient", "421 try later", attempts=3, age=timedelta(0), now=NOW, policy=POLICY)
    assert d.error == "gave up after 3 attempts: 421 try later"
    assert decide("unknown", "conn reset", attempts=1, age=timedelta(0), now=NOW, policy=POLICY).error == "conn reset"


def test_backoff_doubles_spreads_and_is_capped() -> None:
    assert backoff(60, 1, 1.0) == timedelta(seconds=60)
    assert backoff(60, 4, 1.0) == timedelta(seconds=480)
    assert backoff(60, 4, 0.5) == timedelta(seconds=240)
    assert backoff(60, 40, 1.5) == MAX_BACKOFF
    rng = random.Random(7)
    assert all(0.5 <= draw_jitter(rng) <= 1.5 for _ in range(1000))
    retry = decide("transient", None, attempts=2, age=timedelta(0), now=NOW, policy=POLICY, jitter=1.5)
    assert retry.due_at == NOW + timedelta(seconds=180)
