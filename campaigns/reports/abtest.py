"""A/B variants compared on intention-to-treat conversion: each against the best, Holm-corrected.

The best variant is the one with the highest conversion rate. Each other variant is
compared with it by Fisher's exact test (two-sided; exact for small counts, where a z-test
misleads); the k - 1 p-values are adjusted by Holm's step-down method, which keeps the
chance of any false "worse than the best" at 5% whatever the number of variants. The
best is "the winner" only when every other variant is significantly below it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from campaigns.reports.itt import Outcome, Summary, group, summarise

ALPHA = 0.05


def holm(p_values: list[float]) -> list[float]:
    """Holm-adjusted p-values, in the order given."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [0.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def variant_test(found: Summary | dict[int, Outcome]) -> dict[str, Any] | None:
    """The variants' conversion, each against the best with Holm-corrected p-values; None without two variants."""
    from scipy.stats import fisher_exact  # type: ignore[import-untyped]  # seconds to import: only when needed

    if not isinstance(found, Summary):
        found = summarise(found)
    names = sorted(v for v in found.variants(False) if v is not None)
    if len(names) < 2:
        return None
    groups = {n: group(found, False, n) for n in names}
    best = max(names, key=lambda n: (groups[n].rate or 0.0, groups[n].contacts, n))
    b = groups[best]
    others = [n for n in names if n != best]
    raw = [float(fisher_exact([[b.converters, b.contacts - b.converters],
                               [groups[n].converters, groups[n].contacts - groups[n].converters]])[1]) for n in others]
    adjusted = dict(zip(others, holm(raw), strict=True))
    rows = []
    for n in names:
        g = groups[n]
        row: dict[str, Any] = {"variant": n, "contacts": g.contacts, "converters": g.converters, "rate": g.rate,
                               "revenue": g.revenue, "best": n == best}
        if n != best:
            row.update({"difference_from_best": (g.rate or 0.0) - (b.rate or 0.0), "p_value": raw[others.index(n)],
                        "p_holm": adjusted[n], "significantly_below_best": adjusted[n] < ALPHA})
        rows.append(row)
    clear = all(adjusted[n] < ALPHA for n in others)
    return {"metric": "conversion (intention-to-treat)", "method": "Fisher's exact test against the best, Holm-adjusted, 5% level",
            "variants": rows, "best": best, "winner": best if clear else None,
            "decision": f"{best} wins" if clear else "no clear winner yet"}


@dataclass(frozen=True)
class Arm:
    """One variant's test share: contacts, those who clicked or converted, and the buyers' revenue."""

    contacts: int
    successes: int
    revenue: tuple[float, ...] = ()


def _score(arm: Arm, metric: str) -> float:
    if not arm.contacts:
        return 0.0
    return (sum(arm.revenue) if metric == "revenue" else arm.successes) / arm.contacts


def _p_value(best: Arm, other: Arm, metric: str) -> float:
    """Two-sided: Fisher's exact test on a share (clicks, conversions); Welch's t-test on revenue per contact."""
    from scipy.stats import fisher_exact, ttest_ind_from_stats

    if metric != "revenue":
        return float(fisher_exact([[best.successes, best.contacts - best.successes],
                                   [other.successes, other.contacts - other.successes]])[1])
    stats = []
    for arm in (best, other):
        n = arm.contacts
        mean = sum(arm.revenue) / n if n else 0.0
        # every contact counts: non-buyers with 0 (revenue per contact, not per buyer)
        ss = sum((v - mean) ** 2 for v in arm.revenue) + (n - len(arm.revenue)) * mean ** 2
        stats.append((mean, math.sqrt(ss / (n - 1)) if n > 1 else 0.0, n))
    (m1, s1, n1), (m2, s2, n2) = stats
    if n1 < 2 or n2 < 2 or (s1 == 0 and s2 == 0):
        return 1.0 if m1 == m2 or n1 < 2 or n2 < 2 else 0.0
    p = float(ttest_ind_from_stats(m1, s1, n1, m2, s2, n2, equal_var=False).pvalue)
    return 1.0 if math.isnan(p) else p


METHODS = {"clicks": "Fisher's exact test on the share of contacts who clicked",
           "conversions": "Fisher's exact test on the share of contacts who bought in the window (intention-to-treat)",
           "revenue": "Welch's t-test on revenue per contact (non-buyers count as 0)"}


def compare(arms: dict[str, Arm], metric: str) -> dict[str, Any]:
    """Each variant against the best by `metric`, Holm-adjusted; ties go to the variant listed first.

    `significant` is True when every other variant is significantly below the best (5%).
    """
    names = list(arms)
    scores = {n: _score(arms[n], metric) for n in names}
    best = max(names, key=lambda n: (scores[n], -names.index(n)))
    others = [n for n in names if n != best]
    raw = [_p_value(arms[best], arms[n], metric) for n in others]
    adjusted = dict(zip(others, holm(raw), strict=True))
    rows = []
    for n in names:
        a = arms[n]
        row: dict[str, Any] = {"variant": n, "contacts": a.contacts, "successes": a.successes,
                               "revenue": round(sum(a.revenue), 2), "score": scores[n], "best": n == best}
        if n != best:
            row.update({"p_value": raw[others.index(n)], "p_holm": adjusted[n], "significantly_below_best": adjusted[n] < ALPHA})
        rows.append(row)
    return {"metric": metric, "method": f"{METHODS[metric]}, each against the best, Holm-adjusted, 5% level",
            "variants": rows, "best": best, "significant": bool(others) and all(adjusted[n] < ALPHA for n in others),
            "tied": all(scores[n] == scores[best] for n in others)}
