"""Jinja's filters wrapped with size checks: every filter's operands are measured, the
filters that can grow their input far past its size (`center`, `indent`, `format`,
`replace`, `join`, `wordwrap`, `batch`, `sum`, `tojson`, `list`) predict their result
before they run, and every result is measured and counted against the render's budget."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment
from jinja2.nodes import EvalContext
from jinja2.runtime import Context

from campaigns.messages.sandbox_limits import (
    MAX_ITEMS,
    MAX_VALUE_BYTES,
    CapExceeded,
    check,
    check_all,
    check_percent_spec,
    materialise,
)


def _strip_pass_arg(args: tuple[Any, ...]) -> tuple[Any, ...]:
    return args[1:] if args and isinstance(args[0], (EvalContext, Context, Environment)) else args


def guard_filter(name: str, inner: Any) -> Any:
    """Wrap one filter: operands measured, a size prediction for filters that can grow
    their input (`_PREDICT`), the result measured and counted."""
    predict = _PREDICT.get(name)

    def guarded(*args: Any, **kwargs: Any) -> Any:
        check_all((*args, *kwargs.values()))
        if name == "join":  # a lazy map() is measured while it is drawn, then joined
            head = 1 if args and isinstance(args[0], EvalContext) else 0
            args = (*args[:head], materialise(args[head], _sep(args[head + 1:], kwargs)), *args[head + 1:])
        if predict is not None and predict(*_strip_pass_arg(args), **kwargs) > MAX_VALUE_BYTES:
            raise CapExceeded(f"|{name} would pass the {MAX_VALUE_BYTES / 1e6:g} MB value cap; refused")
        return check(inner(*args, **kwargs))

    if hasattr(inner, "jinja_pass_arg"):  # keep pass_eval_context / pass_environment markers
        guarded.jinja_pass_arg = inner.jinja_pass_arg  # type: ignore[attr-defined]
    return guarded


def _sep(rest: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    return str(rest[0]) if rest else str(kwargs.get("d", ""))


def _num(v: Any) -> int:
    return v if isinstance(v, int) else len(v) if isinstance(v, str) else 0


def _lines(v: Any) -> int:
    return str(v).count("\n") + 1


def _wordwrap(s: Any, width: Any = 79, break_long_words: Any = True, wrapstring: Any = None, *a: Any,
              **k: Any) -> int:
    text = str(s)
    lines = len(text) // max(_num(width), 1) + _lines(text)
    return len(text) + lines * len(str(k.get("wrapstring", wrapstring) or "\n"))


def _sum(iterable: Any, attribute: Any = None, start: Any = 0, **k: Any) -> int:
    if not isinstance(k.get("start", start), (int, float)):
        raise CapExceeded("|sum with a start that is not a number is refused (it joins lists one by one)")
    return 0


def _tojson(value: Any, indent: Any = None, **k: Any) -> int:
    indent = k.get("indent", indent)
    return 0 if indent is None or _num(indent) <= 16 else MAX_VALUE_BYTES + 1


def _to_list(value: Any, *a: Any, **k: Any) -> int:
    if isinstance(value, str):  # one item per character; characters past Latin-1 are objects of their own
        return len(value) * (8 if value.isascii() else 96)
    return 0


def _format(v: Any) -> int:
    check_percent_spec(v)
    return len(str(v))


def _replace(s: Any, old: Any = "", new: Any = "", count: Any = None) -> int:
    value, o, n = str(s), str(old), str(new)
    return len(value) + (value.count(o) if o else len(value) + 1) * max(len(n) - len(o), 0)


def _join(value: Any, d: Any = "", attribute: Any = None) -> int:
    return sum(len(str(p)) for p in value) + len(str(d)) * len(value)


_PREDICT: dict[str, Any] = {
    "center": lambda v, width=80: max(len(str(v)), _num(width)),
    "indent": lambda v, width=4, *a, **k: len(str(v)) + _lines(v) * _num(k.get("width", width)),
    "format": lambda v, *a, **k: _format(v),
    "replace": _replace,
    "join": _join,
    "wordwrap": _wordwrap,
    "batch": lambda v, linecount=1, *a, **k: 0 if _num(linecount) <= MAX_ITEMS else MAX_VALUE_BYTES + 1,
    "sum": _sum,
    "tojson": _tojson,
    "list": _to_list,
}
