"""Literals of the filter language -> the Python values fields compare with.

Money is typed in currency units and compared in cents; a date literal is an interval
at its own precision (a day for 2026-01-31, a minute for 09:30, an instant for `30d ago`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from campaigns.errors import InputError
from campaigns.segments.fields import FieldSpec
from campaigns.segments.lexer import error
from campaigns.segments.parser import DateLit, Lit, RelativeDate
from campaigns.timespec import parse_datetime


def convert(spec: FieldSpec, name: str, lit: Lit) -> Any:
    """A literal as the Python value the field compares with, or an error at its column."""
    v = lit.value
    if spec.kind in ("number", "money", "score"):
        if not isinstance(v, Decimal):
            raise error(lit.col, f"{name} compares with a number, not {show(v)}")
        if spec.kind == "money":
            v = v * 100  # marketers type currency units; we store cents
        if spec.kind == "score" and v not in range(1, 6):
            raise error(lit.col, f"{name} is a score from 1 to 5")
        return int(v) if v == v.to_integral_value() else float(v)
    if spec.kind == "rfm_score":
        text = str(v) if isinstance(v, (str, Decimal)) else ""
        if len(text) != 3 or any(ch not in "12345" for ch in text):
            raise error(lit.col, f"{name} is three digits from 1 to 5, as in \"545\"")
        return int(text)
    if spec.kind == "enum":
        if not isinstance(v, str):
            raise error(lit.col, f"{name} is one of {', '.join(spec.choices)}")
        wanted = v.upper() if spec.column == "abc" else v.lower()
        if wanted not in spec.choices:
            raise error(lit.col, f"{name} is one of {', '.join(spec.choices)}; '{v}' is not")
        return wanted
    if spec.kind in ("text", "tags", "topics"):
        if not isinstance(v, str):
            raise error(lit.col, f"{name} compares with \"quoted text\", not {show(v)}")
        return v
    if spec.kind == "bool":
        if not isinstance(v, bool):
            raise error(lit.col, f"{name} is true or false")
        return v
    raise AssertionError(spec.kind)


def interval(lit: Lit, name: str, tz: str, at: datetime) -> tuple[datetime, datetime]:
    """A date literal as [start, end): a day for 2026-01-31, a minute for 09:30, an instant for `30d ago`."""
    v = lit.value
    if isinstance(v, RelativeDate):
        start = at - v.delta
        return start, start
    if not isinstance(v, DateLit):
        raise error(lit.col, f"{name} compares with a date like 2026-01-31 or 30d ago, not {show(v)}")
    try:
        start = parse_datetime(v.text, tz, name)
    except InputError:
        raise error(lit.col, f"'{v.text}' is not a valid date") from None
    digits = len(v.text)
    size = timedelta(days=1) if digits == 10 else timedelta(minutes=1) if digits == 16 else timedelta(seconds=1)
    return start, start + size


def show(v: Any) -> str:
    """A literal as the marketer typed it, for messages."""
    if isinstance(v, str):
        return f'"{v}"' if len(v) <= 30 else f'"{v[:27]}..."'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, DateLit):
        return v.text
    if isinstance(v, RelativeDate):
        return "a relative date"
    return "null"

