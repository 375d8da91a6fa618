"""What every CLI module shares: the app state, the channel choice, the --json/--csv options.

Formatting lives in campaigns/cli/output.py (re-exported here for the command modules).
Settings and the database are imported on first use, so help and `--version` stay fast.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from campaigns.cli.output import (  # noqa: F401  (re-exported for the command modules)
    console,
    count_of,
    counted,
    emit_record,
    emit_rows,
    err_console,
    import_hints,
    money,
    ok,
    percent,
    points,
    print_json,
    row_progress,
    rows_of,
    safe,
    terminal_safe,
    warn,
)

if TYPE_CHECKING:
    from campaigns.context import App

# The importers report progress in rows (the old name is kept for the command modules).
file_progress = row_progress


class Channel(StrEnum):
    email = "email"
    sms = "sms"


class State:
    """Held on the Typer context: the config path, and the App once loaded."""

    def __init__(self, config_path: Path | None) -> None:
        self.config_path = config_path
        self._app: App | None = None

    @property
    def app(self) -> App:
        """Settings are read on first use, so `--help` works without a config."""
        if self._app is None:
            from campaigns.config import load_settings
            from campaigns.context import App

            self._app = App(load_settings(self.config_path))
        return self._app


def get_app(ctx: typer.Context) -> App:
    """The App for this invocation (settings validated, engine lazy)."""
    root = ctx.find_root()
    state = root.obj
    if not isinstance(state, State):
        state = State(None)
        root.obj = state
    return state.app


JsonOpt = typer.Option(False, "--json", help="Print JSON (stable keys) for scripts.")
CsvOpt = typer.Option(False, "--csv", help="Print CSV for spreadsheets and scripts.")

# The options every file import shares (contacts, purchases, events).
SkipInvalidOpt = typer.Option(False, "--skip-invalid", help="Import the good rows; write rejected ones to FILE.rejected.csv.")
ForceRejectsOpt = typer.Option(False, "--force", help="With --skip-invalid: replace an existing FILE.rejected.csv.")
EncodingOpt = typer.Option("utf-8", "--encoding", help="The file's text encoding.")
