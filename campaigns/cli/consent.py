"""`campaigns consent ...`: grant, revoke, confirm, history."""

from __future__ import annotations

import typer

from campaigns.audience import consent as ledger
from campaigns.audience.contacts import find_contact
from campaigns.cli.common import (
    Channel,
    CsvOpt,
    JsonOpt,
    console,
    emit_rows,
    get_app,
    ok,
)

app = typer.Typer(help="The consent ledger: grant, revoke, confirm (double opt-in), history.", no_args_is_help=True)

ContactArg = typer.Argument(..., help="Email, external_id, +phone or #id.")
ChannelOpt = typer.Option(..., "--channel", help="email or sms.")


@app.command("grant")
def grant_cmd(
    ctx: typer.Context,
    contact: str = ContactArg,
    channel: Channel = ChannelOpt,
    source: str = typer.Option(..., "--source", help="Where the consent came from (form, call, import)."),
    text: str | None = typer.Option(None, "--text", help="The consent wording or its version."),
    ip: str | None = typer.Option(None, "--ip"),
    user_agent: str | None = typer.Option(None, "--user-agent"),
    double_opt_in: bool | None = typer.Option(
        None, "--double-opt-in/--single-opt-in", help="Ask for confirmation first (default from config)."),
) -> None:
    """Record consent (or, with double opt-in, a pending request and its confirmation link)."""
    a = get_app(ctx)
    with a.session() as session:
        c = find_contact(session, contact)
        _event, token = ledger.grant(session, a.settings, c, channel.value, source, text, ip, user_agent,
                                     double_opt_in=double_opt_in)
        label = c.email or c.phone
    if token is None:
        ok(f"{channel.value} consent granted for {label}")
    else:
        base = a.settings.tracking.public_url.rstrip("/")
        how = "a confirmation email" if channel.value == "email" else "a 'Reply YES' text"
        ok(f"{channel.value} consent pending for {label}; {how} is queued, and consent counts once confirmed")
        console.print(f"confirmation link (single use, {a.settings.consent.token_ttl_hours:g}h): {base}/confirm/{token}")
        console.print(f"or: campaigns consent confirm {token}")


@app.command("revoke")
def revoke_cmd(
    ctx: typer.Context,
    contact: str = ContactArg,
    channel: Channel = ChannelOpt,
    source: str = typer.Option(..., "--source", help="Where the revocation came from."),
) -> None:
    """Record a revocation: no more marketing on that channel."""
    a = get_app(ctx)
    with a.session() as session:
        c = find_contact(session, contact)
        ledger.revoke(session, c, channel.value, source)
        label = c.email or c.phone
    ok(f"{channel.value} consent revoked for {label}")


@app.command("confirm")
def confirm_cmd(ctx: typer.Context, token: str = typer.Argument(..., help="The token from the confirmation link.")) -> None:
    """Confirm a pending double opt-in request (single use, expires)."""
    a = get_app(ctx)
    with a.session() as session:
        event = ledger.confirm(session, token)
        channel = event.channel
    ok(f"{channel} consent confirmed")


@app.command("history")
def history_cmd(
    ctx: typer.Context,
    contact: str = ContactArg,
    channel: Channel | None = typer.Option(None, "--channel"),
    as_json: bool = JsonOpt,
    as_csv: bool = CsvOpt,
) -> None:
    """Every consent event of a contact, oldest first, with the current state."""
    a = get_app(ctx)
    with a.session() as session:
        c = find_contact(session, contact)
        events = ledger.history(session, c.id, channel.value if channel else None)
        topics = ledger.topic_names(session, {e.topic_id for e in events if e.topic_id is not None})
        rows = [{
            "id": e.id, "channel": e.channel, "topic": topics.get(e.topic_id) if e.topic_id is not None else None,
            "action": _topic_action(e.action) if e.topic_id is not None else e.action, "source": e.source,
            "text": e.consent_text, "occurred_at": e.occurred_at, "ip": e.ip, "user_agent": e.user_agent,
        } for e in events]
        states = {ch: ledger.current_state(session, c.id, ch) for ch in ("email", "sms")}
    emit_rows(rows, ["id", "channel", "topic", "action", "source", "text", "occurred_at", "ip", "user_agent"],
              title=f"Consent ledger of {c.email or c.phone}", as_json=as_json, as_csv=as_csv,
              caption=" · ".join(f"{ch}: {s.action or 'none'}{' (pending)' if s.pending else ''}" for ch, s in states.items()))


def _topic_action(action: str) -> str:
    """A topic-level event in words: the ledger's revoked/granted are a topic left/rejoined."""
    return {"revoked": "left topic", "granted": "rejoined topic"}.get(action, action)
