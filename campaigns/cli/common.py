"""What every CLI module shares: the app state, consoles, output formats, progress bars."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from campaigns import csv_output
from campaigns.config import load_settings
from campaigns.context import App

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)
# Contact-supplied text (names, attributes, user agents) may carry terminal escapes, C1
# controls or bidi overrides; they are shown escaped (\x1b), never interpreted.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def terminal_safe(text: str) -> str:
    """`text` with control, zero-width and bidi characters made visible as escapes."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode(), text)


def shown(value: Any) -> Text:
    """A value for a rich table or line: never parsed as markup, controls escaped."""
    return Text(terminal_safe(str(value)))


class Channel(str, Enum):
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


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    return value


def print_json(data: Any) -> None:
    """Machine-readable output on stdout, never wrapped or coloured."""
    sys.stdout.write(json.dumps(data, default=_plain, indent=2, ensure_ascii=False) + "\n")


def _cell(value: Any) -> str:
    if value is None or value == [] or value == {}:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, default=_plain)
    return str(value)


def emit_rows(
    rows: Sequence[dict[str, Any]], columns: Sequence[str], *, title: str | None = None,
    as_json: bool = False, as_csv: bool = False, caption: str | None = None,
) -> None:
    """Rows as a rich table (default), JSON list or CSV."""
    if as_json and as_csv:
        raise typer.BadParameter("choose one of --json and --csv")
    if as_json:
        print_json([{c: r.get(c) for c in columns} for r in rows])
        return
    if as_csv:
        writer = csv_output.writer(sys.stdout)
        writer.writerow(columns)
        for r in rows:
            writer.writerow([_plain(r.get(c)) if not isinstance(r.get(c), (dict, list)) else _cell(r.get(c)) for c in columns])
        return
    table = Table(title=title, caption=caption, header_style="bold")
    for c in columns:
        table.add_column(c.replace("_", " "), overflow="fold")
    for r in rows:
        table.add_row(*[shown(_cell(r.get(c))) for c in columns])
    console.print(table)


def emit_record(record: dict[str, Any], *, title: str | None = None, as_json: bool = False) -> None:
    """One record as a two-column table, or JSON."""
    if as_json:
        print_json(record)
        return
    table = Table(title=title, show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for k, v in record.items():
        table.add_row(k.replace("_", " "), shown(_cell(v)))
    console.print(table)


@contextmanager
def file_progress(path: Path, label: str) -> Iterator[Any]:
    """A progress bar over a file's bytes; yields the callback the importer calls."""
    total = path.stat().st_size if path.is_file() else 0
    columns = [TextColumn(f"[bold]{label}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task(label, total=total or None)
        yield lambda done: progress.update(task, completed=done)


def ok(message: str) -> None:
    """A green confirmation line."""
    console.print(Text.assemble(("✓", "green"), " ", terminal_safe(message)))


def warn(message: str) -> None:
    """A yellow warning line on stderr."""
    err_console.print(Text.assemble(("warning:", "yellow"), " ", terminal_safe(message)))
