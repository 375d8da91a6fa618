"""The lift intervals cover the truth 93-97.5% of the time over the whole grid (seeded, vectorised).

Grid: audiences of 2,000, 20,000 and 200,000; conversion 0.5%, 2% and 10%; holdouts of 5%,
10% and 20%; no effect and a 20% relative lift. 4,000 simulated campaigns per cell, so a
cell's coverage has a standard error of about 0.35 points.
"""

import numpy as np
import pytest

from campaigns.reports.stats import Group, lift, mover_ratio, newcombe

SIMS = 4000
GRID = [(n, rate, hold, rel) for n in (2_000, 20_000, 200_000) for rate in (0.005, 0.02, 0.10)
        for hold in (0.05, 0.10, 0.20) for rel in (0.0, 0.2)]


def _draws(rng, n, rate, hold, rel):
    nh = round(n * hold)
    nt = n - nh
    return nt, nh, rng.binomial(nt, rate * (1 + rel), SIMS), rng.binomial(nh, rate, SIMS)


def test_absolute_and_relative_intervals_cover_in_every_cell():
    rng = np.random.default_rng(19)
    bad = []
    for n, rate, hold, rel in GRID:
        nt, nh, xt, xh = _draws(rng, n, rate, hold, rel)
        lo, hi = newcombe(xt, nt, xh, nh)
        truth = rate * rel
        cover = np.mean((lo <= truth) & (truth <= hi))
        rlo, rhi = mover_ratio(xt, nt, xh, nh)
        rcover = np.mean((rlo <= 1 + rel) & (1 + rel <= rhi))
        for what, c in (("absolute", cover), ("relative", rcover)):
            if not 0.93 <= c <= 0.975:
                bad.append((what, n, rate, hold, rel, round(float(c), 4)))
    assert bad == []


@pytest.mark.parametrize("n,rate,hold", [(2_000, 0.01, 0.10), (2_000, 0.005, 0.05)])
def test_no_effect_rarely_reads_as_a_lift_on_small_rare_campaigns(n, rate, hold):
    """The old Wald report said "positive lift" 13.8% of the time at n=2,000, 10% holdout, 1%."""
    rng = np.random.default_rng(1998)
    nt, nh = n - round(n * hold), round(n * hold)
    verdicts = [lift(Group(nt, int(xt), 0.0), Group(nh, int(xh), 0.0))["verdict"]
                for xt, xh in zip(rng.binomial(nt, rate, 1000), rng.binomial(nh, rate, 1000), strict=True)]
    assert verdicts.count("positive lift") / len(verdicts) < 0.035
