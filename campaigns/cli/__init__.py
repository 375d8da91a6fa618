"""The `campaigns` command: one Typer app, one module per noun, errors as one red line.

This module stays light: `campaigns --version` answers before Typer, Rich or anything of
the product is imported, and the root group (campaigns/cli/root.py) imports a noun's
module only when that command runs.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs --version a tenth of a second
if TYPE_CHECKING:
    from typing import Any


def _only_version(args: list[str]) -> bool:
    """True for `--version`, optionally after `--config FILE` / `-c FILE`."""
    rest = list(args)
    while len(rest) >= 2 and rest[0] in ("--config", "-c"):
        rest = rest[2:]
    rest = [a for a in rest if not a.startswith("--config=")]
    return rest == ["--version"]


def _report(exc: Any) -> None:
    from campaigns.cli.output import err_console, safe, summarise_row_errors
    from campaigns.errors import ImportFailed

    if isinstance(exc, ImportFailed):
        summarise_row_errors(exc.path, exc.errors)
    err_console.print(f"[bold red]error:[/bold red] {safe(str(exc))}", soft_wrap=True)


def _usage_error(exc: Any) -> int:
    """A usage error (unknown option, bad value) in the same shape as our own errors."""
    from rich.markup import escape

    from campaigns.cli.output import err_console

    if type(exc).__name__ == "NoArgsIsHelpError":
        sys.stdout.write(exc.ctx.get_help() + "\n")
        return 2
    ctx = getattr(exc, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    # Typer's value coercion prefixes pydantic's "Value error, "; the marketer needs the rest.
    message = exc.format_message().replace("Value error, ", "")
    err_console.print(f"[bold red]error:[/bold red] {escape(message)}{escape(hint)}", soft_wrap=True)
    return int(getattr(exc, "exit_code", 2))


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI; usage errors and ours become one red line and a non-zero exit.

    What escapes as another exception is a bug, and still shows no traceback unless
    CAMPAIGNS_DEBUG is set.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if _only_version(args):
        from campaigns import __version__

        sys.stdout.write(f"campaigns {__version__}\n")
        sys.exit(0)

    os.umask(0o077)  # what we write (database, outbox, rejects) holds personal data: private by default
    from typer import _click

    from campaigns.cli.root import build
    from campaigns.errors import CampaignsError

    try:
        code = build().main(args=args, prog_name="campaigns", standalone_mode=False)
        if code == 130:  # Typer's answer to Ctrl-C inside a command (KeyboardInterrupt -> Exit(130))
            raise KeyboardInterrupt
        sys.exit(code if isinstance(code, int) else 0)
    except CampaignsError as exc:
        _report(exc)
        sys.exit(exc.exit_code)
    except _click.exceptions.ClickException as exc:
        sys.exit(_usage_error(exc))
    except KeyboardInterrupt:
        from campaigns.cli.output import err_console

        err_console.print("[red]interrupted[/red]")
        sys.exit(130)
    except Exception as exc:  # a bug: still one line for the marketer, the trace on request
        if type(exc).__name__ == "Abort":
            from campaigns.cli.output import err_console

            err_console.print("[red]aborted[/red]")
            sys.exit(1)
        if os.environ.get("CAMPAIGNS_DEBUG"):
            raise
        from campaigns.cli.output import err_console, safe

        # A driver error's text carries the SQL and its parameters (contact addresses among them).
        from campaigns.logsetup import first_line

        err_console.print(
            f"[bold red]internal error:[/bold red] {safe(type(exc).__name__)}: {safe(first_line(exc))} "
            "(run again with CAMPAIGNS_DEBUG=1 for details, and please report it)", soft_wrap=True)
        sys.exit(70)
