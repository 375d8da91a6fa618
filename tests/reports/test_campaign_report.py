"""Every figure in the JSON report against numbers worked out by hand."""

import json
import math
from statistics import NormalDist

import pytest

from campaigns.reports.stats import Group, lift


def test_funnel_rates_and_money(cli, history):
    r = json.loads(cli("report", history, "--json").stdout)
    f, rates = r["funnel"], r["rates"]
    assert f["in_segment"] == 170 and f["held_out"] == 40
    assert f["skipped"] == {"no_consent": 12, "suppressed": 3, "capped": 2, "invalid_address": 1}
    assert (f["sent"], f["failed"], f["unknown"], f["bounced"], f["delivered"]) == (100, 10, 2, 4, 96)
    assert (f["opened"], f["opened_machine_only"], f["clicked"]) == (50, 8, 20)
    assert (f["unsubscribed"], f["complaints"], f["converted"]) == (3, 1, 15)
    assert f["revenue"] == 300.0 and f["revenue_per_recipient"] == 3.0
    assert f["cost"] == 1.0 and f["roi_attributed"] == pytest.approx(299.0)
    # ROI with a holdout is what the campaign caused: intention-to-treat over the 112 assigned
    # (100 sent, 10 failed, 2 unknown) against the 40 held out.
    incremental = (300 / 112 - 40 / 40) * 112
    assert f["roi"] == pytest.approx((incremental - 1.0) / 1.0)
    assert f["roi_ci95"][0] < f["roi"] < f["roi_ci95"][1]
    assert rates["open_rate"] == pytest.approx(50 / 96) and rates["click_rate"] == pytest.approx(20 / 96)
    assert rates["click_to_open"] == pytest.approx(20 / 50) and rates["conversion_rate"] == pytest.approx(0.15)
    assert rates["unsubscribe_rate"] == pytest.approx(3 / 96) and rates["delivery_rate"] == pytest.approx(0.96)


def _wilson(x, n, z):
    p = x / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def test_lift_and_its_interval_match_a_reference_computation(cli, history):
    lf = json.loads(cli("report", history, "--json").stdout)["lift"]
    # Intention-to-treat: the 112 assigned to be sent (failed and unknown sends included), 40 held out.
    xt, nt, xh, nh = 15, 112, 2, 40
    pt, ph = xt / nt, xh / nh
    z = NormalDist().inv_cdf(0.975)
    (l1, u1), (l2, u2) = _wilson(xt, nt, z), _wilson(xh, nh, z)
    newcombe = [pt - ph - math.sqrt((pt - l1) ** 2 + (u2 - ph) ** 2), pt - ph + math.sqrt((u1 - pt) ** 2 + (ph - l2) ** 2)]
    assert lf["treated"]["contacts"] == 112 and lf["holdout"]["contacts"] == 40
    assert lf["treated"]["rate"] == pytest.approx(pt) and lf["holdout"]["rate"] == pytest.approx(0.05)
    assert lf["absolute"] == pytest.approx(pt - ph)
    assert lf["ci95"] == pytest.approx(newcombe, abs=1e-9)
    assert lf["relative"] == pytest.approx(pt / ph - 1)
    assert lf["relative_ci95"][0] < lf["relative"] < lf["relative_ci95"][1]
    assert lf["incremental_revenue"] == pytest.approx((300 / 112 - 40 / 40) * 112)
    lo, hi = lf["incremental_revenue_ci95"]
    assert lo < lf["incremental_revenue"] < hi
    # the interval for the lift includes 0 (two held-out buyers out of 40): no verdict of lift
    assert newcombe[0] < 0 and lf["verdict"] == "too small to tell"


def test_too_small_to_tell_is_decided_by_power():
    assert lift(Group(20, 5, 10.0), Group(10, 1, 1.0))["verdict"] == "too small to tell"
    # 1,000 a side at 5% detects only a 2.7-point (55%) lift with 80% power: too small to tell
    small = lift(Group(1000, 50, 10.0), Group(1000, 48, 1.0))
    assert small["verdict"] == "too small to tell"
    assert small["minimum_detectable_lift"] == pytest.approx(2.8016 * math.sqrt(0.049 * 0.951 * 2 / 1000), rel=1e-3)
    # 40,000 a side detects a 0.43-point lift (under 20% of 5%), and saw none
    assert lift(Group(40000, 2000, 10.0), Group(40000, 1990, 1.0))["verdict"] == "no significant difference"
    assert lift(Group(100, 5, 1.0), Group(0, 0, 0.0))["verdict"] == "no holdout"


def test_zero_holdout_converters_still_need_an_interval_above_zero():
    """The old Wald interval had zero width on a holdout with no converter and called 1% of 1,800 vs 0 of 200 a lift."""
    r = lift(Group(1800, 18, 0.0), Group(200, 0, 0.0))
    assert r["ci95"][0] < 0 < r["ci95"][1] and r["verdict"] != "positive lift"
    assert r["relative"] is None and r["relative_ci95"][1] is None


def test_breakdowns_and_timeline(cli, history):
    r = json.loads(cli("report", history, "--json").stdout)
    by_variant = {row["group"]: row for row in r["by_variant"]}
    assert by_variant["A"] == {"group": "A", "sent": 60, "opened": 50, "clicked": 20, "converted": 15, "revenue": 300.0}
    assert by_variant["B"] == {"group": "B", "sent": 40, "opened": 0, "clicked": 0, "converted": 0, "revenue": 0.0}
    stages = {row["group"]: row["sent"] for row in r["by_lifecycle"]}
    assert stages == {"at_risk": 50, "lapsed": 50}
    tl = r["timeline"]
    assert tl["bucket"] == "hour"
    assert sum(row["opens"] for row in tl["rows"]) == 60  # human open events, re-opens included
    assert sum(row["clicks"] for row in tl["rows"]) == 20
    assert sum(row["orders"] for row in tl["rows"]) == 15 and sum(row["revenue"] for row in tl["rows"]) == 300.0


def test_overview_csv_and_loyalty(cli, history):
    rows = json.loads(cli("report", "--json").stdout)
    assert rows == [{"campaign": "winback", "channel": "email", "status": "draft", "sent": 100, "opened": 50, "clicked": 20,
                     "converted": 15, "revenue": 300.0, "lift": pytest.approx(15 / 112 - 0.05),
                     "verdict": "too small to tell"}]
    csv_out = cli("report", history, "--csv").stdout.splitlines()
    assert csv_out[0] == "metric,value" and "sent,100" in csv_out
    loyalty = json.loads(cli("report", "loyalty", "--json").stdout)
    assert loyalty["rows"] == [{"period": "2026-11", "customers": 17, "orders": 17, "revenue": 340.0, "new_customers": 17,
                                "returning_customers": 0, "retention_rate": None, "churn_rate": None,
                                "purchase_frequency": 1.0, "average_order_value": 20.0, "repeat_purchase_rate": 0.0}]
    assert {row["lifecycle"]: row["contacts"] for row in loyalty["lifecycle"]}["prospect"] == 152 - 17
    bad = cli("report", "loyalty", "--period", "decade")
    assert bad.exit_code == 1 and "--period" in bad.stderr
    missing = cli("report", "nope")
    assert missing.exit_code == 1 and "no campaign 'nope'" in missing.stderr


def test_timeline_counts_one_open_per_delivery_per_bucket(app, cli, history):
    """Issue 17: 1,000 pixel requests with varied User-Agents are one open in their hour, as in the funnel."""
    from datetime import timedelta

    from sqlalchemy import insert, select

    from campaigns.store.models import Delivery, Event
    from tests.reports.conftest import T

    with app.session() as s:
        d = s.scalars(select(Delivery).where(Delivery.state == "sent").order_by(Delivery.id)).first()
        s.connection().execute(insert(Event), [
            {"delivery_id": d.id, "campaign_id": d.campaign_id, "contact_id": d.contact_id, "type": "open",
             "occurred_at": T + timedelta(hours=7, seconds=i), "is_machine": False, "user_agent": f"Agent/{i}",
             "dedup_key": f"burst:{i}", "data": {}} for i in range(1000)])
    r = json.loads(cli("report", history, "--json").stdout)
    rows = {row["at"]: row for row in r["timeline"]["rows"]}
    assert rows["2026-11-02 16:00"]["opens"] == 1
    assert sum(row["opens"] for row in r["timeline"]["rows"]) == 61
    assert r["funnel"]["opened"] == 50


def test_quarters_are_labelled_yyyy_qn(app, cli, history):
    """SQLite printed one row per month labelled 2026-Q3.66666666666667."""
    from datetime import UTC, datetime

    from sqlalchemy import select

    from campaigns.store.models import Contact, Purchase

    with app.session() as s:
        cid = s.scalars(select(Contact.id).order_by(Contact.id)).first()
        for n, month in enumerate((1, 2, 3, 4, 12)):
            s.add(Purchase(order_id=f"Q{n}", contact_id=cid, amount_cents=1000, currency="USD", source="test",
                           occurred_at=datetime(2026, month, 10, tzinfo=UTC)))
    rows = json.loads(cli("report", "loyalty", "--period", "quarter", "--json").stdout)["rows"]
    assert [(r["period"], r["orders"]) for r in rows] == [("2026-Q1", 3), ("2026-Q2", 1), ("2026-Q4", 18)]


def test_the_html_page_states_the_intervals_the_roi_and_the_ab_decision(cli, history, tmp_path):
    out = tmp_path / "r.html"
    assert cli("report", history, "--html", "-o", str(out)).exit_code == 0
    page = out.read_text(encoding="utf-8")
    for text in ("Relative lift", "Incremental revenue", "80% power", "ROI (incremental revenue vs holdout)",
                 "ROI on attributed revenue (credit, not causal)", "A/B test", "A wins"):
        assert text in page, text
