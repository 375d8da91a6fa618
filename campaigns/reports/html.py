"""One self-contained HTML page: inline CSS, charts drawn as inline SVG, no network requests."""

from __future__ import annotations

from html import escape
from typing import Any

from campaigns.reports.steps import columns_of

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:60rem;color:#1f2933;padding:0 1rem}
h1{margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid #e4e7eb;padding-bottom:.3rem}
.sub{color:#616e7c}.cards{display:flex;gap:1rem;flex-wrap:wrap}
.card{background:#f5f7fa;border-radius:.5rem;padding:.8rem 1.1rem;min-width:9rem}
.card b{display:block;font-size:1.5rem}table{border-collapse:collapse;width:100%;margin-top:.6rem}
td,th{padding:.3rem .6rem;border-bottom:1px solid #e4e7eb;text-align:right}td:first-child,th:first-child{text-align:left}
svg text{font-family:inherit;font-size:12px}svg text:not([fill]){fill:#323f4b}.verdict{font-weight:600}
svg{display:block;width:100%;max-width:640px;height:auto}.scroll{overflow-x:auto;max-width:100%}
@media (max-width:480px){body{margin:1rem auto;padding:0 .6rem}.card{min-width:7rem;padding:.6rem .8rem}.card b{font-size:1.2rem}
td,th{padding:.25rem .35rem;font-size:.85rem}}
"""
# Phones: the page scales to the screen; charts scale through their viewBox (CSS above).
_HEAD = "<meta charset='utf-8'><meta name='viewport' content='width=device-width, initial-scale=1'>"
BLUE, GREEN, GREY, RED = "#2680c2", "#3ebd93", "#9aa5b1", "#e66a6a"


def _num(v: Any, pct: bool = False, money: bool = False) -> str:
    if v is None:
        return "–"
    if pct:
        return f"{v * 100:.1f}%"
    if money:
        return f"{v:,.2f}"
    return f"{v:,}" if isinstance(v, int) else f"{v:,.2f}"


def funnel_svg(steps: list[tuple[str, int]]) -> str:
    """Horizontal bars, one per funnel step."""
    width, row = 640, 30
    top = max((n for _, n in steps), default=0) or 1
    bars = []
    for i, (label, n) in enumerate(steps):
        w = max(1.0, (width - 220) * n / top)
        y = i * row + 5
        bars.append(f'<text x="0" y="{y + 16}">{escape(label)}</text>'
                    f'<rect class="bar" x="140" y="{y}" width="{w:.1f}" height="{row - 8}" rx="3" fill="{BLUE}"/>'
                    f'<text x="{146 + w:.1f}" y="{y + 16}">{n:,}</text>')
    height = len(steps) * row + 10
    return f'<svg role="img" aria-label="funnel" width="{width}" height="{height}" viewBox="0 0 {width} {height}">{"".join(bars)}</svg>'


def lift_svg(lift: dict[str, Any]) -> str:
    """Conversion of treated vs holdout as bars, and the lift's 95% interval as a whisker around 0."""
    t, h = lift["treated"]["rate"] or 0.0, lift["holdout"]["rate"] or 0.0
    top = max(t, h, 0.0001)
    bars = ""
    groups = [("treated", t, BLUE)] + ([("holdout", h, GREY)] if lift["holdout"].get("contacts") else [])
    for i, (label, v, color) in enumerate(groups):
        height = 140 * v / top
        left = 30 + i * 90
        bars += (f'<rect class="bar" x="{left}" y="{170 - height:.1f}" width="60" height="{max(height, 1):.1f}" fill="{color}"/>'
                 f'<text x="{left}" y="188">{label}</text><text x="{left}" y="{165 - height:.1f}">{v * 100:.1f}%</text>')
    whisker = ""
    if lift.get("ci95"):
        lo, hi = lift["ci95"]
        span = max(abs(lo), abs(hi), abs(lift["absolute"]), 0.0001) * 1.2
        def x(v: float) -> float:
            return 420 + 160 * v / span
        color = GREEN if lo > 0 else RED if hi < 0 else GREY
        whisker = (f'<line x1="420" y1="30" x2="420" y2="170" stroke="#cbd2d9"/>'
                   f'<line class="ci" x1="{x(lo):.1f}" y1="100" x2="{x(hi):.1f}" y2="100" stroke="{color}" stroke-width="4"/>'
                   f'<circle cx="{x(lift["absolute"]):.1f}" cy="100" r="6" fill="{color}"/>'
                   f'<text x="{x(lo) - 8:.1f}" y="104" text-anchor="end">{lo * 100:.1f}</text>'
                   f'<text x="{x(hi) + 8:.1f}" y="104">{hi * 100:.1f} pts</text>'
                   f'<text x="330" y="188">lift, 95% interval (points)</text>')
    return f'<svg role="img" aria-label="lift" width="640" height="200" viewBox="0 0 640 200">{bars}{whisker}</svg>'


def timeline_svg(rows: list[dict[str, Any]]) -> str:
    """Opens and clicks as lines, orders as bars, per bucket."""
    width, height, pad = 640, 220, 30
    if not rows:
        return (f'<svg role="img" aria-label="timeline" width="{width}" height="40" viewBox="0 0 {width} 40">'
                '<text x="0" y="20">No responses yet.</text></svg>')
    top = max(max(r["opens"], r["clicks"], r["orders"]) for r in rows) or 1
    step = (width - 2 * pad) / max(1, len(rows) - 1) if len(rows) > 1 else 0
    x0 = pad if len(rows) > 1 else width / 2  # one bucket: in the middle, drawn as markers and a bar
    def pt(i: int, v: int) -> str:
        return f"{x0 + i * step:.1f},{height - pad - (height - 2 * pad) * v / top:.1f}"
    lines = ""
    for key, color in (("opens", BLUE), ("clicks", GREEN)):
        points = " ".join(pt(i, r[key]) for i, r in enumerate(rows))
        lines += f'<polyline class="series" fill="none" stroke="{color}" stroke-width="2" points="{points}"/>'
        lines += "".join(f'<circle class="point" cx="{pt(i, r[key]).split(",")[0]}" cy="{pt(i, r[key]).split(",")[1]}" '
                         f'r="3" fill="{color}"/>' for i, r in enumerate(rows))
    bars = "".join(
        f'<rect class="bar" x="{x0 + i * step - 4:.1f}" y="{height - pad - (height - 2 * pad) * r["orders"] / top:.1f}" width="8" '
        f'height="{max(1, (height - 2 * pad) * r["orders"] / top):.1f}" fill="{RED}"/>' for i, r in enumerate(rows) if r["orders"])
    labels = (f'<text x="{pad}" y="{height - 8}">{escape(rows[0]["at"])}</text>'
              + (f'<text x="{width - pad}" y="{height - 8}" text-anchor="end">{escape(rows[-1]["at"])}</text>' if len(rows) > 1 else ""))
    axes = (f'<line class="axis" x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#9aa5b1"/>'
            f'<line class="axis" x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#9aa5b1"/>'
            f'<text x="{pad + 4}" y="{pad - 4}">{top:,}</text>'
            f'<text x="{width - pad}" y="14" text-anchor="end">responses per bucket</text>')
    legend = (f'<text x="{pad}" y="14" fill="{BLUE}">opens</text><text x="{pad + 60}" y="14" fill="{GREEN}">clicks</text>'
              f'<text x="{pad + 120}" y="14" fill="{RED}">orders</text>')
    return f'<svg role="img" aria-label="timeline" width="{width}" height="{height}" viewBox="0 0 {width} {height}">{legend}{axes}{lines}{bars}{labels}</svg>'


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    head = "".join(f"<th>{escape(c.replace('_', ' '))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{escape(v if isinstance(v := r.get(c), str) else _num(v))}</td>" for c in columns) + "</tr>"
                   for r in rows)
    return f"<div class='scroll'><table><tr>{head}</tr>{body}</table></div>"


def _lift_text(lf: dict[str, Any], f: dict[str, Any]) -> str:
    """The lift, its intervals and the ROI as sentences (docs/reports.md defines each)."""
    if not lf.get("ci95"):
        return ""
    rel_lo, rel_hi = lf["relative_ci95"]
    rev_lo, rev_hi = lf["incremental_revenue_ci95"] or (None, None)
    parts = [f"Absolute lift {lf['absolute'] * 100:+.2f} points (95% interval {lf['ci95'][0] * 100:+.2f} to {lf['ci95'][1] * 100:+.2f}).",
             f"Relative lift {_num(lf['relative'], pct=True)} (95% interval {_num(rel_lo, pct=True)} to "
             f"{'unbounded' if rel_hi is None else _num(rel_hi, pct=True)}).",
             f"Incremental revenue {_num(lf['incremental_revenue'], money=True)} (95% interval {_num(rev_lo, money=True)} to "
             f"{_num(rev_hi, money=True)}).",
             f"Smallest lift these groups detect with 80% power: {lf['minimum_detectable_lift'] * 100:.2f} points."]
    if f.get("roi") is not None and f.get("roi_ci95"):
        parts.append(f"ROI (incremental revenue vs holdout) {_num(f['roi'], pct=True)} (95% interval "
                     f"{_num(f['roi_ci95'][0], pct=True)} to {_num(f['roi_ci95'][1], pct=True)}).")
    if f.get("roi_attributed") is not None:
        parts.append(f"ROI on attributed revenue (credit, not causal): {_num(f['roi_attributed'], pct=True)}.")
    return " ".join(parts)


def _ab_section(ab: dict[str, Any] | None) -> str:
    """The A/B test: each variant against the best, Holm-adjusted, and the decision."""
    if not ab:
        return ""
    rows = [{"variant": v["variant"] + (" (best)" if v["best"] else ""), "contacts": v["contacts"], "converters": v["converters"],
             "rate": _num(v["rate"], pct=True), "p (Holm)": "" if v["best"] else f"{v['p_holm']:.4f}"} for v in ab["variants"]]
    return (f"<h2>A/B test</h2><p class='sub'>{escape(ab['method'])}</p>"
            + _table(rows, ["variant", "contacts", "converters", "rate", "p (Holm)"])
            + f"<p class='verdict'>{escape(ab['decision'])}</p>")


def _steps_section(steps: list[dict[str, Any]]) -> str:
    """The per-step table of a drip or journey ('' for other campaigns)."""
    if not steps:
        return ""
    rows = [{**st, "exit_reasons": "; ".join(f"{n} {why}" for why, n in st["exit_reasons"].items()),
             **({"paths": "; ".join(f"{n} {path}" for path, n in st["paths"].items())} if "paths" in st else {})}
            for st in steps]
    return "<h2>Per step</h2>" + _table(rows, columns_of(steps))


def _winner_section(w: dict[str, Any] | None) -> str:
    """The A/B test share, the winner sent to the rest, and why."""
    if not w:
        return ""
    out = (f"<h2>A/B winner</h2><p class='sub'>test share {w['test_share_pct']:g}%, winner after "
           f"{escape(w['winner_after'])} by {escape(w['winner_by'])}</p>")
    for d in w["decisions"]:
        rows = [{"variant": v["variant"] + (" (winner)" if v["variant"] == d["winner"] else ""), "contacts": v["contacts"],
                 d["metric"]: v["revenue"] if d["metric"] == "revenue" else v["successes"], "per contact": round(v["score"], 4),
                 "p (Holm)": "" if "p_holm" not in v else f"{v['p_holm']:.4f}"} for v in d["variants"]]
        out += (f"<h3>Firing {escape(d['scheduled_for'][:16])}</h3><p class='sub'>{escape(d['method'])}</p>"
                + _table(rows, ["variant", "contacts", d["metric"], "per contact", "p (Holm)"])
                + f"<p class='verdict'>{escape(d['winner'])} sent to {d.get('released', 0):,} more, decided "
                  f"{escape(str(d['decided_at'])[:19])} UTC: {escape(d['reason'])}</p>")
    if w["undecided_firings"]:
        out += f"<p>Waiting for the winner: {escape(', '.join(k[:16] for k in w['undecided_firings']))}</p>"
    return out


def campaign_page(report: dict[str, Any]) -> str:
    """The campaign report as a page a marketer can put in a slide."""
    c, f, r, lf = report["campaign"], report["funnel"], report["rates"], report["lift"]
    cards = [("sent", _num(f["sent"])), ("open rate", _num(r["open_rate"], pct=True)), ("click rate", _num(r["click_rate"], pct=True)),
             ("converted", _num(f["converted"])), ("revenue", _num(f["revenue"], money=True)),
             ("incremental revenue", _num(lf.get("incremental_revenue"), money=True))]
    steps = [("in segment", f["in_segment"]), ("held out", f["held_out"]), ("sent", f["sent"]), ("delivered", f["delivered"]),
             ("opened", f["opened"]), ("clicked", f["clicked"]), ("converted", f["converted"])]
    skipped = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in f["skipped"].items())
    interval = _lift_text(lf, f)
    breakdowns = "".join(f"<h3>By {escape(name.replace('_', ' '))}</h3>" + _table(report[key], ["group", "sent", "opened", "clicked", "converted", "revenue"])
                         for name, key in (("variant", "by_variant"), ("lifecycle stage", "by_lifecycle"), ("RFM segment", "by_rfm_segment"))
                         if report[key])
    return (f"<!doctype html><html lang='en'><head>{_HEAD}<title>Campaign report: {escape(c['name'])}</title>"
            f"<style>{_CSS}</style></head><body><h1>{escape(c['name'])}</h1>"
            f"<p class='sub'>{escape(c['channel'])} campaign · {escape(c['status'])} · attribution window {c['attribution_window_hours']} h"
            + (f" · segment {escape(c['segment'])}: <code>{escape(c.get('segment_definition') or '')}</code>" if c.get("segment") else "")
            + "</p>"
            "<div class='cards'>" + "".join(f"<div class='card'>{escape(k)}<b>{escape(v)}</b></div>" for k, v in cards) + "</div>"
            f"<h2>Funnel</h2>{funnel_svg(steps)}<p class='sub'>Skipped at planning: {escape(skipped)}. Failed {f['failed']:,}, "
            f"unknown {f['unknown']:,}, bounced {f['bounced']:,}, unsubscribed {f['unsubscribed']:,}, complaints {f['complaints']:,}. "
            f"Opens are human opens; {f['opened_machine_only']:,} messages were opened only by machines (privacy proxies).</p>"
            f"<h2>Lift against the holdout</h2>{lift_svg(lf)}<p class='verdict'>{escape(lf['verdict'])}</p><p>{escape(interval)}</p>"
            f"{_ab_section(report.get('ab_test'))}{_winner_section(report.get('ab_winner'))}"
            f"{_steps_section(report.get('steps') or [])}"
            f"<h2>Timeline ({escape(report['timeline']['bucket'])})</h2>{timeline_svg(report['timeline']['rows'])}"
            f"<h2>Breakdowns</h2>{breakdowns or '<p>No messages sent yet.</p>'}</body></html>")


def loyalty_page(report: dict[str, Any]) -> str:
    """The loyalty report as a page."""
    cols = ["period", "customers", "new_customers", "orders", "revenue", "retention_rate", "churn_rate",
            "purchase_frequency", "average_order_value", "repeat_purchase_rate"]
    rows = [{**r, **{k: (None if r[k] is None else round(r[k], 3)) for k in ("retention_rate", "churn_rate", "repeat_purchase_rate")}}
            for r in report["rows"]]
    dist = "".join(f"<h3>{escape(k)}</h3>" + _table(report[k], [next(iter(report[k][0])), "contacts", "share"])
                   for k in ("lifecycle", "rfm", "loyalty") if report[k])
    return (f"<!doctype html><html lang='en'><head>{_HEAD}<title>Loyalty report</title><style>{_CSS}</style></head>"
            f"<body><h1>Loyalty</h1><h2>Per {escape(report['period'])}</h2>{_table(rows, cols)}<h2>Customers today</h2>{dist}</body></html>")
