"""How the CLI prints: consoles, tables that survive narrow terminals, numbers a person reads.

Every command formats through here so a share is always `12.3%`, a difference between two
shares always `+0.49 pts`, money always carries the configured currency, and a table on
an 80-column terminal drops or truncates columns instead of breaking words.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

# Contact-supplied text (names, attributes, user agents) may carry terminal escapes, C1
# controls or bidi overrides; they are shown escaped (\x1b), never interpreted.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def terminal_safe(text: str) -> str:
    """`text` with control, zero-width and bidi characters made visible as escapes."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode(), text)


def safe(text: str) -> str:
    """Plain text for a rich string: markup escaped, controls made visible."""
    return escape(terminal_safe(text))

# Errors shown on the terminal before "... and N more"; the rest are in the rejects file.
SHOWN_ERRORS = 20

_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "CNY": "¥", "INR": "₹", "KRW": "₩",
            "AUD": "A$", "CAD": "CA$", "NZD": "NZ$", "CHF": "CHF ", "SEK": "SEK ", "NOK": "NOK ",
            "DKK": "DKK ", "PLN": "zł ", "BRL": "R$", "MXN": "MX$", "ZAR": "R "}


def _plain(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
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


def percent(share: float | None, *, signed: bool = False, digits: int = 1) -> str:
    """A share (0.123) as `12.3%`; signed: `+12.3%`. None is an em dash."""
    if share is None:
        return "—"
    return f"{share * 100:{'+' if signed else ''}.{digits}f}%"


def points(diff: float | None, *, digits: int = 2) -> str:
    """A difference between two shares (0.0049) as `+0.49 pts` (percentage points)."""
    if diff is None:
        return "—"
    return f"{diff * 100:+.{digits}f} pts"


def money(amount: float | Decimal | None, currency: str = "USD", *, cents: bool = False) -> str:
    """An amount with its currency: `$1,234.50`, `€12.00`, `SEK 99.00` (cents=True: in minor units)."""
    if amount is None:
        return "—"
    value = float(amount) / (100 if cents else 1)
    symbol = _SYMBOLS.get(currency.upper(), currency.upper() + " ")
    sign = "-" if value < 0 else ""
    return f"{sign}{symbol}{abs(value):,.2f}"


# What each dispatcher outcome and outbox state means to a marketer.
OUTCOME_WORDS = {"sent": "sent", "retry_wait": "to retry later", "failed": "failed", "hard_bounce": "bounced",
                 "unknown": "outcome unknown", "suppressed": "suppressed", "policy": "refused by the provider",
                 "released": "back in the queue"}
STATE_WORDS = {"queued": "queued", "claimed": "sending", "sent": "sent", "retry_wait": "to retry", "failed": "failed",
               "unknown": "outcome unknown", "held_out": "held out", "suppressed": "suppressed",
               "cancelled": "cancelled", "skipped": "skipped", "waiting": "waiting for the A/B winner"}


def count_of(n: int, one: str, many: str | None = None) -> str:
    """'1 message', '3 messages', '1,200 not reports': a count in a sentence (`many`: the
    plural when it is not `one` + 's')."""
    return f"{n:,} {one}" if n == 1 else f"{n:,} {many or one + 's'}"


def rows_of(n: int) -> str:
    """'1 row', '3 rows': a file's row count in a sentence."""
    return count_of(n, "row")


def counted(counts: dict[str, int], words: dict[str, str] | None = None) -> str:
    """`{'sent': 2, 'failed': 1}` as `2 sent, 1 failed` (zeros left out, known words used)."""
    words = words or {}
    return ", ".join(f"{n:,} {words.get(k, k.replace('_', ' '))}" for k, n in counts.items() if n)


def plan_sentence(counts: dict[str, Any]) -> str:
    """A planning result as words: `2 contacts (of 3 in the segment; 1 held out; 1 skipped: 1 no consent)`."""
    planned = int(counts.get("planned", 0))
    parts = []
    if "in_segment" in counts:
        parts.append(f"of {int(counts['in_segment']):,} in the segment")
    if counts.get("held_out"):
        parts.append(f"{int(counts['held_out']):,} held out")
    if counts.get("waiting_for_winner"):
        parts.append(f"{int(counts['waiting_for_winner']):,} waiting for the A/B winner")
    skipped = {k: n for k, n in (counts.get("skipped") or {}).items() if n}
    if skipped:
        parts.append(f"{sum(skipped.values()):,} skipped: {counted(skipped)}")
    noun = "contact" if planned == 1 else "contacts"
    return f"{planned:,} {noun}" + (f" ({'; '.join(parts)})" if parts else "")


def run_row(run: dict[str, Any]) -> dict[str, Any]:
    """A campaign run as a table row: its counts spread into columns, the skips as words."""
    counts = run.get("counts") or {}
    return {"scheduled_for": run["scheduled_for"], "status": run["status"], "in_segment": counts.get("in_segment"),
            "planned": counts.get("planned"), "held_out": counts.get("held_out"),
            "skipped": counted(counts.get("skipped") or {})}


def winner_sentence(decision: dict[str, Any]) -> str:
    """An A/B winner decision in one line: who, by what, the p-values, when, why."""
    ps = ", ".join(f"{v['variant']} p={v['p_holm']:.3g}" for v in decision.get("variants", []) if "p_holm" in v)
    return (f"winner {decision['winner']} by {decision['metric']} ({'significant' if decision['significant'] else 'not significant'}"
            f"{'; Holm-adjusted ' + ps if ps else ''}), decided {str(decision['decided_at'])[:19].replace('T', ' ')} UTC, "
            f"{decision.get('released', 0)} sent the winner: {decision['reason']}")


def cell(value: Any) -> str:
    """One value as table text: dates to the second, floats with grouping, lists joined."""
    if value is None or value == [] or value == {}:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, list):
        return ", ".join(cell(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={cell(v)}" for k, v in value.items())
    return str(value)


def _min_width(header: str, values: list[str]) -> int:
    """The narrowest a column can be without breaking a word: its header or its longest word, capped."""
    longest_word = max((len(w) for v in values for w in v.split()), default=0)
    return max(len(header), min(longest_word, 16), 3)


def fit_columns(columns: Sequence[str], texts: list[list[str]], width: int,
                drop_first: Sequence[str] = ()) -> list[str]:
    """The columns that fit `width` without breaking words.

    Columns named in `drop_first` go first (in that order), then from the right; the
    first column always stays.
    """
    kept = list(columns)
    widths = {c: _min_width(c, [row[i] for row in texts]) for i, c in enumerate(columns)}
    order = [c for c in drop_first if c in kept] + [c for c in reversed(kept[1:]) if c not in drop_first]
    while order and sum(widths[c] + 3 for c in kept) + 1 > width:
        kept.remove(order.pop(0))
    return kept


def emit_rows(
    rows: Sequence[dict[str, Any]], columns: Sequence[str], *, title: str | None = None,
    as_json: bool = False, as_csv: bool = False, caption: str | None = None, drop_first: Sequence[str] = (),
    empty: str | None = None,
) -> None:
    """Rows as a table (default), a JSON list or CSV; a narrow terminal hides columns (drop_first first).

    `empty`: the sentence printed instead of a table with no rows.
    """
    if as_json and as_csv:
        from campaigns.errors import InputError

        raise InputError("choose one of --json and --csv")
    if as_json:
        print_json([{c: r.get(c) for c in columns} for r in rows])
        return
    if as_csv:
        from campaigns import csv_output

        writer = csv_output.writer(sys.stdout)
        writer.writerow(columns)
        for r in rows:
            writer.writerow([cell(r.get(c)) if isinstance(r.get(c), (dict, list)) else _plain(r.get(c)) for c in columns])
        return
    if not rows and empty is not None:
        console.print(safe(empty), soft_wrap=True)
        return
    headers = [c.replace("_", " ") for c in columns]
    texts = [[cell(r.get(c)) for c in columns] for r in rows]
    kept = fit_columns(headers, texts, console.width, [c.replace("_", " ") for c in drop_first])
    notes = [caption] if caption else []
    hidden = [h for h in headers if h not in kept]
    if hidden:
        notes.append(f"{len(hidden)} columns hidden at this width ({', '.join(hidden)}); widen the terminal or use --json")
    table = Table(title=safe(title) if title else None, caption=safe("; ".join(notes)) if notes else None,
                  header_style="bold")
    for h in kept:
        table.add_column(h, overflow="ellipsis", min_width=min(len(h), 16))
    index = [headers.index(h) for h in kept]
    for row in texts:
        table.add_row(*[safe(row[i]) for i in index])
    console.print(table)


def emit_record(record: dict[str, Any], *, title: str | None = None, as_json: bool = False) -> None:
    """One record as a two-column table, or JSON."""
    if as_json:
        print_json(record)
        return
    table = Table(title=safe(title) if title else None, show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="ellipsis")
    for k, v in record.items():
        table.add_row(safe(k.replace("_", " ")), safe(cell(v)))
    console.print(table)


def _line_ends(path: Path) -> list[int]:
    """Byte offsets just past each newline: maps the reader's byte position to rows read."""
    ends: list[int] = []
    offset = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            start = 0
            while (i := chunk.find(b"\n", start)) != -1:
                ends.append(offset + i + 1)
                start = i + 1
            offset += len(chunk)
    if offset and (not ends or ends[-1] != offset):
        ends.append(offset)
    return ends


@contextmanager
def row_progress(path: Path, label: str) -> Iterator[Callable[[int], None]]:
    """A progress bar counting a CSV's data rows with an ETA; yields the callback the importer calls.

    The importer reports bytes read; the bar turns them into rows through the file's line
    offsets (a row with a quoted newline counts twice, a harmless over-count).
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    ends = _line_ends(path) if path.is_file() else []
    total = max(len(ends) - 1, 0)  # the header is not a row
    columns = [TextColumn(f"[bold]{escape(label)}"), BarColumn(), MofNCompleteColumn(), TextColumn("rows"),
               TimeRemainingColumn()]
    # No refresh thread (auto_refresh): the bar is redrawn from the importer's callback, at
    # most ten times a second, so the process keeps one thread and a large file can be
    # validated in a forked worker (audience/csvimport.py).
    with Progress(*columns, console=err_console, transient=True, auto_refresh=False) as progress:
        task = progress.add_task(label, total=total or None)
        drawn = [0.0]

        def report(done: int) -> None:
            now = time.monotonic()
            redraw = now - drawn[0] >= 0.1
            if redraw:
                drawn[0] = now
            progress.update(task, completed=rows_read(ends, done), refresh=redraw)

        yield report


def rows_read(line_ends: Sequence[int], bytes_read: int) -> int:
    """Data rows wholly read once `bytes_read` bytes are consumed (the header line not counted)."""
    return max(bisect_right(line_ends, bytes_read) - 1, 0)


def errors_file(path: Path) -> Path:
    """Where a failed import lists all its bad rows: FILE.errors.csv beside the input."""
    return path.with_name(path.stem + ".errors.csv")


def summarise_row_errors(path: str, errors: Sequence[Any]) -> None:
    """The first SHOWN_ERRORS row errors, then a count of the rest; all of them go to FILE.errors.csv."""
    for row_error in errors[:SHOWN_ERRORS]:
        err_console.print(f"[red]{safe(path)}: {safe(str(row_error))}[/red]", soft_wrap=True)
    more = len(errors) - SHOWN_ERRORS
    if more > 0:
        from campaigns import csv_output
        from campaigns.errors import InputError
        from campaigns.safe_files import open_temp_beside

        target = errors_file(Path(path))
        try:  # private, formula-safe, and never through a planted symlink (written beside, renamed in)
            fh, tmp = open_temp_beside(target)
            with fh:
                writer = csv_output.writer(fh)
                writer.writerow(["line", "field", "error"])
                for e in errors:
                    writer.writerow([getattr(e, "line", ""), getattr(e, "field", "") or "", getattr(e, "reason", str(e))])
            os.replace(tmp, target)
            where = f"; all {len(errors):,} are listed in {target}"
        except (OSError, InputError):
            where = ""
        err_console.print(f"[red]... and {more:,} more bad rows{safe(where)}[/red]", soft_wrap=True)
    hint = separator_hint(Path(path))
    if hint:
        err_console.print(f"[yellow]hint:[/yellow] {escape(hint)}", soft_wrap=True)


@contextmanager
def import_hints(path: Path) -> Iterator[None]:
    """An import's header error gains a hint when the file is separated by semicolons or tabs."""
    from campaigns.errors import ImportFailed, InputError

    try:
        yield
    except ImportFailed:
        raise  # summarised, with the hint, by the error reporter
    except InputError as exc:
        hint = separator_hint(path)
        if hint is None:
            raise
        raise InputError(f"{exc} (hint: {hint})") from None


def separator_hint(path: Path) -> str | None:
    """A hint when a 'CSV' is really separated by semicolons or tabs (a spreadsheet's export)."""
    try:
        with path.open("rb") as f:
            header = f.readline(64_000).decode("utf-8", "replace")
    except OSError:
        return None
    for sep, name in ((";", "semicolons"), ("\t", "tabs")):
        if header.count(sep) >= 1 and header.count(sep) > header.count(","):
            return (f"{path} looks separated by {name}, not commas: save it as CSV with commas "
                    "(in a spreadsheet: File > Save as > CSV, comma-separated)")
    return None


def ok(message: str) -> None:
    """A green confirmation line (the message is plain text, not markup)."""
    console.print(f"[green]✓[/green] {safe(message)}", soft_wrap=True)


def warn(message: str) -> None:
    """A yellow warning line on stderr (plain text)."""
    err_console.print(f"[yellow]warning:[/yellow] {safe(message)}", soft_wrap=True)
