"""RFM quintiles, named segments, lifecycle, loyalty, CLV and ABC on the hand-worked shop
(answers in conftest.py's table), and profiles agreeing with the filter language."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from campaigns.segments import compile_where, distribution, profiles
from campaigns.segments.rfm import SEGMENT_NAMES, segment_name
from campaigns.store.models import Contact
from tests.segments.conftest import AT

EXPECTED = {
    # name: (rfm, segment, lifecycle, loyalty, abc, orders, total cents, historical profit cents = 0.3 x total)
    "A": ("555", "champions", "active", "true_friend", "A", 10, 90000, 27000),
    "B": ("515", "potential_loyalists", "new", "butterfly", "A", 1, 100000, 30000),
    "C": ("442", "potential_loyalists", "new", "barnacle", "C", 6, 5000, 1500),
    "D": ("423", "potential_loyalists", "active", "stranger", "B", 2, 40000, 12000),
    "E": ("343", "loyal", "at_risk", "barnacle", "A", 8, 60000, 18000),
    "F": ("321", "about_to_sleep", "active", "stranger", "C", 3, 3000, 900),
    "G": ("234", "at_risk", "active", "butterfly", "A", 5, 70000, 21000),
    "H": ("211", "hibernating", "at_risk", "stranger", "C", 1, 2000, 600),
    "I": ("154", "cant_lose_them", "at_risk", "true_friend", "A", 9, 80000, 24000),
    "J": ("132", "at_risk", "lapsed", "stranger", "C", 4, 10000, 3000),
}


def test_profiles_match_the_hand_worked_scores_stages_and_values(app, shop):
    with app.session() as s:
        got = profiles(s, app.settings, list(shop.ids.values()), AT)
        valued = profiles(s, app.settings, list(shop.ids.values()), AT, value=True)
    for name, (rfm, seg, stage, loyal, abc, orders, total, historical) in EXPECTED.items():
        p = got[shop.ids[name]]
        assert (p.rfm_score, p.rfm_segment, p.lifecycle, p.loyalty, p.abc) == (rfm, seg, stage, loyal, abc), name
        assert (p.r, p.f, p.m) == (int(rfm[0]), int(rfm[1]), int(rfm[2]))
        assert (p.orders, p.total_cents, p.clv_cents, p.p_alive) == (orders, total, None, None), name
        v = valued[shop.ids[name]]
        # CLV = historical profit (margin 0.3 x spent) + the present value of the future: never less
        assert v.clv_cents >= historical and 0 < v.p_alive <= 1 and v.churn_risk == pytest.approx(1 - v.p_alive), name
        assert p.aov_cents == round(total / orders)
    # J, silent for 500 days after four orders 10 days apart, is far less likely still a customer than A
    assert valued[shop.ids["J"]].p_alive < 0.1 and valued[shop.ids["A"]].p_alive > 0.5
    for name in "PQ":
        p = got[shop.ids[name]]
        assert (p.lifecycle, p.orders, p.r, p.rfm_segment, p.loyalty, p.clv_cents) == ("prospect", 0, None, None, None, None)


def test_profile_dates_are_the_first_and_last_purchase(app, shop):
    from datetime import timedelta

    with app.session() as s:
        p = profiles(s, app.settings, [shop.ids["D"]], AT)[shop.ids["D"]]
    assert p.last_at == AT - timedelta(days=20)
    assert p.first_at == AT - timedelta(days=50)


def test_profiles_read_in_chunks_give_the_same_answers(app, shop, monkeypatch):
    from campaigns.segments import customers as module

    with app.session() as s:
        whole = profiles(s, app.settings, list(shop.ids.values()), AT)
        monkeypatch.setattr(module, "IN_CHUNK", 3)
        chunked = profiles(s, app.settings, list(shop.ids.values()), AT)
    assert whole == chunked


@pytest.mark.parametrize("field", ["rfm_segment", "lifecycle", "loyalty", "abc"])
def test_profiles_agree_with_the_filter_language(app, shop, field):
    with app.session() as s:
        got = profiles(s, app.settings, list(shop.ids.values()), AT)
        values = {getattr(p, field) for p in got.values()} - {None}
        filter_field = {"rfm_segment": "rfm.segment"}.get(field, field)
        for value in values:
            ids = set(s.scalars(select(Contact.id).where(
                compile_where(f'{filter_field} = "{value}"', app.settings, AT, session=s))))
            assert ids == {cid for cid, p in got.items() if getattr(p, field) == value}, value


def test_distribution_counts_contacts_and_revenue_per_stage(app, shop):
    with app.session() as s:
        rows = {r["lifecycle"]: r for r in distribution(s, app.settings, "lifecycle", AT)}
        rfm = {r["segment"]: r for r in distribution(s, app.settings, "rfm", AT)}
        loyal = {r["loyalty"]: r for r in distribution(s, app.settings, "loyalty", AT)}
    assert {k: v["contacts"] for k, v in rows.items()} == {
        "prospect": 2, "new": 2, "active": 4, "at_risk": 3, "lapsed": 1}
    assert rows["new"]["revenue_cents"] == 105000
    assert rfm["potential_loyalists"]["contacts"] == 3 and rfm["lost"]["contacts"] == 0
    assert list(rfm) == list(SEGMENT_NAMES)
    assert loyal["true_friend"]["revenue_cents"] == 90000 + 80000
    assert loyal["true_friend"]["revenue_share"] == round(170000 / 460000, 4)


def test_rfm_grid_names_every_score_exactly_once_with_the_documented_corners():
    names = {segment_name(r, f, m) for r in range(1, 6) for f in range(1, 6) for m in range(1, 6)}
    assert names == set(SEGMENT_NAMES)
    assert segment_name(5, 5, 5) == "champions"
    assert segment_name(5, 1, 1) == "new"
    assert segment_name(4, 1, 1) == "promising"
    assert segment_name(3, 3, 3) == "need_attention"
    assert segment_name(1, 1, 1) == "lost"
    assert segment_name(1, 5, 5) == "cant_lose_them"
    assert segment_name(2, 1, 2) == "hibernating"  # FM = (1 + 2) / 2 rounded up = 2


def test_sql_segment_mapping_equals_the_python_grid(app):
    from sqlalchemy import literal

    from campaigns.segments.rfm import segment_case

    with app.session() as s:
        for r in range(1, 6):
            for f in range(1, 6):
                for m in (1, 3, 5):
                    sql = s.scalar(select(segment_case(literal(r), literal(f), literal(m))))
                    assert sql == segment_name(r, f, m), (r, f, m)


def test_quintiles_are_equal_sized_and_ties_are_broken_by_spend_then_id(app):
    """Twenty buyers with 1 x6, 2 x4, 3 x5, 4 x5 orders. Ranked with ties sharing the lowest
    rank the scores were 1 x6, 2 x4, 3 x5, 4 x5 and no 5 at all; now each score holds four.
    The single-order buyers spent 600, 500, ... 100: the two biggest spenders take F=2."""
    from datetime import timedelta

    from campaigns.store.models import Purchase
    counts = [1] * 6 + [2] * 4 + [3] * 5 + [4] * 5
    with app.session() as s:
        ids = []
        for i, n in enumerate(counts):
            c = Contact(email=f"t{i}@example.com")
            s.add(c)
            s.flush()
            ids.append(c.id)
            for k in range(n):
                s.add(Purchase(order_id=f"t{i}-{k}", contact_id=c.id, amount_cents=(600 - 100 * i) if n == 1 else 100,
                               currency="USD", occurred_at=AT - timedelta(days=k + 1)))
    with app.session() as s:
        got = profiles(s, app.settings, ids, AT)
        in_sql = {f: len(list(s.scalars(select(Contact.id).where(compile_where(f"rfm.f = {f}", app.settings, AT)))))
                  for f in range(1, 6)}
    # sorted by (orders, total, last purchase, id): rows 1-4 score 1, 5-8 score 2, ... 17-20 score 5
    assert [got[i].f for i in ids] == [2, 2, 1, 1, 1, 1, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5]
    assert in_sql == {1: 4, 2: 4, 3: 4, 4: 4, 5: 4}


def test_equal_spenders_share_an_abc_class(app):
    """Totals 70, 15, 15 of 100: those who spent more than a 15-spender bring 70% (< 80%), so both are A.
    Ranked row by row, the second 15 would have 85% before it and fall to B."""
    from datetime import timedelta

    from campaigns.store.models import Purchase

    ids = []
    with app.session() as s:
        for i, dollars in enumerate((70, 15, 15, 0)):
            c = Contact(email=f"abc{i}@example.com")
            s.add(c)
            s.flush()
            ids.append(c.id)
            s.add(Purchase(order_id=f"abc{i}", contact_id=c.id, amount_cents=dollars * 100, currency="USD",
                           occurred_at=AT - timedelta(days=i + 1)))
    with app.session() as s:
        got = profiles(s, app.settings, ids, AT)
        in_a = set(s.scalars(select(Contact.id).where(compile_where('abc = "A"', app.settings, AT))))
    assert [got[i].abc for i in ids] == ["A", "A", "A", "C"]  # the $0 buyer: 100% spent more
    assert in_a == set(ids[:3])


def test_profiles_of_ids_with_a_gap_leave_out_the_buyer_in_the_gap(app, shop):
    # A dense id set is read as a range (customers.profiles): a buyer inside it not asked for stays out.
    ids = sorted(shop.ids[n] for n in "ABCDEFGHIJ")
    asked = [i for i in ids if i != ids[4]]
    with app.session() as s:
        got = profiles(s, app.settings, asked, AT, prospects=False)
    assert sorted(got) == asked and ids[4] not in got
