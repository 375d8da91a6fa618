"""`campaigns track serve|event`, `campaigns events [list|import]`, `campaigns bounces import`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from typer import _click as click
from typer.core import TyperGroup

from campaigns.cli.common import (
    CsvOpt,
    EncodingOpt,
    ForceRejectsOpt,
    JsonOpt,
    SkipInvalidOpt,
    count_of,
    emit_record,
    emit_rows,
    file_progress,
    get_app,
    import_hints,
    ok,
    rows_of,
    warn,
)
from campaigns.errors import InputError
from campaigns.timespec import utcnow


class ListByDefault(TyperGroup):
    """`campaigns events TARGET` still lists (the command before `events import` existed):
    a first word that is no subcommand is read as `list`'s argument."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        """`events X ...` -> `events list X ...` when X is not a subcommand."""
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["list", *args]
        return super().resolve_command(ctx, args)


track_app = typer.Typer(help="The tracking endpoints (opens, clicks, unsubscribes, webhooks); record a custom event.",
                        no_args_is_help=True)
bounces_app = typer.Typer(help="Bounce and complaint reports.", no_args_is_help=True)
events_app = typer.Typer(cls=ListByDefault, no_args_is_help=True,
                         help="Responses of a campaign or a contact (list), and custom events (import).")


def register(app: typer.Typer) -> None:
    """Attach `track`, `events` and `bounces` to the root app."""
    app.add_typer(track_app, name="track")
    app.add_typer(bounces_app, name="bounces")
    app.add_typer(events_app, name="events")


def _props(pairs: list[str]) -> dict[str, Any]:
    """--prop k=v ... -> {k: v}; numbers stay numbers, true/false booleans."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--prop: '{pair}' is not KEY=VALUE")
        v: Any = value
        if value in ("true", "false"):
            v = value == "true"
        else:
            try:
                v = int(value) if value.lstrip("-").isdigit() else float(value) if value.replace(".", "", 1).lstrip("-").isdigit() else value
            except ValueError:
                v = value
        out[key.strip()] = v
    return out


@track_app.command("event")
def track_event(
    ctx: typer.Context,
    contact: str = typer.Argument(..., help="The contact: email, external_id, +phone or #id."),
    name: str = typer.Argument(..., help="The event's name, e.g. cart_abandoned."),
    prop: list[str] = typer.Option([], "--prop", help="A property KEY=VALUE (repeatable)."),
    at: str | None = typer.Option(None, "--at", help="When it happened (default: now)."),
    event_id: str | None = typer.Option(None, "--id", help="Your id for it: the same id twice records once."),
    as_json: bool = JsonOpt,
) -> None:
    """Record a custom event a contact did (triggers and segments read it)."""
    from campaigns.audience.custom_events import track

    a = get_app(ctx)
    with a.session() as s:
        eid, created = track(s, a.settings, contact, name, _props(prop), at, event_id)
    if as_json:
        emit_record({"id": eid, "created": created}, as_json=True)
    else:
        ok(f"event {name} recorded (#{eid})" if created else f"event {name} already recorded (#{eid}); nothing changed")


@events_app.command("import")
def events_import(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="CSV or JSON lines: contact|email|external_id|phone, name, occurred_at, properties, id."),
    skip_invalid: bool = SkipInvalidOpt,
    force: bool = ForceRejectsOpt,
    encoding: str = EncodingOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Import custom events (idempotent by id): all rows or none, unless --skip-invalid."""
    from campaigns.audience.custom_events import import_events

    a = get_app(ctx)
    with a.session() as s, file_progress(file, "importing events") as progress, import_hints(file):
        result = import_events(s, a.settings, file, encoding=encoding, skip_invalid=skip_invalid, force=force, progress=progress)
    summary = {"rows": result.rows, "created": result.created, "unchanged": result.unchanged, "rejected": result.rejected,
               "rejects_file": str(result.rejects_path) if result.rejects_path else None}
    if as_json:
        emit_record(summary, as_json=True)
        return
    ok(f"{file}: {rows_of(result.rows)}: {result.created:,} created, {result.unchanged:,} already recorded")
    if result.rejected:
        warn(f"{rows_of(result.rejected)} rejected; see {result.rejects_path}")


@track_app.command("serve")
def serve(ctx: typer.Context) -> None:
    """Serve the tracking app alone on [tracking] host:port (the daemon also serves it)."""
    from campaigns.tracking.guard import startup_warnings
    from campaigns.tracking.server import serve as serve_app
    from scheduler.daemon import run_until_signalled

    a = get_app(ctx)
    a.ready_engine()
    for line in startup_warnings(a.settings, sending=False):  # http links under smtp; /sms/inbound off
        warn(line)
    ok(f"tracking on http://{a.settings.tracking.host}:{a.settings.tracking.port} (links point at {a.settings.tracking.public_url})")
    run_until_signalled(lambda stop: serve_app(a.settings, stop))


@events_app.command("list")
def events(ctx: typer.Context, target: str = typer.Argument(..., help="A campaign name, or a contact (email, external_id, #id)."),
           type: str | None = typer.Option(None, "--type", help="Only this event type (open, click, ...)."),
           limit: int = typer.Option(200, "--limit", min=1, max=1_000_000), as_json: bool = JsonOpt, as_csv: bool = CsvOpt) -> None:
    """Every recorded response of a campaign or a contact, newest first."""
    from campaigns.tracking.events import listing as responses_listing

    a = get_app(ctx)
    with a.session(write=False) as s:
        rows = responses_listing(s, target, type, limit)
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
        ok(f"{path}: {count_of(counts['messages'], 'message')}: {count_of(counts['bounces'], 'hard bounce')}, "
           f"{count_of(counts['complaints'], 'complaint')}, {count_of(counts['unsubscribes'], 'unsubscribe')}, "
           f"{counts['already_recorded']:,} already recorded (nothing changed), "
           f"{counts['unmatched']:,} unmatched (nothing changed), {count_of(counts['ignored'], 'not a report', 'not reports')}, "
           f"{counts['skipped']:,} skipped (unreadable or over the size cap)")
