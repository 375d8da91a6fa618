"""The project's import graph, read from the source with `ast` (nothing is imported).

    python -m scripts.import_graph            # today's rooms, arrows, floors and circles

A *module* is one .py file under campaigns/ or scheduler/. An *arrow* is "module A has an
import statement naming module B" (at any depth: imports inside functions count, since they
are dependencies all the same). The rooms view collapses modules into rooms (see `room`):
arrows are then distinct room-to-room pairs, *circles* the strongly connected groups of more
than one room, *floors* the length of the longest chain once each circle is one room.
tests/test_architecture.py enforces its rules on `module_imports()`.
"""

from __future__ import annotations

import argparse
import ast
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("campaigns", "scheduler")


def module_name(path: Path, root: Path = ROOT) -> str:
    """'campaigns/cli/__init__.py' -> 'campaigns.cli'; 'scheduler/outbox.py' -> 'scheduler.outbox'."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files(root: Path = ROOT) -> Iterator[Path]:
    """Every .py file of the project's packages (migrations included: they are code too)."""
    for package in PACKAGES:
        yield from sorted((root / package).rglob("*.py"))


@dataclass(frozen=True)
class Import:
    """One import statement: where it is, what it names, and whether a handler catches its failure."""

    module: str  # the importing module
    target: str  # the imported module, as written (dotted, absolute)
    line: int
    guarded: bool  # inside `try:` whose handlers catch ImportError (or a parent of it)


_IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(n, ast.Name) and n.id in _IMPORT_ERRORS for n in names)


def _imports(tree: ast.AST, module: str, is_package: bool) -> Iterator[Import]:
    guarded_lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(_catches_import_error(h) for h in node.handlers):
            for stmt in node.body:
                for inner in ast.walk(stmt):
                    if isinstance(inner, ast.Import | ast.ImportFrom):
                        guarded_lines.add(inner.lineno)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno, node.lineno in guarded_lines)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing module's package
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, base] if base else package)
            for alias in node.names:
                # `from a import b` names module a.b when that is a module, else a name in a.
                yield Import(module, f"{base}.{alias.name}", node.lineno, node.lineno in guarded_lines)


def all_imports(root: Path = ROOT) -> list[Import]:
    """Every import statement in the project's packages, with targets made absolute."""
    found: list[Import] = []
    for path in source_files(root):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        found.extend(_imports(tree, module_name(path, root), path.name == "__init__.py"))
    return found


def _resolve(target: str, modules: set[str]) -> str | None:
    """The longest project module that `target` names (or None for a third-party import)."""
    parts = target.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in modules:
            return candidate
    return None


def module_imports(root: Path = ROOT) -> dict[str, set[str]]:
    """{module: {project modules it imports}} for every module of the project."""
    modules = {module_name(p, root) for p in source_files(root)}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for imp in all_imports(root):
        target = _resolve(imp.target, modules)
        if target is not None and target != imp.module:
            graph[imp.module].add(target)
    return graph


# --- rooms -------------------------------------------------------------------------------

def room(module: str) -> str:
    """Today's rooms: each root module of campaigns/ and scheduler/ is a room, and so is each
    subpackage (campaigns.cli, campaigns.tracking, scheduler.channels, ...) as a whole."""
    parts = module.split(".")
    return ".".join(parts[:2])


# The layout of docs/architecture.md: flat campaigns/ root modules -> their room.
@dataclass(frozen=True)
class Figures:
    """What the rooms view measures."""

    rooms: int
    arrows: int
    floors: int
    circles: list[list[str]]
    back_arrows: list[tuple[str, str]]


def _sccs(nodes: set[str], edges: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on.discard(w)
                group.add(w)
                if w == v:
                    break
            out.append(group)

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def is_back_arrow(src: str, dst: str) -> bool:
    """The import rules of docs/architecture.md: campaigns (outside its CLI) never imports
    scheduler, and scheduler.channels imports nothing from campaigns."""
    if src.startswith("campaigns") and not src.startswith("campaigns.cli") and dst.startswith("scheduler"):
        return True
    return src.startswith("scheduler.channels") and dst.startswith("campaigns")


def figures(graph: dict[str, set[str]], to_room: Callable[[str], str]) -> Figures:
    """Rooms, arrows, floors, circles and back arrows of `graph` seen through `to_room`."""
    rooms = {to_room(m) for m in graph}
    edges: dict[str, set[str]] = {r: set() for r in rooms}
    back: set[tuple[str, str]] = set()
    for src, targets in graph.items():
        for dst in targets:
            a, b = to_room(src), to_room(dst)
            if is_back_arrow(src, dst):
                back.add((a, b))
            if a != b:
                edges[a].add(b)
    groups = _sccs(rooms, edges)
    where = {r: i for i, g in enumerate(groups) for r in g}
    dag: dict[int, set[int]] = {i: set() for i in range(len(groups))}
    for a, bs in edges.items():
        for b in bs:
            if where[a] != where[b]:
                dag[where[a]].add(where[b])
    depth: dict[int, int] = {}

    def floor(i: int) -> int:
        if i not in depth:
            depth[i] = 1 + max((floor(j) for j in dag[i]), default=0)
        return depth[i]

    return Figures(rooms=len(rooms), arrows=sum(len(b) for b in edges.values()),
                   floors=max((floor(i) for i in dag), default=0),
                   circles=sorted(sorted(g) for g in groups if len(g) > 1), back_arrows=sorted(back))


def main() -> None:
    """Print the figures for the layout of a checkout."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="a checkout to measure (default: this one)")
    args = parser.parse_args()
    graph = module_imports(args.root)
    f = figures(graph, room)
    print(f"{f.rooms} rooms on {f.floors} floors with {f.arrows} import arrows "
          f"({len(f.back_arrows)} running back, {len(f.circles)} circles)")
    for a, b in f.back_arrows:
        print(f"  back: {a} -> {b}")
    for group in f.circles:
        print(f"  circle: {' <-> '.join(group)}")
    modules = figures(graph, lambda m: m)
    print(f"modules: {modules.rooms}, import arrows between them: {modules.arrows}, circles: {len(modules.circles)}")
    for group in modules.circles:
        print(f"  circle: {' <-> '.join(group)}")


if __name__ == "__main__":
    main()
