"""Branching journeys: the TOML format, its lint, the stored definition and the drawing. Pure of I/O
except for the two checks handed in (does a template exist, does a filter parse).

    start = "welcome"            # optional: the first [step.*] otherwise

    [step.welcome]
    kind = "send"                # send | wait | branch | exit
    template = "welcome"
    next = "opened_it"           # optional on send and wait: without it the journey ends there

    [step.opened_it]
    kind = "branch"
    on = "opened"                # opened | clicked | purchased | event:NAME | filter
    of = "welcome"               # opened / clicked: that send step's message (default: any sent so far)
    within = "3d"
    yes = "thanks"
    no = "nudge"

Every mistake is one `FILE:LINE: step.ID.KEY: what is wrong` line; the lines come from a scan
of the file next to tomllib's parse (tomllib gives values, not positions). Execution is in
scheduler/journeys.py.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from campaigns.errors import InputError
from campaigns.timespec import format_duration, parse_duration

KINDS = ("send", "wait", "branch", "exit")
CONDITIONS = ("opened", "clicked", "purchased", "event", "filter")
KEYS: dict[str, tuple[str, ...]] = {
    "send": ("kind", "template", "next"),
    "wait": ("kind", "for", "next"),
    "branch": ("kind", "on", "of", "filter", "within", "yes", "no"),
    "exit": ("kind", "reason"),
}
REQUIRED: dict[str, tuple[str, ...]] = {"send": ("template",), "wait": ("for",), "branch": ("on", "within"), "exit": ()}
TOP_KEYS = ("start", "description", "step")
ARROWS = ("next", "yes", "no")  # the keys that name another step
_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,59}$")
_EVENT = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,99}$")
_HEADER = re.compile(r"""^\s*\[\s*step\s*\.\s*(?:"([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*\]""")
_OTHER_HEADER = re.compile(r"^\s*\[")
_KEY = re.compile(r"""^\s*(?:"([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*=""")

TemplateCheck = Callable[[str], str | None]  # template name -> None, or why it cannot be used
FilterCheck = Callable[[str], str | None]  # filter text -> None, or why it does not parse


@dataclass
class Mistakes:
    """Every mistake found, in file order, as 'FILE:LINE: WHERE: what' lines."""

    source: str
    lines: dict[tuple[str | None, str | None], int]
    found: list[tuple[int, str]] = field(default_factory=list)

    def add(self, step: str | None, key: str | None, message: str) -> None:
        line = self.lines.get((step, key)) or self.lines.get((step, None)) or 1
        where = ".".join(p for p in ("step" if step is not None else None, step, key) if p) or "journey"
        self.found.append((line, f"{self.source}:{line}: {where}: {message}"))

    def text(self) -> list[str]:
        return [msg for _line, msg in sorted(self.found, key=lambda x: x[0])]


def _positions(text: str) -> dict[tuple[str | None, str | None], int]:
    """(step id or None for the top level, key or None for the header) -> line number (1-based)."""
    out: dict[tuple[str | None, str | None], int] = {}
    table: str | None = None
    for n, line in enumerate(text.splitlines(), 1):
        head = _HEADER.match(line)
        if head:
            table = next(g for g in head.groups() if g is not None)
            out.setdefault((table, None), n)
            continue
        if _OTHER_HEADER.match(line):
            table = "\0other"
            continue
        key = _KEY.match(line)
        if key:
            out.setdefault((table, next(g for g in key.groups() if g is not None)), n)
    return out


def _seconds(value: Any, what: str) -> int:
    if not isinstance(value, str):
        raise InputError(f"'{value}' is not a duration like 3d")
    return int(parse_duration(value, what).total_seconds())


def _check_step(sid: str, raw: Any, ids: set[str], m: Mistakes, templates: TemplateCheck | None,
                filters: FilterCheck | None) -> dict[str, Any] | None:
    """One step checked; its stored form, or None when it is too broken to store."""
    if not _ID.match(sid):
        m.add(sid, None, "a step id is a letter, then letters, digits, '_' or '-' (up to 60)")
    if not isinstance(raw, dict):
        m.add(sid, None, "a step is a table: [step.ID] with kind = ...")
        return None
    kind = raw.get("kind")
    if kind is None:
        m.add(sid, None, f"no kind: give kind = one of {', '.join(KINDS)}")
        return None
    if kind not in KINDS:
        m.add(sid, "kind", f"'{kind}' is not a step kind (use {', '.join(KINDS)})")
        return None
    ok = True
    for key in raw:
        if key not in KEYS[kind]:
            m.add(sid, key, f"unknown key for a {kind} step (it takes {', '.join(KEYS[kind])})")
            ok = False
    for key in REQUIRED[kind]:
        if key not in raw:
            m.add(sid, None, f"a {kind} step needs {key}")
            ok = False
    if kind == "branch":
        for path in ("yes", "no"):
            if path not in raw:
                m.add(sid, None, f"a branch needs both paths: {path} = STEP is missing")
                ok = False
    step: dict[str, Any] = {"id": sid, "kind": kind}
    for key in ARROWS:
        if key in raw and key in KEYS[kind]:
            target = raw[key]
            if not isinstance(target, str) or target not in ids:
                m.add(sid, key, f"'{target}' is not a step of this journey")
                ok = False
            else:
                step[key] = target
    if kind == "send" and "template" in raw:
        name = raw["template"]
        why = "not a template name" if not isinstance(name, str) or not name.strip() else (
            templates(name) if templates else None)
        if why:
            m.add(sid, "template", why)
            ok = False
        step["template"] = name
    for key in ("for", "within"):
        if key in raw and key in KEYS[kind]:
            try:
                step[f"{key}_seconds"] = _seconds(raw[key], key)
            except InputError as exc:
                m.add(sid, key, str(exc))
                ok = False
    if kind == "exit" and "reason" in raw:
        step["reason"] = str(raw["reason"])[:200]
    if kind == "branch" and "on" in raw:
        ok = _check_condition(sid, raw, step, m, filters) and ok
    return step if ok else None


def _check_condition(sid: str, raw: dict[str, Any], step: dict[str, Any], m: Mistakes, filters: FilterCheck | None) -> bool:
    on = raw["on"]
    what, _, arg = str(on).partition(":")
    if what not in CONDITIONS or (what == "event") != bool(arg):
        m.add(sid, "on", f"'{on}' is not a condition (use opened, clicked, purchased, event:NAME or filter)")
        return False
    if what == "event" and not _EVENT.match(arg):
        m.add(sid, "on", f"'{on}': an event name is a letter, then letters, digits or '_'")
        return False
    step["on"] = str(on)
    ok = True
    if "of" in raw and what not in ("opened", "clicked"):
        m.add(sid, "of", f"only an opened or clicked branch names a message (this one is on {on})")
        ok = False
    elif "of" in raw:
        step["of"] = raw["of"]
    if what == "filter":
        text = raw.get("filter")
        if not isinstance(text, str) or not text.strip():
            m.add(sid, None if "filter" not in raw else "filter", "a filter branch needs filter = \"...\" (a segment filter)")
            ok = False
        else:
            why = filters(text) if filters else None
            if why:
                m.add(sid, "filter", f"does not parse: {why}")
                ok = False
            step["filter"] = text.strip()
    elif "filter" in raw:
        m.add(sid, "filter", f"only an on = \"filter\" branch takes one (this one is on {on})")
        ok = False
    return ok


def _graph_mistakes(steps: dict[str, dict[str, Any]], order: list[str], start: str, m: Mistakes) -> None:
    """A cycle (named where its closing arrow is) and every step the start cannot reach."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(sid: str) -> None:
        state[sid] = 1
        for key in ARROWS:
            target = steps.get(sid, {}).get(key)
            if target is None or target not in steps:
                continue
            if state.get(target) == 1:
                m.add(sid, key, f"'{target}' makes a cycle (a journey only moves forward)")
            elif target not in state:
                visit(target)
        state[sid] = 2

    visit(start)
    for sid in order:
        if sid not in state:
            m.add(sid, None, f"unreachable: no step leads here from the start ({start})")
            visit(sid)  # its own cycles are named too


def lint_journey(text: str, source: str = "journey", *, templates: TemplateCheck | None = None,
                 filters: FilterCheck | None = None) -> tuple[dict[str, Any] | None, list[str]]:
    """(the stored definition or None, every mistake as one line)."""
    m = Mistakes(source, _positions(text))
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = re.search(r"line (\d+)", str(exc))
        return None, [f"{source}:{line.group(1) if line else 1}: journey: not TOML: {exc}"]
    for key in doc:
        if key not in TOP_KEYS:
            m.add(None, key, f"unknown key (a journey file takes {', '.join(TOP_KEYS)})")
    raw_steps = doc.get("step")
    if not isinstance(raw_steps, dict) or not raw_steps:
        m.add(None, "step", "no steps: give at least one [step.ID] table")
        return None, m.text()
    order = list(raw_steps)
    ids = set(order)
    start = doc.get("start", order[0])
    if start not in ids:
        m.add(None, "start", f"'{start}' is not a step of this journey")
        start = order[0]
    checked = {sid: _check_step(sid, raw_steps[sid], ids, m, templates, filters) for sid in order}
    graph = {sid: (s or {k: v for k, v in (raw_steps[sid] or {}).items() if k in ARROWS and v in ids}
                   if isinstance(raw_steps[sid], dict) else {}) for sid, s in checked.items()}
    _graph_mistakes(graph, order, start, m)
    for sid, s in checked.items():
        if s and s.get("of") is not None and (raw_steps.get(s["of"]) or {}).get("kind") != "send":
            m.add(sid, "of", f"'{s['of']}' is not a send step of this journey")
    if not any(isinstance(r, dict) and r.get("kind") == "send" for r in raw_steps.values()):
        m.add(None, "step", "no send step: a journey must send something")
    mistakes = m.text()
    if mistakes:
        return None, mistakes
    return {"start": start, "steps": [checked[sid] for sid in order]}, []


def parse_journey(text: str, source: str = "journey", *, templates: TemplateCheck | None = None,
                  filters: FilterCheck | None = None) -> dict[str, Any]:
    """The stored definition, or InputError listing every mistake (one line each)."""
    journey, mistakes = lint_journey(text, source, templates=templates, filters=filters)
    if mistakes or journey is None:
        raise InputError("\n".join(mistakes))
    return journey


def index_of(journey: dict[str, Any]) -> dict[str, int]:
    """Step id -> its number (the outbox row's `step`, the report's order)."""
    return {s["id"]: i for i, s in enumerate(journey["steps"])}


def step_label(step: dict[str, Any]) -> str:
    """'send welcome', 'wait 3d', 'branch on opened (welcome) within 3d', 'exit'."""
    kind = step["kind"]
    if kind == "send":
        return f"send {step['template']}"
    if kind == "wait":
        return f"wait {format_duration_s(step['for_seconds'])}"
    if kind == "exit":
        return "exit" + (f" ({step['reason']})" if step.get("reason") else "")
    on = step["on"] if step["on"] != "filter" else f"filter {step['filter']!r}"
    of = f" ({step['of']})" if step.get("of") else ""
    return f"branch on {on}{of} within {format_duration_s(step['within_seconds'])}"


def format_duration_s(seconds: int) -> str:
    from datetime import timedelta

    return format_duration(timedelta(seconds=seconds)) if seconds else "0m"


def draw(journey: dict[str, Any]) -> list[str]:
    """The journey as a text tree from its start; a step reached again is named, not drawn twice."""
    steps = {s["id"]: s for s in journey["steps"]}
    drawn: set[str] = set()
    out: list[str] = []

    def walk(sid: str | None, indent: str, lead: str, cont: str) -> None:
        """One chain of steps: the first line after `lead`, the rest after `cont`."""
        first = True
        while sid:
            pre = indent + (lead if first else cont)
            if sid in drawn:
                out.append(f"{pre}-> {sid} (drawn above)")
                return
            drawn.add(sid)
            s = steps[sid]
            out.append(f"{pre}{sid}: {step_label(s)}")
            first = False
            if s["kind"] == "branch":
                walk(s["yes"], indent + cont, "├─ yes: ", "│  ")
                walk(s["no"], indent + cont, "└─ no:  ", "   ")
                return
            sid = s.get("next")

    walk(journey["start"], "", "", "")
    return out


def templates_in(journey: dict[str, Any] | None) -> list[str]:
    """Every template a journey sends."""
    return [s["template"] for s in (journey or {}).get("steps", []) if s["kind"] == "send"]
