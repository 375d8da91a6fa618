"""`campaigns retry NAME`: re-queue the messages that failed for a transient reason."""

from __future__ import annotations

import typer

from campaigns.cli.common import get_app, ok, warn
from campaigns.retry import retry_transient


def register(app: typer.Typer) -> None:
    """Attach `retry` to the root app."""
    app.command("retry")(retry)


def retry(ctx: typer.Context, name: str = typer.Argument(..., help="The campaign.")) -> None:
    """Send again the messages that failed for a transient reason (server down, 4xx replies); never bounces."""
    with get_app(ctx).session() as s:
        result = retry_transient(s, name)
    ok(f"campaign {name}: {result.requeued} messages queued again")
    if result.status == "paused" and result.requeued:
        warn(f"campaign {name} is paused ({result.status_reason}); `campaigns resume {name}` sends them")
