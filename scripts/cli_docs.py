"""Write docs/cli.md, the command reference, from the Typer app itself.

    python -m scripts.cli_docs           # rewrite docs/cli.md
    python -m scripts.cli_docs --check   # exit 1 if docs/cli.md is not what the app says

tests/docs/test_cli_docs.py runs the check, so a new command or option cannot land without
its reference. The text is the commands' own help, so fix wording there, not here.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.text import Text
from typer.core import TyperArgument, TyperGroup, TyperOption

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "cli.md"

HEADER = """# Command reference

Every `campaigns` command with its arguments and options, generated from the commands' own help by
`python -m scripts.cli_docs` (do not edit by hand: `tests/docs/test_cli_docs.py` fails when this file
and the CLI disagree). The README walks through the common path; this page is the complete list.
Every command also takes `--help`.
"""


# Typer bundles its own click (typer._click); its classes are reached through typer.core and
# the objects themselves, so this works whichever click Typer carries.
Command = Any
Context = Any


def root_command() -> TyperGroup:
    """The root command group as `campaigns` builds it (commands load lazily on first use)."""
    from campaigns.cli.root import build

    return build()


def root_context(group: TyperGroup) -> Context:
    """A context for the root, as if `campaigns` had been run with no arguments."""
    return group.make_context("campaigns", [], resilient_parsing=True)


def walk(command: Command, ctx: Context) -> Iterator[tuple[Command, Context]]:
    """The command and every visible subcommand below it, depth first in the CLI's own order."""
    yield command, ctx
    if isinstance(command, TyperGroup):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from walk(sub, sub.make_context(name, [], parent=ctx, resilient_parsing=True))


def _plain(text: str | None) -> str:
    """Help text without rich markup or Typer's paragraph markers, tidily indented."""
    if not text:
        return ""
    return Text.from_markup(inspect.cleandoc(text).replace("\b\n", "")).plain.strip()


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _default(param: Any) -> str:
    if isinstance(param, TyperOption) and param.is_flag and param.secondary_opts:
        return f"`{param.opts[0] if param.default else param.secondary_opts[0]}`"  # which side of an on/off pair
    if isinstance(param, TyperOption) and (param.is_flag or not param.show_default):
        return ""
    value = param.default
    if value is None or value in ((), []) or callable(value):
        return ""
    return f"`{value}`"


def _name(argument: TyperArgument) -> str:
    return str(argument.metavar or argument.name or "").upper()


def _usage(argument: TyperArgument) -> str:
    text = _name(argument) + ("..." if argument.nargs == -1 else "")
    return text if argument.required else f"[{text}]"


def option_names(param: TyperOption) -> list[str]:
    """Every spelling of an option: --name, -n, --no-name."""
    return [*param.opts, *param.secondary_opts]


def command_path(ctx: Context) -> str:
    """'campaigns contacts import'."""
    return ctx.command_path


def render() -> str:
    """The whole reference as Markdown."""
    group = root_command()
    out = [HEADER]
    for command, ctx in walk(group, root_context(group)):
        depth = len(command_path(ctx).split())
        out.append(f"\n{'#' * min(depth + 1, 4)} `{command_path(ctx)}`\n")
        summary = _plain(command.help)
        if summary:
            out.append(summary + "\n")
        arguments = [p for p in command.params if isinstance(p, TyperArgument)]
        options = [p for p in command.params if isinstance(p, TyperOption) and not p.hidden]
        pieces = (["[OPTIONS]"] if options else []) + [_usage(a) for a in arguments]
        if isinstance(command, TyperGroup):
            pieces.append("COMMAND [ARGS]...")
        out.append(f"```\n{' '.join([command_path(ctx), *pieces])}\n```\n")
        if arguments:
            out.append("| Argument | Required | Description |\n|---|---|---|")
            for a in arguments:
                out.append(f"| `{_name(a)}` | {'yes' if a.required else 'no'} | {_cell(_plain(getattr(a, 'help', '')))} |")
            out.append("")
        if options:
            out.append("| Option | Default | Description |\n|---|---|---|")
            for o in options:
                names = ", ".join(f"`{n}`" for n in option_names(o))
                out.append(f"| {names} | {_default(o)} | {_cell(_plain(o.help))} |")
            out.append("")
        if isinstance(command, TyperGroup):
            subs = [n for n in command.list_commands(ctx) if not (c := command.get_command(ctx, n)) or not c.hidden]
            out.append("Commands: " + ", ".join(f"`{n}`" for n in subs) + ".\n")
    return "\n".join(out).rstrip() + "\n"


def main() -> None:
    """Write docs/cli.md, or with --check say whether it is current."""
    parser = argparse.ArgumentParser(description="Generate docs/cli.md from the campaigns CLI.")
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/cli.md is out of date")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT.relative_to(ROOT)} is out of date: run python -m scripts.cli_docs", file=sys.stderr)
            sys.exit(1)
        return
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
