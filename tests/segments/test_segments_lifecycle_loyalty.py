"""Lifecycle and loyalty rules at their edges: one second either side of each threshold."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from campaigns.segments import compile_where, profiles
from campaigns.store.models import Contact, Purchase
from tests.segments.conftest import AT

DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)


def stage_of(app, purchases_ago: list[timedelta]) -> str:  # type: ignore[no-untyped-def]
    with app.session() as s:
        c = Contact(email=f"x{len(purchases_ago)}-{int(purchases_ago[0].total_seconds()) if purchases_ago else 0}@example.com")
        s.add(c)
        s.flush()
        for k, ago in enumerate(purchases_ago):
            s.add(Purchase(order_id=f"{c.id}-{k}", contact_id=c.id, amount_cents=1000, currency="USD",
                           occurred_at=AT - ago))
        s.flush()
        stage = profiles(s, app.settings, [c.id], AT)[c.id].lifecycle
        # the filter language applies the same rule in SQL
        in_filter = s.scalars(select(Contact.id).where(
            compile_where(f'lifecycle = "{stage}"', app.settings, AT), Contact.id == c.id)).all()
        assert in_filter == [c.id], f"profile says {stage}, the filter disagrees"
        return stage


@pytest.mark.parametrize(("purchases", "stage"), [
    ([], "prospect"),
    ([30 * DAY], "new"),  # first purchase exactly new_days ago is still new
    ([30 * DAY + SECOND], "active"),
    ([90 * DAY, 120 * DAY], "active"),  # under 3 orders: silent exactly at_risk_days is not yet at risk
    ([90 * DAY + SECOND, 120 * DAY], "at_risk"),
    ([365 * DAY, 400 * DAY], "at_risk"),
    ([365 * DAY + SECOND, 400 * DAY], "lapsed"),  # beyond lapsed_days
    ([20 * DAY, 30 * DAY, 40 * DAY], "active"),  # usual interval 10 days: silent 20 = 2 x 10, not more
    ([20 * DAY + SECOND, 30 * DAY + SECOND, 40 * DAY + SECOND], "at_risk"),
    ([200 * DAY, 300 * DAY, 400 * DAY], "active"),  # interval 100 days: silent 200 is fine beyond 90
    ([2 * DAY + SECOND, 2 * DAY + 2 * SECOND, 31 * DAY], "active"),  # interval ~14.5 days
    ([3 * DAY, 3 * DAY, 3 * DAY + SECOND, 40 * DAY], "active"),  # interval 12.3 days: 3 < 24.6
    ([36 * DAY, 36 * DAY, 36 * DAY], "at_risk"),  # same-day orders: the interval floor is one day
])
def test_lifecycle_stage_at_the_edges(app, purchases, stage):
    assert stage_of(app, purchases) == stage


def test_lifecycle_thresholds_come_from_config(tmp_path, db_url):
    from campaigns.config import load_settings
    from campaigns.context import App
    from tests.conftest import write_config

    cfg = write_config(tmp_path, db_url, "[lifecycle]\nnew_days = 7\nat_risk_days = 10\n")
    app = App(load_settings(cfg, environ={}))
    try:
        assert stage_of(app, [8 * DAY]) == "active"
        assert stage_of(app, [11 * DAY, 12 * DAY]) == "at_risk"
    finally:
        app.engine.dispose()


def loyalty_of(app, buyers: list[tuple[int, int]]) -> list[str | None]:  # type: ignore[no-untyped-def]
    """buyers: (orders, total cents each order) -> loyalty per buyer in order."""
    ids = []
    with app.session() as s:
        for i, (n, each) in enumerate(buyers):
            c = Contact(email=f"l{i}@example.com")
            s.add(c)
            s.flush()
            ids.append(c.id)
            for k in range(n):
                s.add(Purchase(order_id=f"l{i}-{k}", contact_id=c.id, amount_cents=each, currency="USD",
                               occurred_at=AT - (k + 1) * DAY))
        s.flush()
        got = profiles(s, app.settings, ids, AT)
        for kind in {p.loyalty for p in got.values()}:
            sql = set(s.scalars(select(Contact.id).where(compile_where(f'loyalty = "{kind}"', app.settings, AT))))
            assert sql == {i for i in ids if got[i].loyalty == kind}, kind
    return [got[i].loyalty for i in ids]


def test_loyalty_splits_above_the_medians_and_a_buyer_at_the_median_is_not_above(app):
    # orders 1, 2, 3 -> median 2; totals 3000, 2000, 300 -> median 2000
    assert loyalty_of(app, [(1, 3000), (2, 1000), (3, 100)]) == ["butterfly", "stranger", "barnacle"]


def test_loyalty_with_an_even_number_of_buyers_uses_the_mean_of_the_middle_two(app):
    # orders 1, 2, 4, 5 -> median 3; totals 500, 6000, 4000, 10000 -> median (4000 + 6000) / 2 = 5000
    got = loyalty_of(app, [(1, 500), (2, 3000), (4, 1000), (5, 2000)])
    assert got == ["stranger", "butterfly", "barnacle", "true_friend"]


def test_loyalty_cutoffs_from_config_replace_the_medians(tmp_path, db_url):
    from campaigns.config import load_settings
    from campaigns.context import App
    from tests.conftest import write_config

    cfg = write_config(tmp_path, db_url, "[loyalty]\nfrequency_cutoff = 1\nmonetary_cutoff = 25\n")
    app = App(load_settings(cfg, environ={}))
    try:
        # frequent: more than 1 order; high value: more than $25 in total
        assert loyalty_of(app, [(1, 2600), (2, 1250), (2, 1300), (1, 2500)]) == [
            "butterfly", "barnacle", "true_friend", "stranger"]
    finally:
        app.engine.dispose()


def test_loyalty_counts_only_the_period_and_a_configured_period_changes_it(tmp_path, db_url):
    """Orders 1, 2, ... days before AT; a 2-day period (the start excluded) holds each buyer's
    latest order only, so the 5-order buyer is no more frequent than the others. Over all
    time (the old rule) they were a barnacle and the 2-order buyer a true friend."""
    from campaigns.config import load_settings
    from campaigns.context import App
    from tests.conftest import write_config

    cfg = write_config(tmp_path, db_url, '[loyalty]\nperiod = "2d"\n')
    app = App(load_settings(cfg, environ={}))
    try:
        # in the period: 1 order each -> median 1, nobody above; spend 100, 1000, 100 -> median 100
        assert loyalty_of(app, [(1, 100), (2, 1000), (5, 100)]) == ["stranger", "butterfly", "stranger"]
    finally:
        app.engine.dispose()
    bad = write_config(tmp_path, db_url, '[loyalty]\nperiod = "0d"\n')
    with pytest.raises(Exception, match="period"):
        load_settings(bad, environ={})
