"""`campaigns suppress ...`: the suppression list."""

from __future__ import annotations

import typer

from campaigns.audience import suppression
from campaigns.cli.common import Channel, CsvOpt, JsonOpt, emit_rows, get_app, ok

app = typer.Typer(help="Addresses never to be messaged: add, list, remove.", no_args_is_help=True)


@app.command("add")
def add_cmd(
    ctx: typer.Context,
    address: str = typer.Argument(..., help="An email address or phone number."),
    channel: Channel = typer.Option(..., "--channel"),
    reason: str = typer.Option("manual", "--reason", help=f"One of: {', '.join(suppression.REASONS)}."),
    note: str | None = typer.Option(None, "--note"),
) -> None:
    """Suppress an address on a channel."""
    a = get_app(ctx)
    with a.session() as session:
        added = suppression.add(session, a.settings, channel.value, address, reason, note)
    ok(f"{address} suppressed for {channel.value}" if added else f"{address} was already suppressed for {channel.value}")


@app.command("remove")
def remove_cmd(
    ctx: typer.Context,
    address: str = typer.Argument(...),
    channel: Channel = typer.Option(..., "--channel"),
) -> None:
    """Lift a suppression (consent is still needed to message the address)."""
    a = get_app(ctx)
    with a.session() as session:
        suppression.remove(session, a.settings, channel.value, address)
    ok(f"{address} is no longer suppressed for {channel.value}")


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    channel: Channel | None = typer.Option(None, "--channel"),
    limit: int = typer.Option(1000, "--limit", min=1, max=1_000_000),
    as_json: bool = JsonOpt,
    as_csv: bool = CsvOpt,
) -> None:
    """The suppression list, newest first."""
    a = get_app(ctx)
    with a.session() as session:
        entries = suppression.list_entries(session, channel.value if channel else None, limit)
    rows = [e.__dict__ for e in entries]
    emit_rows(rows, ["channel", "address", "reason", "since", "note"], title="Suppression list",
              as_json=as_json, as_csv=as_csv)
