"""The Jinja2 sandbox marketers' templates render in, with caps on time and size.

`ImmutableSandboxedEnvironment` with `StrictUndefined` refuses attribute walks and
mutation. On top of it every operation that can grow a value is measured before it runs
(`campaigns.messages.sandbox_limits`): operators, calls, every filter, `~`, list and dict
literals, and the buffers of `{% set %}` blocks and macros. Nothing runs at compile time:
Jinja's constant folding is off (`optimized=False`) and the output finalizer needs the
render context, so `{{ "%(a)300000000d"|format(a=1) }}` is only evaluated, and refused,
when rendered. A watchdog thread interrupts a render that runs past its time cap (Jinja
loops offer no hook where a clock could be checked); the size checks exist because it
cannot interrupt one long C call.
"""

from __future__ import annotations

import ctypes
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from jinja2 import StrictUndefined, Undefined, nodes, pass_context
from jinja2 import Template as JinjaTemplate
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.nodes import Concat, Const, Dict, List, Tuple
from jinja2.runtime import Context, markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment

from campaigns.messages.sandbox_filters import guard_filter
from campaigns.messages.sandbox_limits import (
    MAX_FORMAT_WIDTH,
    MAX_INT_BITS,
    MAX_OUTPUT_CHARS,
    MAX_RENDER_BYTES,
    MAX_VALUE_BYTES,
    CapExceeded,
    check,
    check_all,
    check_binop,
    check_brace_spec,
    check_html_nesting,
    check_output,
    check_percent_spec,
    end_budget,
    materialise,
    start_budget,
)

__all__ = ["HTML_ENV", "MAX_FORMAT_WIDTH", "MAX_INT_BITS", "MAX_OUTPUT_CHARS", "MAX_RENDER_BYTES",
           "MAX_RENDER_SECONDS", "MAX_TEMPLATE_CODE", "MAX_TEMPLATE_NODES", "MAX_VALUE_BYTES", "TEXT_ENV",
           "CapExceeded", "check_html_nesting", "check_output", "compile_checked", "parse_checked", "render_capped", "template_line"]

# CPU seconds for all the parts of one message (subject, HTML, text): a send, compile and
# MIME included, then stays under 2 s however many parts loop
MAX_RENDER_SECONDS = 1.5
MAX_TEMPLATE_CODE = 20_000  # characters inside tags; a rich newsletter has about 2,000
MAX_TEMPLATE_NODES = 10_000
_TAG = re.compile(r"{{.*?}}|{%.*?%}", re.DOTALL)
# Methods that can grow a value far past their operands in one C call; the filters of the
# same name are size checked instead.
_GROWING_METHODS = frozenset({"ljust", "rjust", "center", "zfill", "expandtabs", "replace", "join",
                              "format_map", "translate", "maketrans", "to_bytes"})
_SPLITTING_METHODS = frozenset({"split", "rsplit", "splitlines"})  # one list item per few characters


class _Timeout(BaseException):
    """Raised asynchronously into a render that outlived its deadline (see `_Watchdog`)."""


class _CheckedCodeGenerator(CodeGenerator):
    """Jinja's code generator, with `~` and list/tuple/dict literals measured at run time
    (they compile to plain Python the sandbox cannot intercept otherwise)."""

    def visit_Concat(self, node: Concat, frame: Frame) -> None:
        self.write("environment.checked_concat(context, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    def _made(self, visit: Any, node: Any, frame: Frame) -> None:
        # An assignment target is not a value; a literal of constants is as big as its
        # source text (bounded by the template file's size), so it needs no measuring.
        if getattr(node, "ctx", "load") != "load" or _constant(node):
            visit(node, frame)
            return
        self.write("environment.made(")
        visit(node, frame)
        self.write(")")

    def visit_List(self, node: List, frame: Frame) -> None:
        self._made(super().visit_List, node, frame)

    def visit_Tuple(self, node: Tuple, frame: Frame) -> None:
        self._made(super().visit_Tuple, node, frame)

    def visit_Dict(self, node: Dict, frame: Frame) -> None:
        self._made(super().visit_Dict, node, frame)


def _constant(node: Any) -> bool:
    """Whether a node is a constant or a literal built only of constants."""
    if isinstance(node, Const):
        return True
    if isinstance(node, (List, Tuple)):
        return all(_constant(item) for item in node.items)
    if isinstance(node, Dict):
        return all(_constant(pair.key) and _constant(pair.value) for pair in node.items)
    return False


@pass_context
def _finalize(context: Context, value: Any) -> Any:
    """Every `{{ value }}` is measured before it is turned into text. Taking the context
    also keeps Jinja from evaluating constant output at compile time. A function or class
    is refused: its text (`<class 'jinja2.utils.Cycler'>`) is internals, never a message."""
    if callable(value) and not isinstance(value, (str, Undefined)):  # printing an Undefined says what is missing
        raise SecurityError(f"{type(value).__name__} objects cannot be printed; call them or use their value")
    return check(value, spend=False)


def _concat_buffer(parts: Iterable[str]) -> str:
    """The join of a `{% set %}` block, macro or filter block's buffer, measured first."""
    return "".join(materialise(parts))


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, plus size checks on operators, calls, literals and filters."""

    code_generator_class = _CheckedCodeGenerator
    concat = staticmethod(_concat_buffer)  # a measured "".join
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        check_binop(operator, left, right)
        return check(self.binop_table[operator](left, right))

    def checked_concat(self, context: Context, parts: tuple[Any, ...]) -> Any:
        """`a ~ b`, refused before the strings are made when the result would be too big."""
        items = materialise(parts)
        return check(markup_join(items) if context.eval_ctx.autoescape else str_join(items))

    def made(self, value: Any) -> Any:
        """A list, tuple or dict literal: counted like any other value a render makes."""
        return check(value)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, (str, bytes, int)) and attr in _GROWING_METHODS:
            return False
        return super().is_safe_attribute(obj, attr, value)

    # Reading an attribute or item makes nothing new (a slice does): what is read is
    # measured where it is combined, printed or passed to a filter.
    def getattr(self, obj: Any, attribute: str) -> Any:
        if attribute == "format" and isinstance(obj, str):
            check_brace_spec(obj)  # "{:99999999}".format(1) would allocate before any size check
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if argument == "format" and isinstance(obj, str):
            check_brace_spec(obj)
        value = super().getitem(obj, argument)
        return check(value) if isinstance(argument, slice) else value

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # Jinja's signature
        check_all((*args, *kwargs.values()))
        name, owner = getattr(__obj, "__name__", ""), getattr(__obj, "__self__", None)
        if name == "strftime" and args:
            check_percent_spec(args[0])  # glibc honours widths: %099999999Y
        if name in _SPLITTING_METHODS and isinstance(owner, str) and len(owner) * 32 > MAX_VALUE_BYTES:
            raise CapExceeded(f"splitting a {len(owner):,}-character text would pass the "
                              f"{MAX_VALUE_BYTES / 1e6:g} MB value cap; refused")
        return check(ImmutableSandboxedEnvironment.call(__self, __context, __obj, *args, **kwargs))


def _make_env(autoescape: bool) -> _Sandbox:
    env = _Sandbox(undefined=StrictUndefined, autoescape=autoescape, auto_reload=False, cache_size=0,
                   optimized=False, finalize=_finalize)
    env.globals.pop("lipsum", None)  # no use in a message, and it loops in C-sized steps on request
    for name in list(env.filters):
        env.filters[name] = guard_filter(name, env.filters[name])
    return env


HTML_ENV = _make_env(autoescape=True)
TEXT_ENV = _make_env(autoescape=False)


def parse_checked(env: ImmutableSandboxedEnvironment, source: str) -> nodes.Template:
    """Parse a template within the compile caps: at most MAX_TEMPLATE_CODE characters inside
    `{{ }}` / `{% %}` (parsing costs about 10 us a character of code; the HTML around it is
    cheap) and MAX_TEMPLATE_NODES nodes (compiling costs about 35 us a node)."""
    code = sum(len(m) for m in _TAG.findall(source))
    if code > MAX_TEMPLATE_CODE:
        raise CapExceeded(f"{code:,} characters of template code, past the {MAX_TEMPLATE_CODE:,}-character "
                          "template code cap; refused")
    ast = env.parse(source)
    count = sum(1 for _ in ast.find_all(nodes.Node))
    if count > MAX_TEMPLATE_NODES:
        raise CapExceeded(f"{count:,} template nodes, past the {MAX_TEMPLATE_NODES:,}-node template cap; refused")
    return ast


def compile_checked(env: ImmutableSandboxedEnvironment, source: str) -> JinjaTemplate:
    """`env.from_string` within the compile caps (see `parse_checked`)."""
    return env.from_string(parse_checked(env, source))


def template_line(exc: BaseException) -> int | None:
    """The template line an exception was raised on, or None. Jinja rewrites the traceback
    of an exception so its template frames carry template lines (`<template>`); a timeout
    is not rewritten, so its compiled frames are mapped back with the template's debug info."""
    line, tb = getattr(exc, "line", None), exc.__traceback__
    while isinstance(tb, TracebackType):
        template = tb.tb_frame.f_globals.get("__jinja_template__")
        if template is not None:
            line = template.get_corresponding_lineno(tb.tb_lineno)
        elif tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _thread_clock(tid: int) -> Callable[[], float]:
    """A reader of thread `tid`'s CPU time (Linux and the BSDs), or the monotonic clock where
    the platform has no per-thread CPU clock."""
    try:
        clock = time.pthread_getcpuclockid(tid)
        time.clock_gettime(clock)
    except (AttributeError, OSError):
        return time.monotonic
    return lambda: time.clock_gettime(clock)


class _Watchdog:
    """One thread that interrupts renders past their time cap (pure-Python loops included).

    Jinja compiles loops to plain Python `for` statements with no hook to check a clock,
    so the watchdog raises `_Timeout` into the rendering thread (CPython's
    PyThreadState_SetAsyncExc). The cap is on the rendering thread's CPU time, not the wall
    clock: a runaway template burns CPU and is stopped, while a sound one on a machine whose
    cores are busy elsewhere (CI, a loaded server) is not cut off for waiting its turn.
    Helpers that wait on the database pause the clock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        # thread id -> [deadline on its clock, fired, paused_since, its clock]
        self._active: dict[int, list[Any]] = {}
        self._thread: threading.Thread | None = None

    def enter(self, seconds: float) -> None:
        """Start the clock for this thread's render."""
        tid = threading.get_ident()
        clock = _thread_clock(tid)
        with self._lock:
            self._active[tid] = [clock() + seconds, False, None, clock]
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
        clock = entry[3]
        entry[2] = clock()
        try:
            yield
        finally:
            entry[0] += clock() - entry[2]
            entry[2] = None

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(0.05)
            with self._lock:
                if not self._active:
                    self._wake.clear()
                for tid, entry in self._active.items():
                    if entry[1] or entry[2] is not None:
                        continue
                    try:
                        over = entry[3]() > entry[0]
                    except OSError:  # the thread is gone; its entry leaves with it
                        continue
                    if over:
                        entry[1] = True
                        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(tid), ctypes.py_object(_Timeout))


_WATCHDOG = _Watchdog()


def time_left(began: float, cap: float = MAX_RENDER_SECONDS) -> float:
    """What is left of a message's CPU time cap whose render began at `began` (thread_time)."""
    return cap - (time.thread_time() - began)


def render_capped(template: JinjaTemplate, context: dict[str, Any], seconds: float | None = None,
                  began: float | None = None) -> str:
    """Render with the time and output caps; CapExceeded when either is passed.

    `seconds`: the CPU time cap (MAX_RENDER_SECONDS by default); `began`: this thread's
    `time.thread_time()` when the message began rendering, whose parts share the cap."""
    named = MAX_RENDER_SECONDS if seconds is None else seconds
    limit = time_left(began, named) if began is not None else named
    if limit <= 0:
        raise CapExceeded(f"rendering took longer than the {named:g} s time cap; cut off")
    budget = start_budget()
    try:
        _WATCHDOG.enter(limit)
        try:
            out, size = [], 0
            for chunk in template.generate(context):
                size += len(chunk)
                check_output(size)
                out.append(chunk)
            return "".join(out)
        finally:
            _WATCHDOG.leave()
    except _Timeout as timeout:
        cut = CapExceeded(f"rendering took longer than the {named:g} s time cap; cut off")
        cut.line = template_line(timeout)  # type: ignore[attr-defined]
        raise cut from None
    finally:
        end_budget(budget)


