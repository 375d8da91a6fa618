"""`campaigns coupons ...`: import coupon codes into pools and see what is left."""

from __future__ import annotations

from pathlib import Path

import typer

from campaigns.cli.common import CsvOpt, JsonOpt, emit_record, emit_rows, get_app, ok
from campaigns.messages.coupons import import_pool, pool_stats

app = typer.Typer(help="Coupon pools: import codes, see how many are left.", no_args_is_help=True)


@app.command("import")
def import_cmd(
    ctx: typer.Context,
    pool: str = typer.Argument(..., help="Pool name, as templates use it: coupon(\"POOL\")."),
    file: Path = typer.Argument(..., help="One code per line, or a CSV with a `code` column."),
    as_json: bool = JsonOpt,
) -> None:
    """Add codes to a pool (codes already in it are skipped); each code is handed out once."""
    a = get_app(ctx)
    with a.session() as session:
        added = import_pool(session, pool, file)
        stats = next(p for p in pool_stats(session) if p.pool == pool)
    summary = {"pool": pool, "added": added, "total": stats.total, "available": stats.available}
    if as_json:
        emit_record(summary, as_json=True)
        return
    ok(f"{pool}: {added} new codes ({stats.available} of {stats.total} unused)")


@app.command("list")
def list_cmd(ctx: typer.Context, as_json: bool = JsonOpt, as_csv: bool = CsvOpt) -> None:
    """Pools with their total, used and available codes."""
    a = get_app(ctx)
    with a.session() as session:
        rows = [{"pool": p.pool, "total": p.total, "used": p.used, "available": p.available}
                for p in pool_stats(session)]
    emit_rows(rows, ["pool", "total", "used", "available"], title="Coupon pools", as_json=as_json, as_csv=as_csv)
