"""A/B variants: each against the best with Fisher's exact test, Holm-corrected."""

import json
import math

import pytest

from campaigns.reports.abtest import holm, variant_test
from campaigns.reports.itt import Outcome


def test_holm_adjusts_step_down_and_keeps_order():
    # sorted 0.01, 0.02, 0.04 -> x3, x2, x1 = 0.03, 0.04, 0.04 (monotone), returned in the given order
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def _fisher_two_sided(a, n1, c, n2):
    total, k = n1 + n2, a + c
    def p(x):
        return math.comb(n1, x) * math.comb(n2, k - x) / math.comb(total, k)
    observed = p(a)
    return sum(p(x) for x in range(max(0, k - n2), min(k, n1) + 1) if p(x) <= observed * (1 + 1e-7))


def test_the_report_names_the_winner_only_when_every_other_variant_is_significantly_below(cli, history):
    ab = json.loads(cli("report", history, "--json").stdout)["ab_test"]
    rows = {r["variant"]: r for r in ab["variants"]}
    assert (rows["A"]["contacts"], rows["A"]["converters"], rows["B"]["contacts"], rows["B"]["converters"]) == (60, 15, 40, 0)
    assert ab["best"] == "A" and ab["winner"] == "A" and ab["decision"] == "A wins"
    assert rows["B"]["p_value"] == pytest.approx(_fisher_two_sided(15, 60, 0, 40), rel=1e-9)
    assert rows["B"]["p_holm"] == pytest.approx(rows["B"]["p_value"]) and rows["B"]["significantly_below_best"]


def test_three_close_variants_have_no_clear_winner_and_holm_multiplies():
    found = {}
    n = 0
    for variant, contacts, buyers in (("A", 400, 40), ("B", 400, 36), ("C", 400, 20)):
        for i in range(contacts):
            found[n] = Outcome(False, variant, 1000 if i < buyers else None)
            n += 1
    ab = variant_test(found)
    rows = {r["variant"]: r for r in ab["variants"]}
    assert ab["best"] == "A" and ab["winner"] is None and ab["decision"] == "no clear winner yet"
    assert rows["C"]["p_holm"] == pytest.approx(min(1.0, 2 * _fisher_two_sided(40, 400, 20, 400)))
    assert rows["C"]["significantly_below_best"] and not rows["B"]["significantly_below_best"]
    assert variant_test({1: Outcome(False, "A", None)}) is None
