"""The Jinja2 sandbox marketers' templates render in, with caps on time and output size.

`ImmutableSandboxedEnvironment` with `StrictUndefined` refuses attribute walks and
mutation; on top of it, operators, methods and filters that can grow a value are size
checked, and a watchdog thread interrupts a render that runs past its time cap (Jinja
loops offer no hook where a clock could be checked).
"""

from __future__ import annotations

import ctypes
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from jinja2 import StrictUndefined
from jinja2 import Template as JinjaTemplate
from jinja2.exceptions import SecurityError
from jinja2.nodes import EvalContext
from jinja2.sandbox import ImmutableSandboxedEnvironment

# -- the sandbox and its caps ---------------------------------------------------------
MAX_OUTPUT_CHARS = 1_000_000  # one rendered part; a real email is a few dozen KB
MAX_RENDER_SECONDS = 2.0
# str methods that can grow a string by an argument's size; the filters of the same name
# are wrapped below with size checks instead.
_GROWING_METHODS = frozenset({"ljust", "rjust", "center", "zfill", "expandtabs", "replace", "join",
                              "format_map"})
_WIDE_SPEC = re.compile(r"%[-#0 +]*(?:\*|\d{5,})|%[-#0 +]*\d*\.(?:\*|\d{5,})|\{[^{}]*:[^{}]*\d{5,}[^{}]*\}")


class CapExceeded(Exception):
    """A render went past the time or size cap."""


class _Timeout(BaseException):
    """Raised asynchronously into a render that outlived its deadline (see `_Watchdog`)."""


def _weight(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, (list, tuple)):
        return len(value) + sum(len(v) for v in value if isinstance(v, str))
    return 0


def _check(value: Any) -> Any:
    if _weight(value) > MAX_OUTPUT_CHARS:
        raise CapExceeded(f"a value grew past {MAX_OUTPUT_CHARS:,} characters; refused")
    return value


def _check_spec(fmt: Any) -> None:
    if isinstance(fmt, str) and _WIDE_SPEC.search(fmt):
        raise SecurityError("format widths of 10000 or more are refused")


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, plus size checks on operators, calls and growing filters."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(n, int) and _weight(seq) * max(n, 0) > MAX_OUTPUT_CHARS:
                    raise CapExceeded(f"a repeated value would pass {MAX_OUTPUT_CHARS:,} characters; refused")
        elif operator == "**":
            if isinstance(right, (int, float)) and abs(right) > 64 and isinstance(left, (int, float)) and abs(left) > 1:
                raise CapExceeded("a power that large is refused")
        elif operator == "%":
            _check_spec(left)
        return _check(self.binop_table[operator](left, right))

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, str) and attr in _GROWING_METHODS:
            return False
        return super().is_safe_attribute(obj, attr, value)

    def getattr(self, obj: Any, attribute: str) -> Any:
        if attribute == "format" and isinstance(obj, str):
            _check_spec(obj)  # "{:99999999}".format(1) would allocate before any size check
        return _check(super().getattr(obj, attribute))

    def getitem(self, obj: Any, argument: Any) -> Any:
        if argument == "format" and isinstance(obj, str):
            _check_spec(obj)
        return _check(super().getitem(obj, argument))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: PYI063 - Jinja's signature
        for a in (*args, *kwargs.values()):
            _check(a)
        return _check(ImmutableSandboxedEnvironment.call(__self, __context, __obj, *args, **kwargs))


def _guard_filter(env: _Sandbox, name: str, size: Any) -> None:
    inner = env.filters[name]

    def guarded(*args: Any, **kwargs: Any) -> Any:
        if size(*args, **kwargs) > MAX_OUTPUT_CHARS:
            raise CapExceeded(f"|{name} would pass {MAX_OUTPUT_CHARS:,} characters; refused")
        return inner(*args, **kwargs)

    for attr in ("jinja_pass_arg",):  # keep pass_eval_context / pass_environment markers
        if hasattr(inner, attr):
            setattr(guarded, attr, getattr(inner, attr))
    env.filters[name] = guarded


def _num(v: Any) -> int:
    return v if isinstance(v, int) else len(v) if isinstance(v, str) else 0


def _make_env(autoescape: bool) -> _Sandbox:
    env = _Sandbox(undefined=StrictUndefined, autoescape=autoescape, auto_reload=False, cache_size=0)
    s = lambda v: len(str(v))
    _guard_filter(env, "center", lambda v, width=80: max(s(v), _num(width)))
    _guard_filter(env, "indent", lambda v, width=4, *a, **k: s(v) + (str(v).count("\n") + 1) * _num(width))
    _guard_filter(env, "format", lambda v, *a, **k: _check_spec(v) or s(v))
    _guard_filter(env, "replace", lambda *a, **k: _replace_size(*a))
    _guard_filter(env, "join", lambda *a, **k: _join_size(*a))
    return env


def _replace_size(*args: Any) -> int:
    args = args[1:] if args and isinstance(args[0], EvalContext) else args  # pass_eval_context
    if len(args) < 3:
        return 0
    value, old, new = (str(a) for a in args[:3])
    return len(value) + (value.count(old) if old else len(value) + 1) * max(len(new) - len(old), 0)


def _join_size(*args: Any) -> int:
    args = args[1:] if args and isinstance(args[0], EvalContext) else args  # pass_eval_context
    if not args or not isinstance(args[0], (list, tuple)):
        return 0  # generators and the like: the result is checked where it is used
    sep = str(args[1]) if len(args) > 1 else ""
    return sum(len(str(p)) for p in args[0]) + len(sep) * len(args[0])


HTML_ENV = _make_env(autoescape=True)
TEXT_ENV = _make_env(autoescape=False)


class _Watchdog:
    """One thread that interrupts renders past their deadline (pure-Python loops included).

    Jinja compiles loops to plain Python `for` statements with no hook to check a clock,
    so the watchdog raises `_Timeout` into the rendering thread (CPython's
    PyThreadState_SetAsyncExc). Helpers that wait on the database pause the clock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._active: dict[int, list[Any]] = {}  # thread id -> [deadline, fired, paused_since]
        self._thread: threading.Thread | None = None

    def enter(self, seconds: float) -> None:
        """Start the clock for this thread's render."""
        with self._lock:
            self._active[threading.get_ident()] = [time.monotonic() + seconds, False, None]
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="render-watchdog", daemon=True)
                self._thread.start()
        self._wake.set()

    def leave(self) -> None:
        """Stop the clock; withdraw a timeout that fired but was not delivered yet."""
        tid = threading.get_ident()
        with self._lock:
            entry = self._active.pop(tid, None)
            if entry is not None and entry[1]:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(tid), None)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Database waits inside a render (coupon codes) do not count against its time cap."""
        entry = self._active.get(threading.get_ident())
        if entry is None:
            yield
            return
        entry[2] = time.monotonic()
        try:
            yield
        finally:
            entry[0] += time.monotonic() - entry[2]
            entry[2] = None

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(0.05)
            now = time.monotonic()
            with self._lock:
                if not self._active:
                    self._wake.clear()
                for tid, entry in self._active.items():
                    if not entry[1] and entry[2] is None and now > entry[0]:
                        entry[1] = True
                        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(tid), ctypes.py_object(_Timeout))


_WATCHDOG = _Watchdog()


def render_capped(template: JinjaTemplate, context: dict[str, Any], seconds: float | None = None) -> str:
    """Render with the time and output caps; CapExceeded when either is passed."""
    limit = MAX_RENDER_SECONDS if seconds is None else seconds
    try:
        _WATCHDOG.enter(limit)
        try:
            out, size = [], 0
            for chunk in template.generate(context):
                size += len(chunk)
                if size > MAX_OUTPUT_CHARS:
                    raise CapExceeded(f"output passed {MAX_OUTPUT_CHARS:,} characters; cut off")
                out.append(chunk)
            return "".join(out)
        finally:
            _WATCHDOG.leave()
    except _Timeout:
        raise CapExceeded(f"rendering took longer than {limit:g} s; cut off") from None


