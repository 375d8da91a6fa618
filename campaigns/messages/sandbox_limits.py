"""The caps a template render lives under, and the checks that apply them before work runs.

A watchdog can interrupt Python bytecode but not one long C call (`"x" * 10**9`,
`str(huge_list)`, `2 ** 10**9`), so every operation that can grow a value is checked
*before* it runs, from the sizes of its operands:

- one value (deep: a list counts its items) may weigh at most `MAX_VALUE_BYTES`,
  measured with `sys.getsizeof`, so shared references count once per use, as they would
  when the value is printed;
- one render may create at most `MAX_RENDER_BYTES` of such values in total (the
  allocation budget: it bounds memory held across many `{% set %}`s);
- integers may have at most `MAX_INT_BITS` bits; format widths and precisions stay below
  `MAX_FORMAT_WIDTH`.
"""

from __future__ import annotations

import re
import string
import sys
import threading
from collections.abc import Iterable
from itertools import compress
from typing import Any

from jinja2.utils import Namespace
from markupsafe import Markup

MAX_OUTPUT_CHARS = 1_000_000  # one rendered part; a real email is a few dozen KB
MAX_VALUE_BYTES = 8_000_000  # one value, deep
MAX_RENDER_BYTES = 32_000_000  # all values one render creates
MAX_INT_BITS = 16_384  # about 4,900 digits; Python refuses to print more than 4,300
MAX_FORMAT_WIDTH = 10_000
MAX_ITEMS = 100_000  # items a filter may be asked to make (batch fill, wordwrap lines)

_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_CONTAINERS = (list, tuple, set, frozenset)
_FLAT = frozenset({str, Markup, int, float, bool, type(None)})  # the common case: no walk
_NESTED = frozenset({list, tuple, set, frozenset, dict, Namespace})  # walked into; subclasses count shallow


class CapExceeded(Exception):
    """A render went past a time or size cap; the message names the cap."""


def _mb(n: int) -> str:
    return f"{n / 1_000_000:g} MB"


def weight(value: Any, limit: int = MAX_VALUE_BYTES) -> int:
    """Deep size in bytes of a value, counting shared items once per reference.

    Stops early once past `limit` (the caller only needs to know it is too big). The items
    of each container are measured and filtered in C (`map`, `compress`), so a flat list of
    100,000 numbers costs a few milliseconds, not a Python loop over its items.
    """
    total, stack = sys.getsizeof(value), [value]
    while stack and total <= limit:
        v = stack.pop()
        if isinstance(v, dict):
            items: Any = [*v.keys(), *v.values()]
        elif isinstance(v, _CONTAINERS):
            items = v
        elif isinstance(v, Namespace):
            items = [v._Namespace__attrs]  # printed by its repr
        else:
            continue
        total += sum(map(sys.getsizeof, items))
        stack.extend(compress(items, map(_NESTED.__contains__, map(type, items))))
    return total


class _Budget(threading.local):
    left: int | None = None


_BUDGET = _Budget()


def start_budget() -> int | None:
    """Open this thread's allocation budget; returns the previous one for `end_budget`."""
    previous, _BUDGET.left = _BUDGET.left, MAX_RENDER_BYTES
    return previous


def end_budget(previous: int | None) -> None:
    """Close the budget opened by `start_budget`."""
    _BUDGET.left = previous


def check(value: Any, spend: bool = True) -> Any:
    """The value, or CapExceeded when it weighs more than one value may; `spend` counts it
    against the render's allocation budget (values just read, not made, are not counted)."""
    w = sys.getsizeof(value) if type(value) in _FLAT else weight(value)
    if w > MAX_VALUE_BYTES:
        raise CapExceeded(f"a value grew past the {_mb(MAX_VALUE_BYTES)} value cap; refused")
    if spend and _BUDGET.left is not None:
        _BUDGET.left -= w
        if _BUDGET.left < 0:
            raise CapExceeded(f"the render made more than the {_mb(MAX_RENDER_BYTES)} allocation cap; refused")
    return value


def check_all(values: Iterable[Any]) -> None:
    """Each of the values is within the value cap (operands about to be combined)."""
    for v in values:
        check(v, spend=False)


def check_output(size: int) -> None:
    """CapExceeded when one rendered part of `size` characters is past MAX_OUTPUT_CHARS."""
    if size > MAX_OUTPUT_CHARS:
        raise CapExceeded(f"output passed {MAX_OUTPUT_CHARS:,} characters; cut off")


def check_int(n: Any, what: str = "an integer") -> None:
    """CapExceeded when `n` is an int wider than MAX_INT_BITS."""
    if isinstance(n, int) and n.bit_length() > MAX_INT_BITS:
        raise CapExceeded(f"{what} would pass the {MAX_INT_BITS:,}-bit integer cap; refused")


def check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse `left <operator> right` before it runs when its result would pass a cap."""
    if operator == "*":
        if isinstance(left, int) and isinstance(right, int):
            if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise CapExceeded(f"a product would pass the {MAX_INT_BITS:,}-bit integer cap; refused")
            return
        for seq, n in ((left, right), (right, left)):
            if isinstance(n, int) and isinstance(seq, (str, bytes, list, tuple)):
                item = weight(seq) - sys.getsizeof(seq[:0])  # the header is not repeated
                if item * max(n, 0) > MAX_VALUE_BYTES:
                    raise CapExceeded(f"a repeated value would pass the {_mb(MAX_VALUE_BYTES)} value cap; refused")
        return
    if operator == "**":
        if (isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0
                and left.bit_length() * min(right, MAX_INT_BITS + 1) > MAX_INT_BITS):
            raise CapExceeded(f"a power would pass the {MAX_INT_BITS:,}-bit integer cap; refused")
        return
    if operator == "%" and isinstance(left, str):
        check_percent_spec(left)
    check_all((left, right))
    if operator == "+" and weight(left) + weight(right) > MAX_VALUE_BYTES:
        raise CapExceeded(f"a sum would pass the {_mb(MAX_VALUE_BYTES)} value cap; refused")


def check_percent_spec(fmt: Any) -> None:
    """`%`-formats: refuse `*` and widths or precisions of MAX_FORMAT_WIDTH or more
    (`%(a)300000000d` allocates 300 MB in one C call)."""
    if not isinstance(fmt, str) or "%" not in fmt:
        return
    for m in _PERCENT_SPEC.finditer(fmt):
        for n in m.groups():
            if n is not None and (n == "*" or int(n) >= MAX_FORMAT_WIDTH):
                raise CapExceeded(f"format width '{m.group(0)[:40]}' is past the {MAX_FORMAT_WIDTH:,} "
                                  "format width cap; refused")


def check_brace_spec(fmt: Any) -> None:
    """`str.format`: refuse nested fields in a spec and widths of MAX_FORMAT_WIDTH or more."""
    if not isinstance(fmt, str) or "{" not in fmt:
        return
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # str.format will refuse it itself
    for _, _, spec, _ in fields:
        if spec and ("{" in spec or any(int(n) >= MAX_FORMAT_WIDTH for n in re.findall(r"\d+", spec))):
            raise CapExceeded(f"format spec '{spec[:40]}' is past the {MAX_FORMAT_WIDTH:,} format width "
                              "cap; refused")


def materialise(parts: Iterable[Any], sep: str = "") -> list[Any]:
    """The parts of a join as a list, refused as soon as the joined text would be too big;
    generators are drawn one item at a time, so a lazy `map` is measured as it is made."""
    items, total, extra = [], 0, len(sep) * 4
    for p in parts:
        total += weight(p) + extra
        if total > MAX_VALUE_BYTES:
            raise CapExceeded(f"a joined value would pass the {_mb(MAX_VALUE_BYTES)} value cap; refused")
        items.append(p)
    return items


MAX_HTML_DEPTH = 1_000  # css_inline (html5ever) crashes the process near 20,000 nested elements
_HTML_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9]*)[^>]*?(/?)>")
# Elements that never nest, or whose end tag is usually left out (a parser closes them).
_FLAT_ELEMENTS = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
                            "source", "track", "wbr", "p", "li", "td", "th", "tr", "option", "dt", "dd"})


def check_html_nesting(doc: str) -> None:
    """CapExceeded when the HTML nests deeper than MAX_HTML_DEPTH (counted from tags; end
    tags a parser would add are not needed for the estimate to stay low on real mail)."""
    if doc.count("<") <= MAX_HTML_DEPTH:
        return
    depth = 0
    for m in _HTML_TAG.finditer(doc):
        if m.group(3) or m.group(2).lower() in _FLAT_ELEMENTS:
            continue
        depth += -1 if m.group(1) else 1
        if depth > MAX_HTML_DEPTH:
            raise CapExceeded(f"the HTML nests deeper than the {MAX_HTML_DEPTH:,}-level nesting cap; refused")
