"""`campaigns report [NAME|loyalty]`: the funnel, lift and earnings; loyalty metrics."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from campaigns import csv_output, safe_files
from campaigns.campaign_defs import get_campaign
from campaigns.cli.common import (
    CsvOpt,
    JsonOpt,
    console,
    emit_record,
    emit_rows,
    get_app,
    ok,
    print_json,
)
from campaigns.errors import InputError


def register(app: typer.Typer) -> None:
    """Attach `report` to the root app."""
    app.command("report")(report)


def report(ctx: typer.Context,
           name: str | None = typer.Argument(None, help="A campaign, or 'loyalty'; none: every campaign."),
           period: str = typer.Option("month", "--period", help="loyalty: month, quarter or year."),
           as_json: bool = JsonOpt, as_csv: bool = CsvOpt,
           html: bool = typer.Option(False, "--html", help="Write a self-contained HTML page (needs -o)."),
           output: Path | None = typer.Option(None, "-o", "--output", help="Where --html writes."),
           force: bool = typer.Option(False, "--force", help="Replace an existing -o file.")) -> None:
    """What campaigns reached, caused and earned (lift against the holdout), or loyalty metrics."""
    # imported here: numpy (the intervals) should not slow every other command's start
    from campaigns.reports.campaign import campaign_report, overview
    from campaigns.reports.html import campaign_page, loyalty_page
    from campaigns.reports.loyalty import loyalty_report

    if html and output is None:
        raise InputError("--html needs -o FILE")
    if output is not None:
        safe_files.check_replace(output, force)  # before the report is computed
    a = get_app(ctx)
    with a.session(write=False) as s:
        if name is None:
            data: Any = overview(s, a.settings)
        elif name == "loyalty":
            data = loyalty_report(s, a.settings, period)
        else:
            data = campaign_report(s, a.settings, get_campaign(s, name))
    if html:
        assert output is not None
        if name is None:
            raise InputError("--html: name a campaign, or 'loyalty'")
        safe_files.write_text(output, loyalty_page(data) if name == "loyalty" else campaign_page(data), force=force,
                              mode=0o644)  # aggregates, meant to be shared
        ok(f"wrote {output}")
        return
    if as_json:
        print_json(data)
        return
    if name is None:
        emit_rows(data, ["campaign", "channel", "status", "sent", "opened", "clicked", "converted", "revenue", "lift", "verdict"],
                  title="Campaigns", as_csv=as_csv)
    elif name == "loyalty":
        cols = ["period", "customers", "new_customers", "orders", "revenue", "retention_rate", "churn_rate",
                "purchase_frequency", "average_order_value", "repeat_purchase_rate"]
        emit_rows(data["rows"], cols, title=f"Loyalty per {period}", as_csv=as_csv)
        if not as_csv:
            for key in ("lifecycle", "rfm", "loyalty"):
                emit_rows(data[key], list(data[key][0]) if data[key] else [], title=f"By {key}")
    elif as_csv:
        writer = csv_output.writer(sys.stdout)
        writer.writerow(["metric", "value"])
        lift_figures = {k: v for k, v in data["lift"].items() if k not in ("treated", "holdout")}
        for k, v in _flat(data["funnel"]) + _flat(data["rates"], "rate.") + _flat(lift_figures, "lift."):
            writer.writerow([k, v])
    else:
        _print_campaign(data)


def _flat(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        if isinstance(v, dict):
            out += _flat(v, f"{prefix}{k}.")
        elif isinstance(v, list):
            out.append((prefix + k, ";".join(f"{x:.6f}" if isinstance(x, float) else str(x) for x in v)))
        else:
            out.append((prefix + k, v))
    return out


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v * 100:.1f}%"


def _print_campaign(data: dict[str, Any]) -> None:
    f, r, lf = data["funnel"], data["rates"], data["lift"]
    console.print(f"[bold]{data['campaign']['name']}[/bold] ({data['campaign']['channel']}, {data['campaign']['status']})")
    rows = [
        {"step": "in segment", "count": f["in_segment"], "rate": ""},
        *({"step": f"  skipped: {k.replace('_', ' ')}", "count": v, "rate": ""} for k, v in f["skipped"].items()),
        {"step": "held out", "count": f["held_out"], "rate": ""},
        {"step": "sent", "count": f["sent"], "rate": ""},
        {"step": "delivered", "count": f["delivered"], "rate": _pct(r["delivery_rate"])},
        {"step": "failed / unknown", "count": f"{f['failed']} / {f['unknown']}", "rate": ""},
        {"step": "bounced", "count": f["bounced"], "rate": ""},
        {"step": "opened (human, unique)", "count": f["opened"], "rate": _pct(r["open_rate"])},
        {"step": "clicked (unique)", "count": f["clicked"], "rate": _pct(r["click_rate"])},
        {"step": "unsubscribed", "count": f["unsubscribed"], "rate": _pct(r["unsubscribe_rate"])},
        {"step": "complaints", "count": f["complaints"], "rate": ""},
        {"step": "converted (attributed)", "count": f["converted"], "rate": _pct(r["conversion_rate"])},
        {"step": "revenue (attributed)", "count": f"{f['revenue']:,.2f}", "rate": ""},
        {"step": "revenue per recipient", "count": "–" if f["revenue_per_recipient"] is None else f"{f['revenue_per_recipient']:,.2f}", "rate": ""},
    ]
    if f["cost"] is not None:
        roi_ci = "" if not f["roi_ci95"] else f"95% interval {_pct(f['roi_ci95'][0])} to {_pct(f['roi_ci95'][1])}"
        rows += [{"step": "cost", "count": f"{f['cost']:,.2f}", "rate": ""},
                 {"step": "ROI (incremental revenue vs holdout)", "count": _pct(f["roi"]) if f["roi"] is not None else "– (no holdout)",
                  "rate": roi_ci},
                 {"step": "ROI on attributed revenue (credit, not causal)", "count": _pct(f["roi_attributed"]), "rate": ""}]
    emit_rows(rows, ["step", "count", "rate"], title="Funnel")
    t, h = lf["treated"], lf["holdout"]
    lift_rows = [{"group": "treated", "contacts": t["contacts"], "converters": t["converters"], "rate": _pct(t["rate"]), "revenue": t["revenue"]},
                 {"group": "holdout", "contacts": h["contacts"], "converters": h["converters"], "rate": _pct(h["rate"]), "revenue": h["revenue"]}]
    emit_rows(lift_rows, ["group", "contacts", "converters", "rate", "revenue"], title="Lift against the holdout")
    if lf["ci95"]:
        rel_lo, rel_hi = lf["relative_ci95"]
        rev_lo, rev_hi = lf["incremental_revenue_ci95"] or (0.0, 0.0)  # None: nobody bought in either group
        console.print(f"absolute lift {lf['absolute'] * 100:+.2f} points (95% interval {lf['ci95'][0] * 100:+.2f} to "
                      f"{lf['ci95'][1] * 100:+.2f}); relative {_pct(lf['relative'])} (95% interval {_pct(rel_lo)} to "
                      f"{'unbounded' if rel_hi is None else _pct(rel_hi)}); incremental revenue {lf['incremental_revenue']:,.2f} "
                      f"(95% interval {rev_lo:,.2f} to {rev_hi:,.2f})")
        console.print(f"smallest lift these groups detect with 80% power: {lf['minimum_detectable_lift'] * 100:.2f} points")
    console.print(f"[bold]verdict:[/bold] {lf['verdict']}")
    ab = data.get("ab_test")
    if ab:
        ab_rows = [{"variant": v["variant"] + (" (best)" if v["best"] else ""), "contacts": v["contacts"],
                    "converters": v["converters"], "rate": _pct(v["rate"]),
                    "vs best": "" if v["best"] else f"{v['difference_from_best'] * 100:+.2f} pts",
                    "p (Holm)": "" if v["best"] else f"{v['p_holm']:.4f}"} for v in ab["variants"]]
        emit_rows(ab_rows, ["variant", "contacts", "converters", "rate", "vs best", "p (Holm)"],
                  title="A/B test: conversion, each variant against the best (Fisher exact, Holm-adjusted)")
        console.print(f"[bold]A/B decision:[/bold] {ab['decision']}")
    for key, title in (("by_variant", "By variant"), ("by_lifecycle", "By lifecycle stage at send"), ("by_rfm_segment", "By RFM segment at send")):
        if data[key] and not (len(data[key]) == 1 and data[key][0]["group"] is None):
            emit_rows(data[key], ["group", "sent", "opened", "clicked", "converted", "revenue"], title=title)
    if data["timeline"]["rows"]:
        emit_rows(data["timeline"]["rows"], ["at", "opens", "clicks", "orders", "revenue"], title=f"Timeline per {data['timeline']['bucket']}")


__all__ = ["emit_record", "register"]
