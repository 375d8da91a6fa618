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
    assert f["cost"] == 1.0 and f["roi"] == pytest.approx(299.0)
    assert rates["open_rate"] == pytest.approx(50 / 96) and rates["click_rate"] == pytest.approx(20 / 96)
    assert rates["click_to_open"] == pytest.approx(20 / 50) and rates["conversion_rate"] == pytest.approx(0.15)
    assert rates["unsubscribe_rate"] == pytest.approx(3 / 96) and rates["delivery_rate"] == pytest.approx(0.96)


def test_lift_and_its_interval_match_a_reference_computation(cli, history):
    lf = json.loads(cli("report", history, "--json").stdout)["lift"]
    pt, ph, nt, nh = 15 / 100, 2 / 40, 100, 40
    z = NormalDist().inv_cdf(0.975)
    half = z * math.sqrt(pt * (1 - pt) / nt + ph * (1 - ph) / nh)
    assert lf["treated"]["rate"] == pytest.approx(0.15) and lf["holdout"]["rate"] == pytest.approx(0.05)
    assert lf["absolute"] == pytest.approx(0.10)
    assert lf["ci95"] == pytest.approx([0.10 - half, 0.10 + half], abs=1e-6)
    assert lf["relative"] == pytest.approx(2.0)
    assert lf["incremental_revenue"] == pytest.approx((300 / 100 - 40 / 40) * 100)
    assert lf["verdict"] == "positive lift"


def test_small_groups_are_too_small_to_tell():
    assert lift(Group(20, 5, 10.0), Group(10, 1, 1.0))["verdict"] == "too small to tell"
    assert lift(Group(1000, 50, 10.0), Group(1000, 48, 1.0))["verdict"] == "no significant difference"
    assert lift(Group(100, 5, 1.0), Group(0, 0, 0.0))["verdict"] == "no holdout"


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
                     "converted": 15, "revenue": 300.0, "lift": pytest.approx(0.10), "verdict": "positive lift"}]
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
