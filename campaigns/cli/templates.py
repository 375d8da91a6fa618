"""`campaigns templates ...`: list, lint, preview and test-send message templates."""

from __future__ import annotations

import asyncio
import email
import json
import secrets
import sys
from email import policy
from typing import Optional

import typer
from rich.markup import escape
from sqlalchemy.orm import Session

from campaigns import safe_files
from campaigns.audience.contacts import find_contact, normalise_email, normalise_phone
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
from campaigns.errors import CampaignsError, InputError, NotFoundError
from campaigns.messages.rendering import (
    PREVIEW_DELIVERY_ID,
    RenderedEmail,
    RenderedSms,
    render_delivery,
)
from campaigns.messages.templates_store import (
    MessageTemplate,
    lint_template,
    load_template,
    template_names,
)
from campaigns.store.db import session_factory
from campaigns.store.models import Campaign, Contact
from campaigns.timespec import utcnow
from scheduler.channels import Channel, OutgoingEmail, SendResult
from scheduler.transport import email_channel

app = typer.Typer(help="Message templates: list, lint, check, render a preview, send a test.", no_args_is_help=True)


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
                     "subject": sample_subject(settings, t),
                     "text_part": ("own" if t.text is not None else "derived") if t.channel == "email" else "",
                     "version": t.version_hash[:12], "problem": ""})
    emit_rows(rows, ["name", "channel", "subject", "text_part", "version", "problem"],
              title=f"Templates in {settings.path(settings.templates_dir)}", as_json=as_json,
              caption=f"subjects as {SAMPLE_NAME}, a sample contact, would see them; "
                      "'template:' marks one that needs a real contact",
              drop_first=["version", "text_part", "problem"])


SAMPLE_NAME = "Ann Lee"


def sample_subject(settings: Settings, tmpl: MessageTemplate) -> str:
    """The subject (an SMS: its text) rendered for a sample contact, or the source marked `template:`."""
    from campaigns.messages.rendering import TEXT_ENV, build_context, contact_context
    from campaigns.messages.sandbox import render_capped

    raw = ((tmpl.subject if tmpl.channel == "email" else tmpl.sms_body) or "").strip()
    if "{" not in raw:
        return raw
    sample = Contact(id=0, name=SAMPLE_NAME, email="ann@example.com", attributes={}, tags=[])
    try:
        context = build_context(None, settings, contact=sample, delivery_id=PREVIEW_DELIVERY_ID,  # type: ignore[arg-type]
                                campaign=None, lifecycle=None, rfm_segment=None)
        context["contact"] = contact_context(sample)
        context["coupon"] = lambda pool: "SAMPLE-CODE"  # no database: a placeholder code
        return render_capped(TEXT_ENV.from_string(raw), context).strip()
    except Exception:  # any failure: show the source, plainly marked
        return f"template: {raw}"


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
    from campaigns.campaign_defs import get_campaign

    return contact, get_campaign(session, campaign) if campaign else None


@app.command("render")
def render_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Template name."),
    contact: str = typer.Option(..., "--contact", help="The contact: email, external_id, +phone or #id."),
    campaign: Optional[str] = typer.Option(None, "--campaign", help="Render as this campaign would (UTM tags)."),  # noqa: UP045
    raw: bool = typer.Option(False, "--raw", help="Print the exact message (MIME, quoted-printable) instead of its decoded parts."),
    decoded: bool = typer.Option(True, "--decoded", hidden=True, help="The default: headers and decoded parts."),
    as_json: bool = JsonOpt,
) -> None:
    """Show the message a contact would get: headers and decoded parts (--raw: the exact bytes).

    A dry run: no coupon is taken, nothing is saved.
    """
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
        elif not raw:
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
    # The dispatcher's own SMTP channel, so a test travels the path a campaign's messages do.
    smtp = settings.smtp
    result = asyncio.run(_send_once(email_channel(settings), OutgoingEmail(
        key=f"test-{name}-{stamp}", mail_from=out.mail_from, to=out.to, data=out.data, message_id=out.message_id)))
    if result.outcome != "sent":
        reason = (result.detail or "").splitlines()[0] if result.detail else result.outcome
        raise CampaignsError(f"could not send through SMTP {smtp.host}:{smtp.port}: {_MEANS[result.outcome]} ({reason})")
    return f"SMTP {smtp.host}:{smtp.port}"


# The channel's outcome (the dispatcher's vocabulary) in a marketer's words.
_MEANS = {
    "hard_bounce": "the server says this address does not exist",
    "policy": "the server refuses mail from us (a policy or reputation block)",
    "transient": "a temporary failure, try again",
    "unknown": "the connection was lost after the message was handed over; it may still arrive",
    "failed": "the server refused this message",
    "suppressed": "the address is suppressed",
    "sent": "sent",
}


async def _send_once(channel: Channel, message: OutgoingEmail) -> SendResult:
    """One message through a channel, connections closed afterwards."""
    try:
        return await channel.send(message)
    finally:
        await channel.close()


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


@app.command("check")
def check_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Template name (an email)."),
    contact: Optional[str] = typer.Option(None, "--contact", help="Render for this contact (default: a test recipient)."),  # noqa: UP045
    as_json: bool = JsonOpt,
) -> None:
    """Deliverability of an email: SpamAssassin score, images against text, alt text, Gmail's 102 KB clip.

    The score comes from `spamassassin -L -t` (local tests, no DKIM) when it is installed.
    Exit 1 when something needs fixing.
    """
    from campaigns.messages.template_check import GMAIL_CLIP_BYTES, check_message

    a = get_app(ctx)
    tmpl = load_template(a.settings, name)
    if tmpl.channel != "email":
        raise InputError(f"template {name} is an SMS; check looks at emails")
    with session_factory(a.ready_engine())() as session:
        try:
            person, camp = _contact_and_campaign(session, contact, None, a.settings)
            if not person.email:
                person.email = "test@example.com"
            out = render_delivery(session, a.settings, tmpl, contact=person, delivery_id=PREVIEW_DELIVERY_ID,
                                  campaign=camp)
        finally:
            session.rollback()
    assert isinstance(out, RenderedEmail)
    report = check_message(out.data)
    record = {"template": name, "spam_score": report.spam_score, "spam_rules": report.spam_rules,
              "html_bytes": report.html_bytes, "words": report.words, "images": report.images,
              "images_without_alt": report.missing_alt, "problems": report.problems}
    if as_json:
        print_json(record)
    else:
        score = ("not checked (install Debian's spamassassin)" if report.spam_score is None
                 else f"{report.spam_score:.1f}" + (f" ({', '.join(report.spam_rules)})" if report.spam_rules else ""))
        emit_record({"spamassassin score": score,
                     "html size": f"{report.html_bytes / 1024:.1f} KB of Gmail's {GMAIL_CLIP_BYTES // 1024} KB",
                     "text and images": f"{report.words} words, {report.images} images",
                     "images without alt": len(report.missing_alt)}, title=f"Template {name}")
        for problem in report.problems:
            err_console.print(f"[red]problem:[/red] {escape(problem)}", soft_wrap=True)
        if not report.problems:
            ok(f"{name}: ready to send")
    if report.problems:
        raise typer.Exit(1)
