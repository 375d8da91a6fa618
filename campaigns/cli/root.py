"""The root `campaigns` group: loads each noun's module only when that command is used.

`campaigns --help` lists every command from the table below without importing the
modules behind them (they pull in SQLAlchemy, Jinja, aiosmtplib ...), so help and
completion of command names stay fast. A command's own help imports its module.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import typer
from typer import _click as click
from typer.core import TyperCommand, TyperGroup

from campaigns import __version__
from campaigns.cli.conventions import conventional, escape_help

# name -> (module under campaigns.cli, the one-line help shown in `campaigns --help`).
# A module either has `register(app)` (top-level commands) or `app` (a command group).
# tests/cli/test_help.py checks that this table and the modules agree.
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("setup", "Create the database (or upgrade it to this version) and the secret key file."),
    "new": ("campaigns_cmd", "Define a campaign (a draft until activated): who, what and when."),
    "list": ("campaigns_cmd", "All campaigns with their status and outbox counts."),
    "show": ("campaigns_cmd", "One campaign: its definition, status (and why), runs and outbox by state."),
    "edit": ("campaigns_cmd", "Change a campaign (the daemon picks the change up within seconds)."),
    "activate": ("campaigns_cmd", "Make a draft campaign live: the daemon starts sending it on its schedule."),
    "clone": ("campaigns_cmd", "Copy a campaign's definition under a new name, as a draft."),
    "delete": ("campaigns_cmd", "Delete a draft campaign that never sent anything."),
    "archive": ("campaigns_cmd", "Archive a finished campaign: hidden from list, its segment freed."),
    "pause": ("campaigns_cmd", "Stop sending (queued messages wait; nothing is lost)."),
    "resume": ("campaigns_cmd", "Carry on sending."),
    "cancel": ("campaigns_cmd", "Stop for good: queued messages are cancelled."),
    "send": ("campaigns_cmd", "Run a campaign once, immediately (--now), or preview it (--dry-run)."),
    "retry": ("retry", "Queue again the messages of a campaign that failed for a passing reason (an outage)."),
    "calendar": ("campaigns_cmd", "Every upcoming firing and drip step across campaigns, with its audience."),
    "daemon": ("daemon", "Run the scheduler, the dispatcher and the tracking app until SIGTERM/SIGINT."),
    "worker": ("daemon", "Run only the dispatcher: start several (sharing PostgreSQL) to send faster."),
    "status": ("daemon", "What is scheduled next, what is running, and the outbox by state."),
    "events": ("track", "Responses of a campaign or a contact (list), and custom events (import)."),
    "report": ("report", "What campaigns reached, caused and earned (lift against the holdout), or loyalty metrics."),
    "demo": ("demo", "Generate a shop, run three campaigns and two journeys on an accelerated clock, print the reports."),
    "config": ("setup", "Show and check the configuration."),
    "track": ("track", "The tracking endpoints (opens, clicks, unsubscribes, webhooks); record a custom event."),
    "bounces": ("track", "Bounce and complaint reports."),
    "contacts": ("contacts", "Import, add, edit, tag, list, show, export and erase contacts."),
    "consent": ("consent", "The consent ledger: grant, revoke, confirm (double opt-in), history."),
    "suppress": ("suppress", "Addresses never to be messaged: add, list, remove."),
    "purchases": ("purchases", "Orders: import and list."),
    "topics": ("topics", "Topics: what campaigns are about; a contact can leave one and keep the channel."),
    "journeys": ("journeys", "Branching journeys: check a journey file (lint) before `new --journey`."),
    "segments": ("segments", "Segments: named filters over contacts, consent and purchases."),
    "customers": ("customers", "Customer value: RFM segments, lifecycle stages, the loyalty matrix."),
    "templates": ("templates", "Message templates: list, lint, check, render a preview, send a test."),
    "coupons": ("coupons", "Coupon pools: import codes, see how many are left."),
}


def load_module_commands(module_name: str) -> dict[str, click.Command]:
    """Import one CLI module and return its commands, in the project's help conventions."""
    module = importlib.import_module(f"campaigns.cli.{module_name}")
    holder = typer.Typer(rich_markup_mode="rich")
    if hasattr(module, "register"):
        module.register(holder)
    else:
        name = next(n for n, (m, _) in COMMANDS.items() if m == module_name)
        holder.add_typer(module.app, name=name)
    group = typer.main.get_group(holder)
    for name, command in group.commands.items():
        conventional(command, ("campaigns", name))
    return dict(group.commands)


class LazyGroup(TyperGroup):
    """The root group: commands come from COMMANDS, their modules load on first use."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loaded: dict[str, click.Command] = {}
        self._listing = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command name, in the table's order."""
        return list(COMMANDS) + [n for n in self._loaded if n not in COMMANDS]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command, importing its module; while listing help, a stub with its summary."""
        if cmd_name in self._loaded:
            return self._loaded[cmd_name]
        if cmd_name not in COMMANDS:
            return None
        module_name, summary = COMMANDS[cmd_name]
        if self._listing:
            return TyperCommand(cmd_name, help=escape_help(summary), short_help=escape_help(summary))
        self._loaded.update(load_module_commands(module_name))
        return self._loaded.get(cmd_name)

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Root help lists commands from the table, importing none of them."""
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


root_app = typer.Typer(
    name="campaigns",
    cls=LazyGroup,
    help="Permission-first marketing automation: contacts, consent, segments, campaigns, reports.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"campaigns {__version__}")
        raise typer.Exit()


@root_app.callback()
def root(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, "--config", "-c", metavar="FILE", help="Config file (default: $CAMPAIGNS_CONFIG, then ./config.toml).",
        envvar=None, show_default=False,
    ),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """Permission-first marketing automation."""
    from campaigns.cli.common import State

    ctx.obj = State(config)


def build() -> TyperGroup:
    """The root click group, with the project's help conventions applied."""
    group = typer.main.get_command(root_app)
    assert isinstance(group, TyperGroup)
    conventional(group, ("campaigns",), recurse=False)
    return group
