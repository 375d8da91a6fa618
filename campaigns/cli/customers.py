"""`campaigns customers ...`: RFM, lifecycle and loyalty distributions; one customer's scores."""

from __future__ import annotations

from typing import Any

import typer

from campaigns.cli.common import CsvOpt, JsonOpt, emit_record, emit_rows, get_app, money
from campaigns.contacts import find_contact, timezone_origin
from campaigns.segments import distribution, profiles
from campaigns.timespec import parse_datetime

app = typer.Typer(help="Customer value: RFM segments, lifecycle stages, the loyalty matrix.", no_args_is_help=True)

AtOpt = typer.Option(None, "--at", help="As of this date (2026-01-31 or 30d ago); default now.")
_TITLES = {"rfm": "RFM segments", "lifecycle": "Lifecycle stages", "loyalty": "Loyalty matrix"}


def _view(ctx: typer.Context, view: str, at: str | None, as_json: bool, as_csv: bool) -> None:
    a = get_app(ctx)
    when = parse_datetime(at, a.settings.timezone, "--at") if at else None
    with a.session(write=False) as session:
        rows = distribution(session, a.settings, view, when)
    key = "segment" if view == "rfm" else view
    shown: list[dict[str, Any]] = [
        {**r, "revenue": r["revenue_cents"] / 100} if not as_json else r for r in rows]
    columns = [key, "contacts", "share", "revenue_cents" if as_json else "revenue", "revenue_share", "avg_orders"]
    emit_rows(shown, columns, title=_TITLES[view], as_json=as_json, as_csv=as_csv)


@app.command("rfm")
def rfm_cmd(ctx: typer.Context, at: str | None = AtOpt, as_json: bool = JsonOpt, as_csv: bool = CsvOpt) -> None:
    """Buyers per named RFM segment (champions ... lost), with their revenue."""
    _view(ctx, "rfm", at, as_json, as_csv)


@app.command("lifecycle")
def lifecycle_cmd(ctx: typer.Context, at: str | None = AtOpt, as_json: bool = JsonOpt, as_csv: bool = CsvOpt) -> None:
    """Contacts per lifecycle stage (prospect, new, active, at_risk, lapsed)."""
    _view(ctx, "lifecycle", at, as_json, as_csv)


@app.command("loyalty")
def loyalty_cmd(ctx: typer.Context, at: str | None = AtOpt, as_json: bool = JsonOpt, as_csv: bool = CsvOpt) -> None:
    """Buyers per loyalty quadrant (true friends, butterflies, barnacles, strangers)."""
    _view(ctx, "loyalty", at, as_json, as_csv)


@app.command("show")
def show_cmd(
    ctx: typer.Context,
    contact: str = typer.Argument(..., help="Email, external_id, +phone or #id."),
    at: str | None = AtOpt,
    as_json: bool = JsonOpt,
) -> None:
    """One customer's orders, value, RFM scores, lifecycle stage and loyalty quadrant."""
    a = get_app(ctx)
    when = parse_datetime(at, a.settings.timezone, "--at") if at else None
    with a.session(write=False) as session:
        c = find_contact(session, contact, a.settings)
        p = profiles(session, a.settings, [c.id], when)[c.id]
    record = {"contact": c.email or c.phone or f"#{c.id}", **p.as_dict(),
              "timezone": timezone_origin(c, a.settings.timezone)}
    if not as_json:
        for cents in ("total_cents", "aov_cents", "clv_cents"):
            value = record.pop(cents)
            record[cents[:-6]] = None if value is None else money(value, a.settings.currency, cents=True)
    emit_record(record, title=f"Customer #{c.id}", as_json=as_json)
