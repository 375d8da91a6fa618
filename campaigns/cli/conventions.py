"""Help that reads like a conventional CLI, applied to every command once it is built.

Typer shows a type for every parameter (`<bool>`, `<str>`, `{name}`); we show `NAME` for
arguments, nothing after a flag, an upper-case placeholder after an option that takes a
value, and the choices for an enum. Help text is escaped so Rich prints `[smtp]` as
written, and each command gets its examples from campaigns/cli/examples.py.
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from typer import _click
from typer._click.decorators import help_option
from typer.core import TyperArgument, TyperGroup, TyperOption

from campaigns.cli.examples import EXAMPLES


def escape_help(text: str | None) -> str | None:
    """Help text with Rich markup neutralised (`[smtp]` stays `[smtp]`)."""
    return escape(text) if text else text


class ConventionalArgument(TyperArgument):
    """An argument shown as `NAME` (required) or `[NAME]` (optional), without a type."""

    def _usage_display_name(self) -> str:
        name = self.display_name_raw
        if not self.required:
            name = f"[{name}]"
        if self.nargs != 1:
            name += "..."
        return name

    def display_type_rich(self, ctx: _click.Context) -> str | None:
        return None


def _option_metavar(option: TyperOption) -> str:
    """`` for a flag, `[email|sms]` for a choice, else the option's name in capitals."""
    if option.is_flag or option.count:
        return ""
    descriptor = getattr(option, "type_descriptor", None)
    choices = descriptor.choices if descriptor is not None and descriptor.is_choice else None
    if choices:
        return "[" + "|".join(str(getattr(c, "value", c)) for c in choices) + "]"
    return (option.name or "value").upper()


def _param(param: Any) -> None:
    if isinstance(param, TyperArgument):
        if param.metavar is None:
            param.metavar = (param.name or "arg").upper()
        param.__class__ = ConventionalArgument
    elif isinstance(param, TyperOption) and param.metavar is None:
        param.metavar = _option_metavar(param)
    if getattr(param, "help", None):
        param.help = escape_help(param.help)


def examples_epilog(path: tuple[str, ...]) -> str | None:
    """The `Examples` section for a command path, as Rich text (escaped)."""
    lines = EXAMPLES.get(" ".join(path[1:]))
    if not lines:
        return None
    return "[bold]Examples[/bold]\n" + "\n".join(f"  {escape(line)}" for line in lines)


def conventional(command: Any, path: tuple[str, ...], *, recurse: bool = True) -> None:
    """Apply the help conventions to a command (and, for a group, its subcommands)."""
    if getattr(command, "_conventional", False):
        return
    command._conventional = True
    command.help = escape_help(command.help)
    if command.short_help:
        command.short_help = escape_help(command.short_help)
    command.epilog = examples_epilog(path) or command.epilog
    for param in command.params:
        _param(param)
    if command.add_help_option and getattr(command, "_help_option", None) is None:
        # Build the cached --help option now, so it too is shown as a flag.
        help_option(["--help"])(command)
        command._help_option = command.params.pop()
        command._help_option.metavar = ""
    if recurse and isinstance(command, TyperGroup):
        for name, sub in command.commands.items():
            conventional(sub, (*path, name))
