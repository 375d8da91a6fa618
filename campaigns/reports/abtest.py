"""A/B variants compared on intention-to-treat conversion: each against the best, Holm-corrected.

The best variant is the one with the highest conversion rate. Each other variant is
compared with it by Fisher's exact test (two-sided; exact for small counts, where a z-test
misleads); the k - 1 p-values are adjusted by Holm's step-down method, which keeps the
chance of any false "worse than the best" at 5% whatever the number of variants. The
best is "the winner" only when every other variant is significantly below it.
"""

from __future__ import annotations

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
