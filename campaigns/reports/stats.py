"""Lift against the holdout: pure statistics on plain numbers.

Absolute lift is p_treated - p_holdout with a 95% Wald interval (unpooled standard
error, z = 1.959964). The groups are "too small to tell" when either has fewer than
MIN_GROUP contacts or the two together have fewer than MIN_CONVERSIONS converters; an
interval that contains 0 means "no significant difference".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

Z95 = 1.959964
MIN_GROUP = 30
MIN_CONVERSIONS = 10


@dataclass(frozen=True)
class Group:
    """One side of the comparison."""

    contacts: int
    converters: int
    revenue: float

    @property
    def rate(self) -> float | None:
        return self.converters / self.contacts if self.contacts else None

    @property
    def revenue_per_contact(self) -> float | None:
        return self.revenue / self.contacts if self.contacts else None


def lift(treated: Group, holdout: Group) -> dict[str, Any]:
    """Rates, absolute and relative lift with a 95% interval, incremental revenue, and a verdict."""
    out: dict[str, Any] = {
        "treated": {**asdict(treated), "rate": treated.rate, "revenue_per_contact": treated.revenue_per_contact},
        "holdout": {**asdict(holdout), "rate": holdout.rate, "revenue_per_contact": holdout.revenue_per_contact},
        "absolute": None, "ci95": None, "relative": None, "incremental_revenue": None,
        "method": "Wald 95% interval, unpooled standard error",
    }
    if not treated.contacts or not holdout.contacts:
        out["verdict"] = "no holdout" if not holdout.contacts else "nothing sent"
        return out
    pt, ph = treated.rate or 0.0, holdout.rate or 0.0
    diff = pt - ph
    se = math.sqrt(pt * (1 - pt) / treated.contacts + ph * (1 - ph) / holdout.contacts)
    out["absolute"] = diff
    out["ci95"] = [diff - Z95 * se, diff + Z95 * se]
    out["relative"] = diff / ph if ph > 0 else None
    out["incremental_revenue"] = ((treated.revenue_per_contact or 0) - (holdout.revenue_per_contact or 0)) * treated.contacts
    if min(treated.contacts, holdout.contacts) < MIN_GROUP or treated.converters + holdout.converters < MIN_CONVERSIONS:
        out["verdict"] = "too small to tell"
    elif out["ci95"][0] > 0:
        out["verdict"] = "positive lift"
    elif out["ci95"][1] < 0:
        out["verdict"] = "negative lift"
    else:
        out["verdict"] = "no significant difference"
    return out


def ratio(part: float | None, whole: float | None) -> float | None:
    """part / whole, or None when whole is 0."""
    return (part or 0) / whole if whole else None
