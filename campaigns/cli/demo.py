"""`campaigns demo`: the whole product in one command."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from campaigns.cli.common import console, ok


def register(app: typer.Typer) -> None:
    """Attach `demo` to the root app."""
    app.command("demo")(demo)


def demo(dir: Path = typer.Option(Path("demo"), "--dir", help="A new or empty folder for the demo shop."),
         contacts: int = typer.Option(2000, "--contacts", min=50, max=200_000, help="How many contacts to generate."),
         seed: int = typer.Option(1, "--seed", help="Random seed (same seed, same shop)."),
         force: bool = typer.Option(False, "--force", help="Empty the folder first if it is not empty.")) -> None:
    """Generate a shop, run three campaigns, a post-purchase and an at_risk win-back journey on an accelerated clock, simulate responses, print the reports."""
    from campaigns.campaign_defs import get_campaign
    from campaigns.cli.common import emit_rows, money, points
    from campaigns.cli.report import _print_campaign
    from campaigns.config import load_settings
    from campaigns.context import App
    from campaigns.demo.run import Scheduler, prepare, run_demo
    from campaigns.reports.campaign import campaign_report, overview
    from campaigns.reports.html import campaign_page
    from scheduler.dispatcher import Dispatcher
    from scheduler.jobs import tick

    prepare(dir, force)
    parts = Scheduler(tick=tick, dispatcher=lambda a: Dispatcher(a, worker_name="demo"))
    result = run_demo(dir, parts, contacts, seed, say=lambda line: console.print(f"[dim]·[/dim] {line}"))
    app = App(load_settings(dir / "config.toml", environ={}))
    with app.session() as s:
        rows = overview(s, app.settings)
        winback = campaign_report(s, app.settings, get_campaign(s, "winback"))
    cur = app.settings.currency
    emit_rows([{**r, "revenue": money(r["revenue"], cur), "lift": points(r["lift"])} for r in rows],
              ["campaign", "channel", "status", "sent", "opened", "clicked", "converted", "revenue", "lift", "verdict"],
              title="All campaigns", drop_first=["channel", "opened", "clicked", "status"])
    _print_campaign(winback, cur)
    html = dir / "report-winback.html"
    html.write_text(campaign_page(winback), encoding="utf-8")
    app.engine.dispose()
    ok(f"demo finished in {result.seconds:.1f} s; HTML report: {html}")
    # One line however narrow the terminal: a command wrapped before `&&` would not paste.
    console.print(f"Try: [bold]cd {escape(str(dir))} && campaigns report winback && campaigns events winback --limit 10 && "
                  "campaigns customers lifecycle && campaigns status[/bold]", soft_wrap=True)
