"""`campaigns new|list|show|edit|pause|resume|cancel|send`: define and steer campaigns."""

from __future__ import annotations

import asyncio
from typing import Optional

import typer
from sqlalchemy import func, select

from campaigns.campaign_defs import (
    CampaignSpec,
    create_campaign,
    describe,
    edit_campaign,
    get_campaign,
    set_status,
)
from campaigns.cli.common import (
    Channel,
    CsvOpt,
    JsonOpt,
    console,
    emit_record,
    emit_rows,
    get_app,
    ok,
    warn,
)
from campaigns.models import Campaign, CampaignRun, Contact, Delivery
from campaigns.timespec import utcnow

O = Optional


def _spec(segment, channel, template, at, cron, step, timezone, local_time, quiet_hours, cap, throttle, holdout,  # type: ignore[no-untyped-def]
          variant, attribution_window, utm_campaign, grace, cost, transactional) -> CampaignSpec:
    return CampaignSpec(
        segment=segment, channel=channel.value if channel else None, template=template, at=at, cron=cron,
        steps=list(step), timezone=timezone, local_time=local_time, quiet_hours=quiet_hours, cap=cap,
        throttle=throttle, holdout=holdout, variants=list(variant), attribution_window=attribution_window,
        utm_campaign=utm_campaign, grace=grace, cost_per_message=cost, transactional=transactional)


SegmentOpt = typer.Option(None, "--segment", help="The segment to target (evaluated at each firing).")
ChannelOpt = typer.Option(None, "--channel", help="email or sms.")
TemplateOpt = typer.Option(None, "--template", help="The template to send.")
AtOpt = typer.Option(None, "--at", help='One-off: "2026-12-01 09:00" (campaign time zone).')
CronOpt = typer.Option(None, "--cron", help='Recurring: "0 10 1 * *".')
StepOpt = typer.Option([], "--step", help="Drip step OFFSET:TEMPLATE, e.g. 0d:welcome (repeatable).")
TzOpt = typer.Option(None, "--timezone", help="The campaign's time zone (default from config).")
LocalOpt = typer.Option(None, "--local-time/--fixed-time", help="Send at that wall-clock time in each contact's zone.")
QuietOpt = typer.Option(None, "--quiet-hours", help='Recipient-local quiet hours, e.g. "21:00-08:00" or "none".')
CapOpt = typer.Option(None, "--cap", help="Marketing messages per contact across campaigns, e.g. 2/7d or none.")
ThrottleOpt = typer.Option(None, "--throttle", help="At most this rate, e.g. 600/min.")
HoldoutOpt = typer.Option(None, "--holdout", help="A stable random share never sent, e.g. 10%.")
VariantOpt = typer.Option([], "--variant", help="A/B variant NAME:TEMPLATE:WEIGHT (repeatable).")
WindowOpt = typer.Option(None, "--attribution-window", help="Credit purchases this long after sending, e.g. 7d.")
UtmOpt = typer.Option(None, "--utm-campaign", help="utm_campaign added to links (default: the name).")
GraceOpt = typer.Option(None, "--grace", help="A missed firing still runs when this recent, e.g. 2h.")
CostOpt = typer.Option(None, "--cost", help="Cost per message, for ROI.")
TransOpt = typer.Option(None, "--transactional/--marketing", help="Transactional messages are exempt from caps.")


def register(app: typer.Typer) -> None:
    """Attach the campaign commands to the root app."""
    for name, fn in (("new", new), ("list", list_cmd), ("show", show), ("edit", edit), ("pause", pause),
                     ("resume", resume), ("cancel", cancel), ("send", send)):
        app.command(name)(fn)


def new(ctx: typer.Context, name: str = typer.Argument(...), segment: O[str] = SegmentOpt, channel: O[Channel] = ChannelOpt,
        template: O[str] = TemplateOpt, at: O[str] = AtOpt, cron: O[str] = CronOpt, step: list[str] = StepOpt,
        timezone: O[str] = TzOpt, local_time: O[bool] = LocalOpt, quiet_hours: O[str] = QuietOpt, cap: O[str] = CapOpt,
        throttle: O[str] = ThrottleOpt, holdout: O[str] = HoldoutOpt, variant: list[str] = VariantOpt,
        attribution_window: O[str] = WindowOpt, utm_campaign: O[str] = UtmOpt, grace: O[str] = GraceOpt,
        cost: O[float] = CostOpt, transactional: O[bool] = TransOpt) -> None:
    """Define a campaign: who (segment), what (template), when (--at, --cron, --step, or manual)."""
    a = get_app(ctx)
    spec = _spec(segment, channel, template, at, cron, step, timezone, local_time, quiet_hours, cap, throttle,
                 holdout, variant, attribution_window, utm_campaign, grace, cost, transactional)
    with a.session() as s:
        c = create_campaign(s, a.settings, name, spec)
        status, kind = c.status, c.schedule_kind
    ok(f"campaign {name} created ({kind}, {status})" + (": run it with `campaigns send " + name + " --now`" if kind == "manual" else ""))


def edit(ctx: typer.Context, name: str = typer.Argument(...), segment: O[str] = SegmentOpt, channel: O[Channel] = ChannelOpt,
         template: O[str] = TemplateOpt, at: O[str] = AtOpt, cron: O[str] = CronOpt, step: list[str] = StepOpt,
         timezone: O[str] = TzOpt, local_time: O[bool] = LocalOpt, quiet_hours: O[str] = QuietOpt, cap: O[str] = CapOpt,
         throttle: O[str] = ThrottleOpt, holdout: O[str] = HoldoutOpt, variant: list[str] = VariantOpt,
         attribution_window: O[str] = WindowOpt, utm_campaign: O[str] = UtmOpt, grace: O[str] = GraceOpt,
         cost: O[float] = CostOpt, transactional: O[bool] = TransOpt) -> None:
    """Change a campaign (the daemon picks the change up within seconds)."""
    a = get_app(ctx)
    spec = _spec(segment, channel, template, at, cron, step, timezone, local_time, quiet_hours, cap, throttle,
                 holdout, variant, attribution_window, utm_campaign, grace, cost, transactional)
    with a.session() as s:
        edit_campaign(s, a.settings, name, spec)
    ok(f"campaign {name} updated")


def list_cmd(ctx: typer.Context, as_json: bool = JsonOpt, as_csv: bool = CsvOpt) -> None:
    """All campaigns with their status and outbox counts."""
    a = get_app(ctx)
    with a.session() as s:
        counts: dict[int, dict[str, int]] = {}
        for cid, state, n in s.execute(select(Delivery.campaign_id, Delivery.state, func.count()).group_by(Delivery.campaign_id, Delivery.state)):
            counts.setdefault(cid, {})[state] = n
        rows = []
        for c in s.scalars(select(Campaign).order_by(Campaign.id)):
            d = describe(c)
            by_state = counts.get(c.id, {})
            rows.append({**d, "sent": by_state.get("sent", 0), "queued": by_state.get("queued", 0) + by_state.get("retry_wait", 0),
                         "held_out": by_state.get("held_out", 0), "failed": by_state.get("failed", 0)})
    emit_rows(rows, ["name", "channel", "segment", "schedule_kind", "schedule", "status", "queued", "sent", "failed", "held_out"],
              title="Campaigns", as_json=as_json, as_csv=as_csv)


def show(ctx: typer.Context, name: str = typer.Argument(...), as_json: bool = JsonOpt) -> None:
    """One campaign: its definition, status (and why), runs and outbox by state."""
    a = get_app(ctx)
    with a.session() as s:
        c = get_campaign(s, name)
        record = describe(c)
        record["outbox"] = dict(s.execute(select(Delivery.state, func.count()).where(Delivery.campaign_id == c.id).group_by(Delivery.state)).all())
        record["runs"] = [{"scheduled_for": r.scheduled_for, "status": r.status, "counts": r.counts}
                          for r in s.scalars(select(CampaignRun).where(CampaignRun.campaign_id == c.id).order_by(CampaignRun.scheduled_for))]
    emit_record(record, title=f"Campaign {name}", as_json=as_json)


def pause(ctx: typer.Context, name: str = typer.Argument(...), reason: O[str] = typer.Option(None, "--reason")) -> None:
    """Stop sending (queued messages wait; nothing is lost)."""
    from scheduler.holds import settle

    a = get_app(ctx)
    with a.session() as s:
        campaign_id = set_status(s, name, "pause", reason).id
    # Senders see the pause before their next wave; a wave already going out is waited for
    # (a second at most), so nothing is handed over after this returns (scheduler/holds.py).
    held = settle(a.engine, campaign_id)
    ok(f"campaign {name} paused" + (f" ({held} messages were being handed over)" if held else ""))


def resume(ctx: typer.Context, name: str = typer.Argument(...)) -> None:
    """Carry on sending."""
    with get_app(ctx).session() as s:
        set_status(s, name, "resume")
    ok(f"campaign {name} resumed")


def cancel(ctx: typer.Context, name: str = typer.Argument(...)) -> None:
    """Stop for good: queued messages are cancelled."""
    with get_app(ctx).session() as s:
        set_status(s, name, "cancel")
    ok(f"campaign {name} cancelled")


def send(ctx: typer.Context, name: str = typer.Argument(...),
         now: bool = typer.Option(False, "--now", help="Plan a run now and send what is due (no daemon needed)."),
         dry_run: bool = typer.Option(False, "--dry-run", help="Show who would get what, and who is skipped and why."),
         as_json: bool = JsonOpt) -> None:
    """Run a campaign once, immediately (--now), or preview it (--dry-run)."""
    from scheduler.dispatcher import Dispatcher
    from scheduler.planner import plan_firing

    if not (now or dry_run):
        raise typer.BadParameter("say --now to send, or --dry-run to preview", param_hint="--now")
    a = get_app(ctx)
    at = utcnow()
    with a.session() as s:
        c = get_campaign(s, name)
        if c.status in ("cancelled", "paused", "completed"):
            from campaigns.errors import ConflictError
            raise ConflictError(f"campaign {name} is {c.status}" + ("; resume it first" if c.status == "paused" else ""))
        result = plan_firing(s, a.settings, c, at.replace(microsecond=0), at)
        preview = [{"contact": email or phone, "variant": d.variant, "template": d.template_name,
                    "due_at": d.due_at, "holdout": d.is_holdout}
                   for d, email, phone in s.execute(select(Delivery, Contact.email, Contact.phone)
                                                    .join(Contact, Contact.id == Delivery.contact_id)
                                                    .where(Delivery.run_id == result.run_id).order_by(Delivery.id).limit(20))]
        if dry_run:
            s.rollback()
    summary = {"campaign": name, "counts": result.counts, "sample": preview}
    if dry_run:
        if as_json:
            emit_record(summary, as_json=True)
            return
        console.print(f"[bold]{name}[/bold] would plan: {result.counts}")
        emit_rows(preview, ["contact", "variant", "template", "due_at", "holdout"], title="First recipients")
        return
    async def send_now():  # type: ignore[no-untyped-def]
        dispatcher = Dispatcher(a)
        try:
            return await dispatcher.dispatch_once()
        finally:
            await dispatcher.close()

    stats = asyncio.run(send_now())
    with a.session() as s:
        waiting = s.scalar(select(func.count()).select_from(Delivery).where(
            Delivery.run_id == result.run_id, Delivery.state.in_(("queued", "retry_wait")))) or 0
    summary["sent"] = dict(stats.counts)
    summary["waiting"] = waiting
    if as_json:
        emit_record(summary, as_json=True)
        return
    ok(f"{name}: planned {result.counts.get('planned', 0)} (held out {result.counts.get('held_out', 0)}, "
       f"skipped {sum(result.counts.get('skipped', {}).values())}); sent now: {dict(stats.counts)}")
    if waiting:
        warn(f"{waiting} messages are due later (recipients' quiet hours or throttle): the daemon sends them")
