"""`campaigns contacts ...`: import, add, list, show, erase."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from campaigns.audience import consent as ledger
from campaigns.audience import purchases
from campaigns.audience.contacts import (
    add_contact,
    edit_contact,
    erase_contact,
    export_contacts,
    find_contact,
    import_contacts,
    list_contacts,
    retag_contact,
)
from campaigns.audience.suppression import is_suppressed
from campaigns.cli.common import (
    Channel,
    CsvOpt,
    EncodingOpt,
    ForceRejectsOpt,
    JsonOpt,
    SkipInvalidOpt,
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
from campaigns.store.models import Contact

app = typer.Typer(help="Import, add, edit, tag, list, show, export and erase contacts.", no_args_is_help=True)


def contact_record(contact: Contact) -> dict[str, Any]:
    """The plain fields of a contact, for tables and JSON."""
    return {
        "id": contact.id, "external_id": contact.external_id, "email": contact.email, "phone": contact.phone,
        "name": contact.name, "timezone": contact.timezone, "locale": contact.locale,
        "tags": contact.tags or [], "attributes": contact.attributes or {},
        "created_at": contact.created_at, "updated_at": contact.updated_at, "erased_at": contact.erased_at,
    }


@app.command("import")
def import_cmd(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="CSV with a header: email, phone, name, timezone, locale, external_id, tags, "
                                          "consent_email, consent_sms; other columns become attributes."),
    consent: list[Channel] = typer.Option([], "--consent", help="Record consent on this channel for every row (repeatable)."),
    source: str | None = typer.Option(None, "--source", help="Where the consent came from (required with --consent)."),
    consent_text: str | None = typer.Option(None, "--consent-text", help="The consent wording or its version."),
    skip_invalid: bool = SkipInvalidOpt,
    force: bool = ForceRejectsOpt,
    encoding: str = EncodingOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Import (upsert) contacts from a CSV: all rows or none, unless --skip-invalid."""
    a = get_app(ctx)
    with a.session() as session, file_progress(file, "importing contacts") as progress, import_hints(file):
        result = import_contacts(
            session, a.settings, file, encoding=encoding, consent_channels=[c.value for c in consent],
            source=source, consent_text=consent_text, skip_invalid=skip_invalid, progress=progress, force=force,
        )
    summary = {
        "rows": result.rows, "created": result.created, "updated": result.updated,
        "unchanged": result.unchanged, "rejected": result.rejected, "consent_events": result.consent_events,
        "confirmation_requests": result.consent_requests,
        "rejects_file": str(result.rejects_path) if result.rejects_path else None,
    }
    if as_json:
        emit_record(summary, as_json=True)
        return
    ok(f"{file}: {rows_of(result.rows)}: {result.created:,} created, {result.updated:,} updated, "
       f"{result.unchanged:,} unchanged, {result.consent_events:,} consent events recorded")
    if result.consent_requests:
        ok(f"double opt-in: {result.consent_requests:,} pending, {result.consent_requests:,} confirmation requests queued "
           "(the daemon sends them in each recipient's allowed hours; consent counts once confirmed)")
    if result.rejected:
        warn(f"{rows_of(result.rejected)} rejected; see {result.rejects_path}")


@app.command("add")
def add_cmd(
    ctx: typer.Context,
    email: str | None = typer.Option(None, "--email"),
    phone: str | None = typer.Option(None, "--phone"),
    name: str | None = typer.Option(None, "--name"),
    timezone: str | None = typer.Option(None, "--timezone"),
    locale: str | None = typer.Option(None, "--locale"),
    external_id: str | None = typer.Option(None, "--external-id"),
    attr: list[str] = typer.Option([], "--attr", help="An attribute as KEY=VALUE (repeatable)."),
    tag: list[str] = typer.Option([], "--tag", help="A tag (repeatable)."),
    consent: list[Channel] = typer.Option([], "--consent", help="Grant consent on this channel (repeatable)."),
    source: str | None = typer.Option(None, "--source", help="Where the consent came from."),
    as_json: bool = JsonOpt,
) -> None:
    """Add one contact."""
    a = get_app(ctx)
    values: dict[str, str] = {
        k: v for k, v in {"email": email, "phone": phone, "name": name, "timezone": timezone,
                          "locale": locale, "external_id": external_id}.items() if v is not None
    }
    for item in attr:
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or not key:
            raise InputError(f"--attr: '{item}' is not KEY=VALUE")
        if key in values or key in ("tags", "consent_email", "consent_sms"):
            raise InputError(f"--attr: '{key}' is a contact field; use --{key.replace('_', '-')}")
        values[key] = value
    if tag:
        values["tags"] = ";".join(tag)
    if consent and not source:
        raise InputError("--source: say where this consent came from (e.g. 'phone call')")
    with a.session() as session:
        contact = add_contact(session, a.settings, values)
        pending = []
        for wanted in consent:
            _event, token = ledger.grant(session, a.settings, contact, wanted.value, source or "")
            if token is not None:
                pending.append(wanted.value)
        record = contact_record(contact)
    if pending:
        record["confirmation_requests"] = pending
    if as_json:
        emit_record(record, as_json=True)
    else:
        ok(f"added contact #{record['id']} {record['email'] or record['phone']}")
        for channel in pending:
            ok(f"{channel} consent pending: a confirmation request is queued (consent counts once confirmed)")


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    search: str | None = typer.Option(None, "--search", "-s", help="Match email, name or external_id."),
    limit: int = typer.Option(50, "--limit", min=1, max=100000),
    offset: int = typer.Option(0, "--offset", min=0, max=1_000_000_000),
    as_json: bool = JsonOpt,
    as_csv: bool = CsvOpt,
) -> None:
    """List contacts (erased ones are hidden)."""
    a = get_app(ctx)
    with a.session() as session:
        total, page = list_contacts(session, search, limit, offset)
        rows = [contact_record(c) for c in page]
    columns = ["id", "external_id", "email", "phone", "name", "timezone", "locale", "tags", "attributes"]
    emit_rows(rows, columns, title="Contacts", caption=f"{len(rows)} of {total} shown (offset {offset})",
              as_json=as_json, as_csv=as_csv, drop_first=["external_id", "attributes", "locale"])


@app.command("show")
def show_cmd(ctx: typer.Context, contact: str = typer.Argument(..., help="Email, external_id, +phone or #id."), as_json: bool = JsonOpt) -> None:
    """One contact: fields, consent per channel, suppression, purchases."""
    a = get_app(ctx)
    with a.session() as session:
        c = find_contact(session, contact)
        record = contact_record(c)
        for channel in ("email", "sms"):
            state = ledger.current_state(session, c.id, channel)
            record[f"consent_{channel}"] = (state.action or "none") + (" (confirmation pending)" if state.pending else "")
            address = c.email if channel == "email" else c.phone
            record[f"suppressed_{channel}"] = address is not None and is_suppressed(session, a.settings, channel, address)
        count, total = purchases.totals(session, c.id)
        record["purchases"] = count
        record["purchases_total"] = round(total / 100, 2)
    emit_record(record, title=f"Contact #{record['id']}", as_json=as_json)


@app.command("erase")
def erase_cmd(
    ctx: typer.Context,
    contact: str = typer.Argument(..., help="Email, external_id, +phone or #id."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Erase a contact's personal data; their addresses stay suppressed (as keyed hashes)."""
    a = get_app(ctx)
    with a.session() as session:
        c = find_contact(session, contact)
        label = f"#{c.id} {c.email or c.phone}"
        if not yes and not typer.confirm(f"Erase contact {label}? This cannot be undone"):
            raise typer.Abort()
        changed = erase_contact(session, a.settings, c)
    ok(f"erased contact {label}; its addresses stay suppressed")
    if changed:
        warn(f"{', '.join(changed)}: the filter quoted the address, which is now \"(erased)\" (it matches nobody)")


@app.command("edit")
def edit_cmd(
    ctx: typer.Context,
    contact: str = typer.Argument(..., help="Email, external_id, +phone or #id."),
    email: str | None = typer.Option(None, "--email"),
    phone: str | None = typer.Option(None, "--phone"),
    name: str | None = typer.Option(None, "--name"),
    timezone: str | None = typer.Option(None, "--timezone"),
    locale: str | None = typer.Option(None, "--locale"),
    external_id: str | None = typer.Option(None, "--external-id"),
    attr: list[str] = typer.Option([], "--attr", help="Set an attribute as KEY=VALUE (repeatable)."),
    unset_attr: list[str] = typer.Option([], "--unset-attr", help="Remove an attribute (repeatable)."),
    as_json: bool = JsonOpt,
) -> None:
    """Change a contact's fields or attributes (consent changes go through `campaigns consent`)."""
    a = get_app(ctx)
    values = {k: v for k, v in {"email": email, "phone": phone, "name": name, "timezone": timezone,
                                "locale": locale, "external_id": external_id}.items() if v is not None}
    for item in attr:
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or not key:
            raise InputError(f"--attr: '{item}' is not KEY=VALUE")
        if key in ("email", "phone", "name", "timezone", "locale", "external_id", "tags", "consent_email", "consent_sms"):
            raise InputError(f"--attr: '{key}' is a contact field; use --{key.replace('_', '-')}")
        values[key] = value
    with a.session() as session:
        c = find_contact(session, contact, a.settings)
        changed = edit_contact(session, a.settings, c, values, [k.strip().lower() for k in unset_attr])
        record = contact_record(c)
    if as_json:
        emit_record(record, as_json=True)
    else:
        ok(f"contact #{record['id']} {'updated' if changed else 'unchanged'}")


@app.command("tag")
def tag_cmd(ctx: typer.Context, contact: str = typer.Argument(..., help="Email, external_id, +phone or #id."),
            tags: list[str] = typer.Argument(..., metavar="TAG...", help="Tags to add.")) -> None:
    """Add tags to a contact."""
    _retag(ctx, contact, add=tags, remove=[])


@app.command("untag")
def untag_cmd(ctx: typer.Context, contact: str = typer.Argument(..., help="Email, external_id, +phone or #id."),
              tags: list[str] = typer.Argument(..., metavar="TAG...", help="Tags to remove.")) -> None:
    """Remove tags from a contact."""
    _retag(ctx, contact, add=[], remove=tags)


def _retag(ctx: typer.Context, contact: str, add: list[str], remove: list[str]) -> None:
    """tag and untag: one change to a contact's tags, then the tags it now has."""
    a = get_app(ctx)
    with a.session() as session:
        c = find_contact(session, contact, a.settings)
        now = retag_contact(c, add, remove)
        label = c.email or c.phone or f"#{c.id}"
    ok(f"{label} tags: {', '.join(now) or 'none'}")


@app.command("export")
def export_cmd(ctx: typer.Context, file: str = typer.Argument(..., help="Where to write the CSV; - for standard output."),
               tag: str | None = typer.Option(None, "--tag", help="Only contacts with this tag."),
               force: bool = typer.Option(False, "--force", help="Replace FILE if it exists.")) -> None:
    """Write contacts as a CSV that `contacts import` reads back (consent stays in the ledger)."""
    import os
    import sys

    from campaigns import safe_files

    a = get_app(ctx)
    with a.session(write=False) as session:
        if file == "-":
            export_contacts(session, sys.stdout, tag)
            return
        target = Path(file)
        safe_files.check_replace(target, force)
        # a private temp file beside it, renamed in: never half-written, never through a planted symlink
        out, tmp = safe_files.open_temp_beside(target)
        try:
            with out:
                count = export_contacts(session, out, tag)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    ok(f"wrote {count} contacts to {target}")
