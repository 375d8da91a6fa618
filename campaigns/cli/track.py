"""`campaigns track serve`, `campaigns events`, `campaigns bounces import`."""

from __future__ import annotations

from pathlib import Path

import typer
from sqlalchemy import select

from campaigns.audience.contacts import find_contact
from campaigns.cli.common import (
    CsvOpt,
    JsonOpt,
    emit_record,
    emit_rows,
    get_app,
    ok,
    warn,
)
from campaigns.errors import NotFoundError
from campaigns.store.models import Campaign, Contact, Event
from campaigns.timespec import utcnow

track_app = typer.Typer(help="The tracking endpoints (opens, clicks, unsubscribes, webhooks).", no_args_is_help=True)
bounces_app = typer.Typer(help="Bounce and complaint reports.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Attach `track`, `events` and `bounces` to the root app."""
    app.add_typer(track_app, name="track")
    app.add_typer(bounces_app, name="bounces")
    app.command("events")(events)


@track_app.command("serve")
def serve(ctx: typer.Context) -> None:
    """Serve the tracking app alone on [tracking] host:port (the daemon also serves it)."""
    from campaigns.tracking.guard import inbound_sms_off_reason
    from campaigns.tracking.server import serve as serve_app
    from scheduler.daemon import run_until_signalled

    a = get_app(ctx)
    a.ready_engine()
    off = inbound_sms_off_reason(a.settings)
    if off:
        warn(off)
    ok(f"tracking on http://{a.settings.tracking.host}:{a.settings.tracking.port} (links point at {a.settings.tracking.public_url})")
    run_until_signalled(lambda stop: serve_app(a.settings, stop))


def events(ctx: typer.Context, target: str = typer.Argument(..., help="A campaign name, or a contact (email, external_id, #id)."),
           type: str | None = typer.Option(None, "--type", help="Only this event type (open, click, ...)."),
           limit: int = typer.Option(200, "--limit", min=1), as_json: bool = JsonOpt, as_csv: bool = CsvOpt) -> None:
    """Every recorded response of a campaign or a contact, newest first."""
    a = get_app(ctx)
    with a.session(write=False) as s:
        campaign = s.scalar(select(Campaign).where(Campaign.name == target))
        q = select(Event, Campaign.name, Contact.email).outerjoin(Campaign, Campaign.id == Event.campaign_id) \
            .outerjoin(Contact, Contact.id == Event.contact_id)
        if campaign is not None:
            q = q.where(Event.campaign_id == campaign.id)
        else:
            try:
                q = q.where(Event.contact_id == find_contact(s, target).id)
            except NotFoundError:
                raise NotFoundError(f"no campaign or contact '{target}'") from None
        if type:
            q = q.where(Event.type == type)
        rows = [{"at": e.occurred_at, "type": e.type, "campaign": name, "contact": email or f"#{e.contact_id}",
                 "delivery": e.delivery_id, "url": e.url, "machine": e.is_machine, "user_agent": e.user_agent}
                for e, name, email in s.execute(q.order_by(Event.occurred_at.desc(), Event.id.desc()).limit(limit))]
    columns = ["at", "type", "campaign", "contact", "delivery", "url", "machine"]
    if as_json or as_csv:  # the user agent is evidence for scripts, noise on a terminal
        columns.append("user_agent")
    else:
        for row in rows:
            row["machine"] = "machine" if row["machine"] else ""
    emit_rows(rows, columns, title=f"Events of {target}", as_json=as_json, as_csv=as_csv)


@bounces_app.command("import")
def bounces_import(ctx: typer.Context, path: Path = typer.Argument(..., help="A Maildir folder, an mbox file or one .eml."),
                   as_json: bool = JsonOpt) -> None:
    """Read bounce reports, complaints and unsubscribe mails; only those naming a message we sent act."""
    from campaigns.tracking.mailbox_import import import_mailbox

    a = get_app(ctx)
    with a.session() as s:
        counts = import_mailbox(s, a.settings, path, utcnow())
    if as_json:
        emit_record(counts, as_json=True)
    else:
        ok(f"{path}: {counts['messages']} messages: {counts['bounces']} hard bounces, {counts['complaints']} complaints, "
           f"{counts['unsubscribes']} unsubscribes, {counts['unmatched']} unmatched (nothing changed), "
           f"{counts['ignored']} not reports, {counts['skipped']} skipped (unreadable or over the size cap)")
