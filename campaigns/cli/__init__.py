"""The `campaigns` command: one Typer app, one module per noun, errors as one red line."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer
from rich.markup import escape

from campaigns import __version__
from campaigns.cli import (
    campaigns_cmd,
    consent,
    contacts,
    coupons,
    customers,
    daemon,
    demo,
    purchases,
    report,
    retry,
    segments,
    setup,
    suppress,
    templates,
    track,
)
from campaigns.cli.common import State, err_console, terminal_safe
from campaigns.errors import CampaignsError, ImportFailed

app = typer.Typer(
    name="campaigns",
    help="Permission-first marketing automation: contacts, consent, segments, campaigns, reports.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"campaigns {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Config file (default: $CAMPAIGNS_CONFIG, then ./config.toml).",
        envvar=None, show_default=False,
    ),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """Permission-first marketing automation."""
    ctx.obj = State(config)


setup.register(app)
campaigns_cmd.register(app)
daemon.register(app)
retry.register(app)
track.register(app)
report.register(app)
demo.register(app)
app.add_typer(contacts.app, name="contacts")
app.add_typer(consent.app, name="consent")
app.add_typer(suppress.app, name="suppress")
app.add_typer(purchases.app, name="purchases")
app.add_typer(segments.app, name="segments")
app.add_typer(customers.app, name="customers")
app.add_typer(templates.app, name="templates")
app.add_typer(coupons.app, name="coupons")


def _report(exc: CampaignsError) -> None:
    if isinstance(exc, ImportFailed):
        for row_error in exc.errors:
            err_console.print(f"[red]{escape(terminal_safe(exc.path))}: {escape(terminal_safe(str(row_error)))}[/red]",
                              soft_wrap=True)
    err_console.print(f"[bold red]error:[/bold red] {escape(terminal_safe(str(exc)))}", soft_wrap=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI; our errors become one red line and a non-zero exit.

    Typer's standalone mode already turns usage errors into a message and exit 2; what
    escapes it is ours (CampaignsError) or a bug, and neither may show a traceback.
    """
    os.umask(0o077)  # what we write (database, outbox, rejects) holds personal data: private by default
    try:
        app(args=argv, prog_name="campaigns")
    except CampaignsError as exc:
        _report(exc)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("[red]interrupted[/red]")
        sys.exit(130)
    except Exception as exc:  # a bug: still one line for the marketer, the trace on request
        if os.environ.get("CAMPAIGNS_DEBUG"):
            raise
        # A driver error's text carries the SQL and its parameters (contact addresses among them).
        from campaigns.logsetup import first_line

        err_console.print(
            f"[bold red]internal error:[/bold red] {escape(type(exc).__name__)}: {escape(terminal_safe(first_line(exc)))} "
            "(run again with CAMPAIGNS_DEBUG=1 for details, and please report it)", soft_wrap=True)
        sys.exit(70)
