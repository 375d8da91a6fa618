"""`campaigns purchases ...`: import and list orders."""

from __future__ import annotations

from pathlib import Path

import typer

from campaigns.audience import purchases
from campaigns.audience.contacts import find_contact
from campaigns.audience.purchases import import_purchases
from campaigns.cli.common import (
    CsvOpt,
    EncodingOpt,
    ForceRejectsOpt,
    JsonOpt,
    SkipInvalidOpt,
    emit_record,
    emit_rows,
    file_progress,
    get_app,
    import_hints,
    ok,
    rows_of,
    warn,
)
from campaigns.tracking.attribution import attribute_purchases

app = typer.Typer(help="Orders: import and list.", no_args_is_help=True)


@app.command("import")
def import_cmd(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="CSV: order_id, external_id|email|contact, amount, currency, occurred_at, items, utm_campaign."),
    skip_invalid: bool = SkipInvalidOpt,
    force: bool = ForceRejectsOpt,
    encoding: str = EncodingOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Import orders (idempotent by order_id): all rows or none, unless --skip-invalid."""
    a = get_app(ctx)
    with a.session() as session, file_progress(file, "importing purchases") as progress, import_hints(file):
        result = import_purchases(session, a.settings, file, encoding=encoding, skip_invalid=skip_invalid, progress=progress, force=force,
                                  on_chunk=lambda s, ids: attribute_purchases(s, a.settings, ids))
    summary = {"rows": result.rows, "created": result.created, "updated": result.updated,
               "unchanged": result.unchanged, "rejected": result.rejected,
               "rejects_file": str(result.rejects_path) if result.rejects_path else None}
    if as_json:
        emit_record(summary, as_json=True)
        return
    ok(f"{file}: {rows_of(result.rows)}: {result.created:,} created, {result.updated:,} updated, {result.unchanged:,} unchanged")
    if result.rejected:
        warn(f"{rows_of(result.rejected)} rejected; see {result.rejects_path}")


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    contact: str | None = typer.Option(None, "--contact", help="Only this contact's orders."),
    limit: int = typer.Option(50, "--limit", min=1, max=1_000_000),
    as_json: bool = JsonOpt,
    as_csv: bool = CsvOpt,
) -> None:
    """Orders, newest first."""
    a = get_app(ctx)
    with a.session() as session:
        rows = purchases.recent(session, find_contact(session, contact).id if contact else None, limit)
    emit_rows(rows, ["order_id", "contact", "amount", "currency", "occurred_at", "utm_campaign"],
              title="Purchases", as_json=as_json, as_csv=as_csv)
