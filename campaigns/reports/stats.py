"""Lift against the holdout: pure statistics on plain numbers (docs/reports.md, "Lift").

- Absolute lift p_t - p_h: Newcombe's hybrid score interval (method 10 of Newcombe 1998),
  built from the two Wilson score intervals. Unlike Wald it stays honest for rare
  conversions and small holdouts (zero converters included); the coverage test in
  tests/reports/test_lift_coverage.py holds it to 93-97.5% over the whole grid.
- Relative lift p_t / p_h - 1: the MOVER-R interval of Donner & Zou (2012) from the same
  Wilson intervals; its upper end is unbounded (None) while the holdout has no converter.
- Incremental revenue (mean revenue per treated contact - per held-out contact) x treated
  contacts: a seeded percentile bootstrap over contacts (every contact resampled, buyers
  and non-buyers alike).
- Verdict: "positive lift" / "negative lift" only when the absolute interval excludes 0;
  otherwise "too small to tell" when the groups had under 80% power to detect a lift of
  MIN_RELATIVE_LIFT over the holdout's rate, else "no significant difference".

The interval functions take numpy arrays as well as numbers, so the coverage test runs
the very code the report uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

Z95 = 1.959963984540054
Z80 = 0.8416212335729143  # one-sided 80% power
MIN_RELATIVE_LIFT = 0.20   # the smallest lift worth detecting, relative to the holdout's rate
BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 20050101
_CHUNK_DRAWS = 2_000_000   # bounds the bootstrap's memory


@dataclass(frozen=True)
class Group:
    """One side of the comparison; buyer_revenue holds each converting contact's revenue."""

    contacts: int
    converters: int
    revenue: float
    buyer_revenue: tuple[float, ...] = field(default=(), compare=False)

    @property
    def rate(self) -> float | None:
        """Converters per contact."""
        return self.converters / self.contacts if self.contacts else None

    @property
    def revenue_per_contact(self) -> float | None:
        """Revenue per contact."""
        return self.revenue / self.contacts if self.contacts else None


def wilson(x: Any, n: Any, z: float = Z95) -> tuple[Any, Any]:
    """Wilson score interval for x successes out of n (arrays welcome)."""
    x, n = np.asarray(x, dtype=float), np.asarray(n, dtype=float)
    p = x / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def newcombe(x1: Any, n1: Any, x2: Any, n2: Any, z: float = Z95) -> tuple[Any, Any]:
    """Newcombe's hybrid score interval for p1 - p2 (arrays welcome)."""
    p1, p2 = np.asarray(x1, dtype=float) / n1, np.asarray(x2, dtype=float) / n2
    l1, u1 = wilson(x1, n1, z)
    l2, u2 = wilson(x2, n2, z)
    d = p1 - p2
    return d - np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + np.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def mover_ratio(x1: Any, n1: Any, x2: Any, n2: Any, z: float = Z95) -> tuple[Any, Any]:
    """MOVER-R interval (Donner & Zou 2012) for p1 / p2; the upper end is inf when x2 = 0."""
    p1, p2 = np.asarray(x1, dtype=float) / n1, np.asarray(x2, dtype=float) / n2
    l1, u1 = wilson(x1, n1, z)
    l2, u2 = wilson(x2, n2, z)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = p1 * p2
        lo = (a - np.sqrt(np.maximum(a * a - l1 * u2 * (2 * p1 - l1) * (2 * p2 - u2), 0))) / (u2 * (2 * p2 - u2))
        hi = (a + np.sqrt(np.maximum(a * a - u1 * l2 * (2 * p1 - u1) * (2 * p2 - l2), 0))) / (l2 * (2 * p2 - l2))
    lo = np.where(np.isfinite(lo), np.maximum(lo, 0.0), 0.0)
    hi = np.where((np.asarray(x2) > 0) & np.isfinite(hi), hi, np.inf)
    return lo, hi


def minimum_detectable_lift(n1: int, n2: int, pooled_rate: float) -> float:
    """The absolute lift these group sizes detect with 80% power at the 5% level (two-sided)."""
    return float((Z95 + Z80) * np.sqrt(pooled_rate * (1 - pooled_rate) * (1 / n1 + 1 / n2)))


def bootstrap_incremental(treated: Group, holdout: Group, samples: int = BOOTSTRAP_SAMPLES,
                          seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """95% percentile interval of (mean_t - mean_h) x n_t, resampling contacts with replacement.

    Non-buyers contribute 0, so a resample is drawn as: how many buyers it picks
    (binomial), then which buyers (uniform with replacement). That is exactly the
    ordinary bootstrap over all contacts, at a cost set by the buyers.
    """
    rng = np.random.default_rng(seed)
    means = []
    for g in (treated, holdout):
        values = np.asarray(g.buyer_revenue, dtype=float)
        picks = rng.binomial(g.contacts, len(values) / g.contacts, size=samples) if len(values) else np.zeros(samples, int)
        totals = np.zeros(samples)
        start = 0
        while start < samples and len(values):
            stop, drawn = start, 0
            while stop < samples and (stop == start or drawn + picks[stop] <= _CHUNK_DRAWS):
                drawn += int(picks[stop])
                stop += 1
            which = np.repeat(np.arange(stop - start), picks[start:stop])
            drawn_values = values[rng.integers(0, len(values), size=drawn)]
            totals[start:stop] = np.bincount(which, weights=drawn_values, minlength=stop - start)
            start = stop
        means.append(totals / g.contacts)
    diff = (means[0] - means[1]) * treated.contacts
    lo, hi = np.percentile(diff, [2.5, 97.5])
    return float(lo), float(hi)


def lift(treated: Group, holdout: Group, min_relative_lift: float = MIN_RELATIVE_LIFT) -> dict[str, Any]:
    """Rates, absolute and relative lift with 95% intervals, incremental revenue with its interval, and a verdict."""
    out: dict[str, Any] = {
        "treated": _side(treated), "holdout": _side(holdout),
        "absolute": None, "ci95": None, "relative": None, "relative_ci95": None,
        "incremental_revenue": None, "incremental_revenue_ci95": None, "minimum_detectable_lift": None,
        "method": "intention-to-treat; Newcombe hybrid score 95% interval (absolute), MOVER-R (relative), "
                  f"percentile bootstrap over contacts, {BOOTSTRAP_SAMPLES} resamples (incremental revenue)",
    }
    if not treated.contacts or not holdout.contacts:
        out["verdict"] = "no holdout" if not holdout.contacts else "nothing sent"
        return out
    pt, ph = treated.rate or 0.0, holdout.rate or 0.0
    lo, hi = newcombe(treated.converters, treated.contacts, holdout.converters, holdout.contacts)
    out["absolute"], out["ci95"] = pt - ph, [float(lo), float(hi)]
    if ph > 0:
        out["relative"] = pt / ph - 1
    rlo, rhi = mover_ratio(treated.converters, treated.contacts, holdout.converters, holdout.contacts)
    out["relative_ci95"] = [float(rlo) - 1, None if not np.isfinite(rhi) else float(rhi) - 1]
    out["incremental_revenue"] = ((treated.revenue_per_contact or 0) - (holdout.revenue_per_contact or 0)) * treated.contacts
    out["incremental_revenue_ci95"] = list(bootstrap_incremental(treated, holdout))
    pooled = (treated.converters + holdout.converters) / (treated.contacts + holdout.contacts)
    mde = minimum_detectable_lift(treated.contacts, holdout.contacts, pooled)
    out["minimum_detectable_lift"] = mde
    if lo > 0:
        out["verdict"] = "positive lift"
    elif hi < 0:
        out["verdict"] = "negative lift"
    elif pooled == 0 or mde > min_relative_lift * (ph if ph > 0 else pooled):
        out["verdict"] = "too small to tell"
    else:
        out["verdict"] = "no significant difference"
    return out


def _side(g: Group) -> dict[str, Any]:
    return {"contacts": g.contacts, "converters": g.converters, "revenue": g.revenue, "rate": g.rate,
            "revenue_per_contact": g.revenue_per_contact}


def ratio(part: float | None, whole: float | None) -> float | None:
    """part / whole, or None when whole is 0."""
    return (part or 0) / whole if whole else None
