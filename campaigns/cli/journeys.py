"""`campaigns journeys lint FILE`: every mistake of a branching journey file, one line each."""

from __future__ import annotations

from pathlib import Path

import typer

from campaigns.campaign_defs import lint_journey_text
from campaigns.cli.common import console, err_console, get_app, ok, safe
from campaigns.errors import InputError
from campaigns.journey_defs import draw, lint_journey

app = typer.Typer(help="Branching journeys (`campaigns new NAME --journey FILE.toml`, docs/journeys.md).", no_args_is_help=True)


MAX_JOURNEY_BYTES = 1_000_000  # a journey of a hundred steps is a few kB


def read_journey(path: Path, option: str | None = None) -> str:
    """The file's text, or one line naming the file (and the option it came from) and why it
    cannot be read."""
    where = f"{option}: cannot read {path}" if option else f"cannot read {path}"
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_JOURNEY_BYTES + 1)
    except FileNotFoundError:
        raise InputError(f"{where}: no such file") from None
    except OSError as exc:
        raise InputError(f"{where}: {exc.strerror or exc}") from None
    if len(data) > MAX_JOURNEY_BYTES:
        raise InputError(f"{where}: larger than {MAX_JOURNEY_BYTES:,} bytes; a journey file is a few kB of TOML")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{where}: not UTF-8 text (byte {exc.start})") from None


@app.command("lint")
def lint_cmd(ctx: typer.Context, file: Path = typer.Argument(..., help="A journey file (TOML)."),
             show_tree: bool = typer.Option(False, "--draw", help="Also draw the journey when it is good.")) -> None:
    """Check a journey file: unknown keys and step kinds, cycles, unreachable steps, a branch
    without both paths, missing templates, filters that do not parse. Writes nothing."""
    a = get_app(ctx)
    text = read_journey(file)
    with a.session() as s:
        mistakes = lint_journey_text(s, a.settings, text, str(file))
    if mistakes:
        for line in mistakes:
            err_console.print(safe(line), highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    ok(f"{file}: the journey is good")
    if show_tree:
        journey, _ = lint_journey(text, str(file))
        assert journey is not None
        for line in draw(journey):
            console.print(safe(line), highlight=False, soft_wrap=True)
