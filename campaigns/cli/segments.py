"""`campaigns segments ...`: create, list, show, count and delete named filters."""

from __future__ import annotations

from datetime import datetime

import typer
from rich.markup import escape

from campaigns.cli.common import CsvOpt, JsonOpt, console, emit_record, emit_rows, get_app, ok
from campaigns.segments import (
    count_segment,
    create_segment,
    delete_segment,
    get_segment,
    list_segments,
    sample_segment,
    segment_usage,
)
from campaigns.timespec import parse_datetime

app = typer.Typer(help="Segments: named filters over contacts, consent and purchases (see docs/segments.md).",
                  no_args_is_help=True)

AtOpt = typer.Option(None, "--at", help="Evaluate as of this date (2026-01-31 or 30d ago); default now.")


def _at(value: str | None, tz: str) -> datetime | None:
    return parse_datetime(value, tz, "--at") if value else None


@app.command("create")
def create_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="A short name: letters, digits, '_', '-', '.'."),
    where: str = typer.Option(..., "--where", help='The filter, e.g. \'lifecycle = "at_risk" and rfm.m >= 4\'.'),
    description: str | None = typer.Option(None, "--description"),
    as_json: bool = JsonOpt,
) -> None:
    """Create a segment; the filter is checked now, and evaluated each time it is used."""
    a = get_app(ctx)
    with a.session() as session:
        seg = create_segment(session, a.settings, name, where, description)
        count = count_segment(session, seg, a.settings)
    if as_json:
        emit_record({"name": seg.name, "definition": seg.definition, "count": count}, as_json=True)
        return
    ok(f"segment '{seg.name}' created: {count} contacts match now")


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    counts: bool = typer.Option(False, "--counts", help="Also count each segment's members (slower)."),
    as_json: bool = JsonOpt,
    as_csv: bool = CsvOpt,
) -> None:
    """All segments."""
    a = get_app(ctx)
    with a.session() as session:
        rows = [{"name": s.name, "definition": s.definition, "description": s.description,
                 "count": count_segment(session, s, a.settings) if counts else None,
                 "updated_at": s.updated_at} for s in list_segments(session)]
    columns = ["name", "definition", "description"] + (["count"] if counts else []) + ["updated_at"]
    emit_rows(rows, columns, title="Segments", as_json=as_json, as_csv=as_csv)


@app.command("show")
def show_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    sample: int = typer.Option(10, "--sample", min=0, max=1000, help="How many members to show."),
    at: str | None = AtOpt,
    as_json: bool = JsonOpt,
) -> None:
    """A segment's definition, how many match now, who uses it, and a sample of members."""
    a = get_app(ctx)
    when = _at(at, a.settings.timezone)
    with a.session() as session:
        seg = get_segment(session, name)
        count = count_segment(session, seg, a.settings, when)
        members = sample_segment(session, seg, a.settings, sample, when) if sample else []
        usage = segment_usage(session, seg)
    record = {"name": seg.name, "definition": seg.definition, "description": seg.description, "count": count,
              "used_by_campaigns": usage.campaigns, "used_by_segments": usage.segments,
              "created_at": seg.created_at, "updated_at": seg.updated_at}
    sample_rows = [{"id": c.id, "email": c.email, "phone": c.phone, "name": c.name} for c in members]
    if as_json:
        emit_record({**record, "sample": sample_rows}, as_json=True)
        return
    emit_record(record, title=f"Segment {seg.name}")
    if sample_rows:
        emit_rows(sample_rows, ["id", "email", "phone", "name"], title=f"Sample ({len(sample_rows)} of {count})")


@app.command("count")
def count_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    at: str | None = AtOpt,
    as_json: bool = JsonOpt,
) -> None:
    """How many contacts are in the segment now (or --at a date)."""
    a = get_app(ctx)
    with a.session() as session:
        count = count_segment(session, name, a.settings, _at(at, a.settings.timezone))
    if as_json:
        emit_record({"name": name, "count": count}, as_json=True)
        return
    typer.echo(str(count))


@app.command("delete")
def delete_cmd(ctx: typer.Context, name: str = typer.Argument(...)) -> None:
    """Delete a segment (refused while a campaign or another segment uses it)."""
    a = get_app(ctx)
    with a.session() as session:
        delete_segment(session, name)
    ok(f"segment '{name}' deleted")


@app.command("edit")
def edit_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    where: str = typer.Option(..., "--where", help="The new filter (checked now, like create)."),
    description: str | None = typer.Option(None, "--description"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only show who would join and leave."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    sample: int = typer.Option(10, "--sample", min=0, max=1000, help="How many joiners and leavers to list."),
    as_json: bool = JsonOpt,
) -> None:
    """Change a segment's filter, after a preview of who joins and who leaves it.

    Campaigns using the segment see the change at their next firing.
    """
    from campaigns.segments.service import edit_definition
    from campaigns.timespec import utcnow

    a = get_app(ctx)
    with a.session() as session:
        seg = get_segment(session, name)
        preview = edit_definition(session, a.settings, seg, where, sample)
        before, after, joins, leaves = (preview[k] for k in ("before", "after", "joins", "leaves"))
        shown_joins, shown_leaves = preview["sample_joins"], preview["sample_leaves"]
        usage_campaigns = preview["used_by_campaigns"]
        if as_json:
            emit_record(preview, as_json=True)
        else:
            console.print(f"Segment {escape(seg.name)}: {before:,} -> {after:,} contacts "
                          f"({joins:,} join, {leaves:,} leave)", soft_wrap=True)
            if joins:
                console.print("  join:  " + escape(", ".join(shown_joins)) + (" ..." if joins > sample else ""), soft_wrap=True)
            if leaves:
                console.print("  leave: " + escape(", ".join(shown_leaves)) + (" ..." if leaves > sample else ""), soft_wrap=True)
            if usage_campaigns:
                console.print("  used by: " + escape(", ".join(usage_campaigns)) + " (they see the change at their next firing)",
                              soft_wrap=True)
        if dry_run or (not yes and not as_json and not typer.confirm("Apply this change?")) or (as_json and not yes):
            session.rollback()
            if not as_json:
                console.print("Nothing changed." + ("" if dry_run else " (pass --yes to apply without asking)"))
            return
        if description is not None:
            seg.description = description
        seg.updated_at = utcnow()
    ok(f"segment '{name}' updated: {after:,} contacts match now")
