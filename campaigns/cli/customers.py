"""`campaigns customers ...`: RFM, lifecycle, loyalty and ABC distributions; CLV; one customer's scores."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import typer

from campaigns.audience.contacts import find_contact, timezone_origin
from campaigns.cli.common import (
    CsvOpt,
    JsonOpt,
    emit_record,
    emit_rows,
    get_app,
    money,
    print_json,
)
from campaigns.segments import distribution, profiles
from campaigns.timespec import parse_datetime, utcnow

app = typer.Typer(help="Customer value: RFM segments, lifecycle stages, the loyalty matrix.", no_args_is_help=True)

AtOpt = typer.Option(None, "--at", help="As of this date (2026-01-31 or 30d ago); default now.")
_TITLES = {"rfm": "RFM segments", "lifecycle": "Lifecycle stages", "loyalty": "Loyalty matrix", "abc": "ABC classes"}
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _at(text: str | None, tz: str) -> datetime | None:
    """--at: a bare date means the end of that day (its purchases count)."""
    if not text:
        return None
    when = parse_datetime(text, tz, "--at")
    return when + timedelta(days=1) - timedelta(microseconds=1) if _DAY.match(text.strip()) else when


def _view(ctx: typer.Context, view: str, at: str | None, as_json: bool, as_csv: bool) -> None:
    a = get_app(ctx)
    when = _at(at, a.settings.timezone)
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


@app.command("abc")
def abc_cmd(ctx: typer.Context, at: str | None = AtOpt, as_json: bool = JsonOpt, as_csv: bool = CsvOpt) -> None:
    """Buyers per ABC class: A bring the first 80% of revenue, B the next 15%, C the rest."""
    _view(ctx, "abc", at, as_json, as_csv)


@app.command("clv")
def clv_cmd(ctx: typer.Context, at: str | None = AtOpt, as_json: bool = JsonOpt,
            top: int = typer.Option(10, "--top", min=1, help="How many of the most valuable customers to list.")) -> None:
    """Customer lifetime value: the fitted BG/NBD and Gamma-Gamma model, the spread, the top customers."""
    from campaigns.segments.clv import clv_report  # scipy takes seconds to import: only here

    a = get_app(ctx)
    when = _at(at, a.settings.timezone) or utcnow()
    with a.session(write=False) as session:
        data = clv_report(session, a.settings, when, top)
    if as_json:
        print_json(data)
        return
    m = data["model"]
    fitted = m["fitted_on"]
    params = {k: f"{v:.4g}" for k, v in m["params"].items()}
    emit_record({"model": m["name"], **params, "time unit": m["time_unit"],
                 "fitted on": f"{fitted['customers']:,} customers, {fitted['purchases']:,} purchases up to {fitted['purchases_up_to']}",
                 "margin": m["margin"], "discount rate": f"{m['discount_rate']:.1%} a year", "horizon": m["horizon"]},
                title="CLV model")
    spread = [{"figure": name, **{k: "–" if v is None else (f"{v:,.3f}" if name == "P(alive)" else f"{v:,.2f}")
                                 for k, v in d.items() if k != "customers"}}
              for name, d in (("CLV", data["distribution"]["clv"]), ("P(alive)", data["distribution"]["p_alive"]),
                              ("historical profit", data["distribution"]["historical_profit"]),
                              ("future profit (PV)", data["distribution"]["future_profit"]))]
    emit_rows(spread, ["figure", "mean", "p10", "p25", "p50", "p75", "p90", "total"], title="Distribution")
    rows = [{**t, "p_alive": f"{t['p_alive']:.3f}", "expected_purchases": f"{t['expected_purchases']:.2f}"} for t in data["top"]]
    emit_rows(rows, ["contact", "purchase_days", "spent", "p_alive", "expected_purchases", "historical_profit",
                     "future_profit", "clv"], title="Most valuable customers")


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
        p = profiles(session, a.settings, [c.id], when, value=True)[c.id]
    record = {"contact": c.email or c.phone or f"#{c.id}", **p.as_dict(),
              "timezone": timezone_origin(c, a.settings.timezone)}
    if not as_json:
        for cents in ("total_cents", "aov_cents", "clv_cents"):
            value = record.pop(cents)
            record[cents[:-6]] = None if value is None else money(value, a.settings.currency, cents=True)
    emit_record(record, title=f"Customer #{c.id}", as_json=as_json)
