"""`campaigns report [NAME|loyalty]`: the funnel, lift and earnings; loyalty metrics."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from campaigns import csv_output, safe_files
from campaigns.campaign_defs import get_campaign
from campaigns.cli.common import (
    CsvOpt,
    JsonOpt,
    console,
    emit_record,
    emit_rows,
    get_app,
    money,
    ok,
    percent,
    points,
    print_json,
)
from campaigns.cli.output import winner_sentence
from campaigns.errors import InputError
from campaigns.reports.steps import columns_of


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
    cur = a.settings.currency
    if name is None:
        rows = data if as_csv else [{**r, "revenue": money(r["revenue"], cur), "lift": points(r["lift"])} for r in data]
        emit_rows(rows, ["campaign", "channel", "status", "sent", "opened", "clicked", "converted", "revenue", "lift", "verdict"],
                  title="Campaigns", as_csv=as_csv, caption=None if as_csv else "lift: conversion rate minus the holdout's, in percentage points",
                  drop_first=["channel", "opened", "clicked", "status"])
    elif name == "loyalty":
        cols = ["period", "customers", "new_customers", "orders", "revenue", "retention_rate", "churn_rate",
                "purchase_frequency", "average_order_value", "repeat_purchase_rate"]
        rows = data["rows"] if as_csv else [_loyalty_row(r, cur) for r in data["rows"]]
        emit_rows(rows, cols, title=f"Loyalty per {period}", as_csv=as_csv)
        if not as_csv:
            for key in ("lifecycle", "rfm", "loyalty"):
                emit_rows(data[key], list(data[key][0]) if data[key] else [], title=f"By {key}")
    elif as_csv:
        writer = csv_output.writer(sys.stdout)
        writer.writerow(["metric", "value"])
        lift_figures = {k: v for k, v in data["lift"].items() if k not in ("treated", "holdout")}
        for k, v in _flat(data["funnel"]) + _flat(data["rates"], "rate.") + _flat(lift_figures, "lift.") + _winner_csv(data):
            writer.writerow([k, v])
        for step in data["steps"]:  # drips and journeys: step.N.entered, ..., step.N.exited.REASON
            for k, v in _flat({key: value for key, value in step.items() if key != "step"}, f"step.{step['step']}."):
                writer.writerow([k, v])
    else:
        _print_campaign(data, cur)


def _loyalty_row(row: dict[str, Any], currency: str) -> dict[str, Any]:
    """Rates as percentages and amounts in the currency, for the terminal."""
    out = dict(row)
    for k in ("retention_rate", "churn_rate", "repeat_purchase_rate"):
        if isinstance(out.get(k), float):
            out[k] = percent(out[k])
    for k in ("revenue", "average_order_value"):
        if isinstance(out.get(k), (int, float)):
            out[k] = money(out[k], currency)
    return out


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


def _winner_csv(data: dict[str, Any]) -> list[tuple[str, Any]]:
    """The A/B winner settings and the latest decision as metric/value rows."""
    w = data.get("ab_winner")
    if not w:
        return []
    out: list[tuple[str, Any]] = [(f"ab_winner.{k}", w[k]) for k in ("test_share_pct", "winner_after", "winner_by")]
    if w["decisions"]:
        d = w["decisions"][-1]
        out += [(f"ab_winner.{k}", d[k]) for k in ("winner", "metric", "significant", "decided_at", "released", "reason")]
        out += [(f"ab_winner.p_holm.{v['variant']}", v["p_holm"]) for v in d["variants"] if "p_holm" in v]
    return out


def _print_winner(w: dict[str, Any] | None, cur: str) -> None:
    """The test-then-winner settings and each firing's decision, with the figures it was made on."""
    if not w:
        return
    console.print(f"[bold]A/B winner:[/bold] test share {w['test_share_pct']:g}%, winner after {w['winner_after']} "
                  f"by {w['winner_by']}", soft_wrap=True)
    for d in w["decisions"]:
        rows = [{"variant": v["variant"] + (" (winner)" if v["variant"] == d["winner"] else ""), "contacts": v["contacts"],
                 d["metric"]: money(v["revenue"], cur) if d["metric"] == "revenue" else v["successes"],
                 "per contact": money(v["score"], cur) if d["metric"] == "revenue" else _pct(v["score"]),
                 "p (Holm)": "" if "p_holm" not in v else f"{v['p_holm']:.4f}"} for v in d["variants"]]
        emit_rows(rows, ["variant", "contacts", d["metric"], "per contact", "p (Holm)"],
                  title=f"A/B winner of the firing {d['scheduled_for'][:16].replace('T', ' ')} ({d['method']})")
        console.print(winner_sentence(d), soft_wrap=True)
    for key in w["undecided_firings"]:
        console.print(f"firing {key[:16].replace('T', ' ')}: the rest of the audience waits for the winner", soft_wrap=True)


_pct = percent


def _print_campaign(data: dict[str, Any], cur: str) -> None:
    f, r, lf = data["funnel"], data["rates"], data["lift"]
    c = data["campaign"]
    console.print(f"[bold]{escape(c['name'])}[/bold] ({c['channel']}, {c['status']})")
    if c.get("segment"):
        console.print(f"segment {escape(c['segment'])}: {escape(c['segment_definition'] or '')}", soft_wrap=True)
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
        {"step": "revenue (attributed)", "count": money(f["revenue"], cur), "rate": ""},
        {"step": "revenue per recipient", "count": money(f["revenue_per_recipient"], cur), "rate": ""},
    ]
    if f["cost"] is not None:
        roi_ci = "" if not f["roi_ci95"] else f"95% interval {percent(f['roi_ci95'][0], signed=True)} to {percent(f['roi_ci95'][1], signed=True)}"
        rows += [{"step": "cost", "count": money(f["cost"], cur), "rate": ""},
                 {"step": "ROI (incremental revenue vs holdout)",
                  "count": percent(f["roi"], signed=True) if f["roi"] is not None else "– (no holdout)", "rate": roi_ci},
                 {"step": "ROI on attributed revenue (credit, not causal)", "count": percent(f["roi_attributed"], signed=True),
                  "rate": ""}]
    emit_rows(rows, ["step", "count", "rate"], title="Funnel")
    t, h = lf["treated"], lf["holdout"]
    lift_rows = [{"group": "treated", "contacts": t["contacts"], "converters": t["converters"], "rate": _pct(t["rate"]), "revenue": money(t["revenue"], cur)},
                 {"group": "holdout", "contacts": h["contacts"], "converters": h["converters"], "rate": _pct(h["rate"]), "revenue": money(h["revenue"], cur)}]
    emit_rows(lift_rows, ["group", "contacts", "converters", "rate", "revenue"], title="Lift against the holdout")
    if lf["ci95"]:
        rel_lo, rel_hi = lf["relative_ci95"]
        rev_lo, rev_hi = lf["incremental_revenue_ci95"] or (0.0, 0.0)  # None: nobody bought in either group
        console.print(f"absolute lift {points(lf['absolute'])} (95% interval {points(lf['ci95'][0])} to "
                      f"{points(lf['ci95'][1])}); relative {percent(lf['relative'], signed=True)} (95% interval "
                      f"{percent(rel_lo, signed=True)} to {'unbounded' if rel_hi is None else percent(rel_hi, signed=True)}); "
                      f"incremental revenue {money(lf['incremental_revenue'], cur)} "
                      f"(95% interval {money(rev_lo, cur)} to {money(rev_hi, cur)})", soft_wrap=True)
        console.print(f"smallest lift these groups detect with 80% power: {lf['minimum_detectable_lift'] * 100:.2f} pts")
    console.print(f"[bold]verdict:[/bold] {lf['verdict']}")
    ab = data.get("ab_test")
    if ab:
        ab_rows = [{"variant": v["variant"] + (" (best)" if v["best"] else ""), "contacts": v["contacts"],
                    "converters": v["converters"], "rate": _pct(v["rate"]),
                    "vs best": "" if v["best"] else points(v["difference_from_best"]),
                    "p (Holm)": "" if v["best"] else f"{v['p_holm']:.4f}"} for v in ab["variants"]]
        emit_rows(ab_rows, ["variant", "contacts", "converters", "rate", "vs best", "p (Holm)"],
                  title="A/B test: conversion, each variant against the best (Fisher exact, Holm-adjusted)")
        console.print(f"[bold]A/B decision:[/bold] {ab['decision']}")
    _print_winner(data.get("ab_winner"), cur)
    for key, title in (("by_variant", "By variant"), ("by_lifecycle", "By lifecycle stage at send"), ("by_rfm_segment", "By RFM segment at send")):
        if data[key] and not (len(data[key]) == 1 and data[key][0]["group"] is None):
            emit_rows([{**g, "revenue": money(g["revenue"], cur)} for g in data[key]],
                      ["group", "sent", "opened", "clicked", "converted", "revenue"], title=title)
    if data["steps"]:
        emit_rows([{**st, "exit_reasons": "; ".join(f"{n} {why}" for why, n in st["exit_reasons"].items()),
                    **({"paths": "; ".join(f"{n} {path}" for path, n in st["paths"].items())} if "paths" in st else {})}
                   for st in data["steps"]], columns_of(data["steps"]),
                  title="Per step (opened and clicked: human, unique; converted: attributed)")
    if data["timeline"]["rows"]:
        emit_rows([{**t, "revenue": money(t["revenue"], cur)} for t in data["timeline"]["rows"]],
                  ["at", "opens", "clicks", "orders", "revenue"], title=f"Timeline per {data['timeline']['bucket']}")


__all__ = ["emit_record", "register"]
