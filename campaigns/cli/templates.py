"""`campaigns templates ...`: list, lint, preview and test-send message templates."""

from __future__ import annotations

import asyncio
import email
import json
import secrets
import sys
from email import policy
from typing import Optional

import aiosmtplib
import typer
from rich.markup import escape
from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns import safe_files
from campaigns.cli.common import (
    JsonOpt,
    emit_record,
    emit_rows,
    err_console,
    get_app,
    ok,
    print_json,
    terminal_safe,
)
from campaigns.config import Settings
from campaigns.contacts import find_contact, normalise_email, normalise_phone
from campaigns.db import session_factory
from campaigns.errors import CampaignsError, InputError, NotFoundError
from campaigns.models import Campaign, Contact
from campaigns.rendering import (
    PREVIEW_DELIVERY_ID,
    RenderedEmail,
    RenderedSms,
    render_delivery,
)
from campaigns.templates_store import lint_template, load_template, template_names
from campaigns.timespec import utcnow

app = typer.Typer(help="Message templates: list, lint, render a preview, send a test.", no_args_is_help=True)


@app.command("list")
def list_cmd(ctx: typer.Context, as_json: bool = JsonOpt) -> None:
    """Templates in the templates folder, with their channel and version."""
    settings = get_app(ctx).settings
    rows = []
    for name in template_names(settings):
        try:
            t = load_template(settings, name)
        except (InputError, NotFoundError) as exc:
            rows.append({"name": name, "channel": "?", "subject": "", "text_part": "", "version": "",
                         "problem": str(exc)})
            continue
        rows.append({"name": t.name, "channel": t.channel,
                     "subject": (t.subject or "") if t.channel == "email" else (t.sms_body or "").strip()[:60],
                     "text_part": ("own" if t.text is not None else "derived") if t.channel == "email" else "",
                     "version": t.version_hash[:12], "problem": ""})
    emit_rows(rows, ["name", "channel", "subject", "text_part", "version", "problem"],
              title=f"Templates in {settings.path(settings.templates_dir)}", as_json=as_json)


@app.command("lint")
def lint_cmd(ctx: typer.Context, name: str = typer.Argument(..., help="Template name."), as_json: bool = JsonOpt) -> None:
    """Syntax, variables the context will not have, a missing unsubscribe link. Exit 1 on errors."""
    issues = lint_template(get_app(ctx).settings, name)
    errors = [i for i in issues if i.level == "error"]
    if as_json:
        print_json([{"level": i.level, "message": i.message} for i in issues])
    else:
        for i in issues:
            colour = "red" if i.level == "error" else "yellow"
            err_console.print(f"[{colour}]{i.level}:[/{colour}] {escape(terminal_safe(i.message))}", soft_wrap=True,
                              markup=True,
                              highlight=False)
        if not issues:
            ok(f"{name}: no problems found")
    if errors:
        raise typer.Exit(1)


def _contact_and_campaign(session: Session, ref: str | None, campaign: str | None,
                          settings: Settings) -> tuple[Contact, Campaign | None]:
    contact = find_contact(session, ref, settings) if ref else Contact(id=0, name="Test Recipient", attributes={}, tags=[])
    camp = None
    if campaign:
        camp = session.scalar(select(Campaign).where(Campaign.name == campaign))
        if camp is None:
            raise NotFoundError(f"no campaign '{campaign}'")
    return contact, camp


@app.command("render")
def render_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Template name."),
    contact: str = typer.Option(..., "--contact", help="The contact: email, external_id, +phone or #id."),
    campaign: Optional[str] = typer.Option(None, "--campaign", help="Render as this campaign would (UTM tags)."),  # noqa: UP045
    decoded: bool = typer.Option(False, "--decoded", help="Show the parts decoded instead of the raw message."),
    as_json: bool = JsonOpt,
) -> None:
    """Show the exact message a contact would get. A dry run: no coupon is taken, nothing is saved."""
    a = get_app(ctx)
    tmpl = load_template(a.settings, name)
    with session_factory(a.ready_engine())() as session:
        try:
            person, camp = _contact_and_campaign(session, contact, campaign, a.settings)
            out = render_delivery(session, a.settings, tmpl, contact=person, delivery_id=PREVIEW_DELIVERY_ID,
                                  campaign=camp)
        finally:
            session.rollback()  # a preview leaves no trace
    if isinstance(out, RenderedEmail):
        if as_json:
            emit_record({"to": out.to, "mail_from": out.mail_from, "subject": out.subject,
                         "message_id": out.message_id, "message": out.data.decode("ascii")}, as_json=True)
        elif decoded:
            msg = email.message_from_bytes(out.data, policy=policy.default)
            for key, value in msg.items():
                sys.stdout.write(f"{key}: {value}\n")
            for part in msg.walk():
                if not part.is_multipart():
                    sys.stdout.write(f"\n----- {part.get_content_type()} -----\n{part.get_content().rstrip()}\n")
        else:
            sys.stdout.write(out.data.decode("ascii").replace("\r\n", "\n"))
        return
    record = {"to": out.to, "encoding": out.encoding, "segments": out.segments, "body": out.body}
    if as_json:
        emit_record(record, as_json=True)
    else:
        sys.stdout.write(out.body + "\n")
        err_console.print(f"{out.encoding}, {len(out.body)} characters, {out.segments} segment(s)")


def _deliver_test(settings: Settings, name: str, out: RenderedEmail | RenderedSms) -> str:
    """Hand a test message to the configured transport; returns where it went."""
    stamp = utcnow().strftime("%Y%m%dT%H%M%S")
    outbox = settings.path(settings.sending.outbox_dir)
    if isinstance(out, RenderedSms):
        if settings.sms.provider != "file":
            raise InputError("send-test for SMS writes to the outbox only: set [sms] provider = \"file\" "
                             "(real SMS go out through campaigns)")
        safe_files.private_dir(outbox)
        path = outbox / f"test-{name}-{stamp}-{secrets.token_hex(3)}.sms"
        safe_files.write_new_private(path, (json.dumps({"to": out.to, "body": out.body, "encoding": out.encoding,
                                                        "segments": out.segments}, ensure_ascii=False) + "\n").encode())
        return str(path)
    if settings.sending.transport == "file":
        safe_files.private_dir(outbox)
        path = outbox / f"test-{name}-{stamp}-{secrets.token_hex(3)}.eml"
        safe_files.write_new_private(path, out.data)
        return str(path)
    smtp = settings.smtp
    try:
        asyncio.run(aiosmtplib.send(
            out.data, sender=out.mail_from, recipients=[out.to], hostname=smtp.host, port=smtp.port,
            username=smtp.username or None, password=smtp.password.get_secret_value() or None,
            use_tls=smtp.security == "tls", start_tls=smtp.security == "starttls",
            timeout=smtp.timeout_seconds))
    except (aiosmtplib.SMTPException, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CampaignsError(f"could not send through SMTP {smtp.host}:{smtp.port}: {reason}") from None
    return f"SMTP {smtp.host}:{smtp.port}"


@app.command("send-test")
def send_test_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Template name."),
    to: str = typer.Option(..., "--to", help="Where to send the test: an email address, or +phone for SMS."),
    contact: Optional[str] = typer.Option(None, "--contact", help="Fill the template with this contact's data."),  # noqa: UP045
    campaign: Optional[str] = typer.Option(None, "--campaign", help="Render as this campaign would."),  # noqa: UP045
) -> None:
    """Send one test message through the configured transport (no coupon is used up)."""
    a = get_app(ctx)
    tmpl = load_template(a.settings, name)
    with session_factory(a.ready_engine())() as session:
        try:
            if contact:
                person, camp = _contact_and_campaign(session, contact, campaign, a.settings)
            else:
                person, camp = _contact_and_campaign(session, None, campaign, a.settings)
            # The test goes to --to, whoever's data fills the template; the stored contact is untouched.
            recipient = Contact(id=person.id or 0, name=person.name, attributes=dict(person.attributes or {}),
                                tags=list(person.tags or []), external_id=person.external_id,
                                timezone=person.timezone, locale=person.locale, email=person.email,
                                phone=person.phone)
            if tmpl.channel == "sms":
                recipient.phone = normalise_phone(to, a.settings.default_region)
            else:
                recipient.email = normalise_email(to)
            out = render_delivery(session, a.settings, tmpl, contact=recipient,
                                  delivery_id=PREVIEW_DELIVERY_ID, campaign=camp)
        finally:
            session.rollback()
    where = _deliver_test(a.settings, name, out)
    ok(f"test of '{name}' sent to {to} ({where})")
