"""RFM scores and the named RFM segments, as SQL over the buyers relation.

Scores are quintiles of equal size over the contacts who bought (as of a date), computed
inside the database with window functions: score = 1 + floor(5 * (row - 1) / buyers),
where row is ROW_NUMBER() over the buyers sorted ascending by the score's value and then
by a fixed tie-break (SORT_KEYS): equal values are split by the other two figures, then by
contact id. Every score therefore holds a fifth of the buyers (sizes differ by at most
one), even when most buyers share a value (on CDNOW most buyers have one order), and the
same data always give the same scores.

Named segments read R against FM = round-half-up((F + M) / 2), on the grid below
(docs/segments.md shows it as a table).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, case, func
from sqlalchemy.sql.expression import ColumnElement

# name, R range, FM range (inclusive). The 25 cells of the grid are covered exactly once.
SEGMENT_GRID: tuple[tuple[str, tuple[int, int], tuple[int, int]], ...] = (
    ("champions", (5, 5), (4, 5)),
    ("loyal", (3, 4), (4, 5)),
    ("potential_loyalists", (4, 5), (2, 3)),
    ("new", (5, 5), (1, 1)),
    ("promising", (4, 4), (1, 1)),
    ("need_attention", (3, 3), (3, 3)),
    ("about_to_sleep", (3, 3), (1, 2)),
    ("at_risk", (1, 2), (3, 4)),
    ("cant_lose_them", (1, 2), (5, 5)),
    ("hibernating", (2, 2), (1, 2)),
    ("hibernating", (1, 1), (2, 2)),
    ("lost", (1, 1), (1, 1)),
)
SEGMENT_NAMES: tuple[str, ...] = tuple(dict.fromkeys(name for name, _, _ in SEGMENT_GRID))


def fm_score(f: int, m: int) -> int:
    """The FM score the named segments read: (F + M) / 2, halves rounded up."""
    return (f + m + 1) // 2


def segment_name(r: int, f: int, m: int) -> str:
    """The named RFM segment of a score triple (pure; the SQL below is the same grid)."""
    fm = fm_score(f, m)
    for name, (r_lo, r_hi), (fm_lo, fm_hi) in SEGMENT_GRID:
        if r_lo <= r <= r_hi and fm_lo <= fm <= fm_hi:
            return name
    raise ValueError(f"scores out of range: {r}{f}{m}")


# The sort of each score: its value, then the tie-break (more orders, more spent, more
# recent rank higher), then contact id so that the order is total and stable.
SORT_KEYS: dict[str, tuple[str, ...]] = {
    "r": ("last_at", "orders", "total", "contact_id"),
    "f": ("orders", "total", "last_at", "contact_id"),
    "m": ("total", "orders", "last_at", "contact_id"),
}


def score_row(columns: Any, score: str) -> ColumnElement[int]:
    """SQL: the 1-based position of a buyer in the score's sort."""
    return func.row_number().over(order_by=[columns[k] for k in SORT_KEYS[score]])


def quintile(columns: Any, score: str) -> ColumnElement[int]:
    """SQL: the 1-5 score (`score` is r, f or m) of each buyer row: equal-size quintiles."""
    return (5 * (score_row(columns, score) - 1)) // func.count().over() + 1


def first_rows(buyers: int) -> dict[int, int]:
    """For scores 2-5, the position of the first buyer holding it (those beyond `buyers` are absent)."""
    out = {}
    for s in range(2, 6):
        row = 1 - (-(s - 1) * buyers // 5)  # smallest row with 5 * (row - 1) >= (s - 1) * buyers
        if row <= buyers:
            out[s] = row
    return out


def segment_case(r: ColumnElement[int], f: ColumnElement[int], m: ColumnElement[int]) -> ColumnElement[str]:
    """SQL: the named segment of score columns, from SEGMENT_GRID."""
    fm = (f + m + 1) // 2
    whens = [
        (and_(r.between(r_lo, r_hi), fm.between(fm_lo, fm_hi)), name)
        for name, (r_lo, r_hi), (fm_lo, fm_hi) in SEGMENT_GRID
    ]
    return case(*whens, else_=None)
