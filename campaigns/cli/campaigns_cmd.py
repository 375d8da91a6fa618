"""`campaigns new|list|show|edit|pause|resume|cancel|send`: define and steer campaigns."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from campaigns import campaign_views as views
from campaigns.campaign_defs import (
    CampaignSpec,
    activate_campaign,
    archive_campaign,
    clone_campaign,
    create_campaign,
    delete_campaign,
    describe,
    edit_campaign,
    get_campaign,
    last_transport_error,
    one_off_passed,
    set_status,
)
from campaigns.cli.common import (
    Channel,
    CsvOpt,
    JsonOpt,
    console,
    counted,
    emit_record,
    emit_rows,
    get_app,
    ok,
    warn,
)
from campaigns.cli.journeys import read_journey
from campaigns.cli.output import OUTCOME_WORDS, STATE_WORDS, cell, plan_sentence, run_row, winner_sentence
from campaigns.errors import ConflictError
from campaigns.journey_defs import draw
from campaigns.timespec import utcnow


def _spec(segment, channel, template, at, cron, step, timezone, local_time, quiet_hours, cap, throttle, holdout,
          variant, attribution_window, utm_campaign, grace, cost, transactional,
          utm_source=None, utm_medium=None, late=None, trigger=None, offset=None, exit_when=None, goal=None,
          reentry=None, topic=None, test_share=None,
          winner_after=None, winner_by=None) -> CampaignSpec:
    return CampaignSpec(
        segment=segment, channel=channel.value if channel else None, template=template, at=at, cron=cron,
        steps=list(step), timezone=timezone, local_time=local_time, quiet_hours=quiet_hours, cap=cap,
        throttle=throttle, holdout=holdout, variants=list(variant), attribution_window=attribution_window,
        utm_campaign=utm_campaign, utm_source=utm_source, utm_medium=utm_medium, grace=grace, cost_per_message=cost, transactional=transactional,
        late=late, trigger=trigger, offset=offset, exit_when=exit_when, goal=goal, reentry=reentry, topic=topic,
        test_share=test_share, winner_after=winner_after, winner_by=winner_by)


SegmentOpt = typer.Option(None, "--segment", help="The segment to target (evaluated at each firing).")
ChannelOpt = typer.Option(None, "--channel", help="email or sms.")
TemplateOpt = typer.Option(None, "--template", help="The template to send.")
AtOpt = typer.Option(None, "--at", help='One-off: "2026-12-01 09:00" (campaign time zone).')
CronOpt = typer.Option(None, "--cron", help='Recurring: "0 10 1 * *".')
StepOpt = typer.Option([], "--step", help="Drip step OFFSET:TEMPLATE, e.g. 0d:welcome (repeatable).")
TriggerOpt = typer.Option(None, "--trigger", help="What starts the steps: segment, purchase, event:NAME, lifecycle:STAGE, "
                                                  "date:attributes.FIELD.")
OffsetOpt = typer.Option(None, "--offset", help="A date trigger's shift, e.g. -7d (a week before).")
ExitOpt = typer.Option(None, "--exit-when", help="A filter checked before each step: matching contacts leave.")
GoalOpt = typer.Option(None, "--goal", help="A filter: matching contacts converted (and leave).")
ReentryOpt = typer.Option(None, "--reentry", help="never, always or after:30d (default: always for purchase/event/date, "
                                                  "else never).")
TzOpt = typer.Option(None, "--timezone", help="The campaign's time zone (default from config).")
LocalOpt = typer.Option(None, "--local-time/--fixed-time", help="Send at that wall-clock time in each contact's zone.")
QuietOpt = typer.Option(None, "--quiet-hours", help='Recipient-local quiet hours, e.g. "21:00-08:00" or "none".')
CapOpt = typer.Option(None, "--cap", help="Marketing messages per contact across campaigns, e.g. 2/7d or none.")
ThrottleOpt = typer.Option(None, "--throttle", help="At most this rate, e.g. 600/min.")
HoldoutOpt = typer.Option(None, "--holdout", help="A stable random share never sent, e.g. 10%.")
VariantOpt = typer.Option([], "--variant", help="A/B variant NAME:TEMPLATE:WEIGHT (repeatable).")
WindowOpt = typer.Option(None, "--attribution-window", help="Credit purchases this long after sending, e.g. 7d.")
UtmOpt = typer.Option(None, "--utm-campaign", help="utm_campaign added to links (default: the name).")
UtmSourceOpt = typer.Option(None, "--utm-source", help="utm_source added to links (default from [tracking]).")
UtmMediumOpt = typer.Option(None, "--utm-medium", help="utm_medium added to links (default from [tracking]).")
GraceOpt = typer.Option(None, "--grace", help="A missed firing still runs when this recent, e.g. 2h.")
CostOpt = typer.Option(None, "--cost", help="Cost per message, for ROI.")
LateOpt = typer.Option(None, "--late", help="Local time: recipients whose moment had passed when the campaign was created: skip (default) or send.")
TestShareOpt = typer.Option(None, "--test-share", help="A/B: send the variants to this share first, e.g. 20% (none: to everyone).")
WinnerAfterOpt = typer.Option(None, "--winner-after", help="A/B with --test-share: decide the winner this long after the firing, e.g. 4h.")
WinnerByOpt = typer.Option(None, "--winner-by", help="A/B with --test-share: clicks (default), conversions or revenue.")
TransOpt = typer.Option(None, "--transactional/--marketing", help="Transactional messages are exempt from caps.")
JourneyOpt = typer.Option(None, "--journey", help="A branching journey file (TOML: send, wait, branch, exit; docs/journeys.md) "
                                                  "instead of --step.")
TopicOpt = typer.Option(None, "--topic", help="What it is about (see `campaigns topics`): who left the topic is skipped; 'none' removes it.")


def register(app: typer.Typer) -> None:
    """Attach the campaign commands to the root app."""
    for name, fn in (("new", new), ("list", list_cmd), ("show", show), ("edit", edit), ("activate", activate),
                     ("clone", clone), ("delete", delete), ("archive", archive), ("pause", pause), ("resume", resume), ("cancel", cancel),
                     ("send", send), ("calendar", calendar)):
        app.command(name)(fn)


def new(ctx: typer.Context, name: str = typer.Argument(...), segment: str | None = SegmentOpt, channel: Channel | None = ChannelOpt,
        template: str | None = TemplateOpt, at: str | None = AtOpt, cron: str | None = CronOpt, step: list[str] = StepOpt,
        timezone: str | None = TzOpt, local_time: bool | None = LocalOpt, quiet_hours: str | None = QuietOpt, cap: str | None = CapOpt,
        throttle: str | None = ThrottleOpt, holdout: str | None = HoldoutOpt, variant: list[str] = VariantOpt,
        attribution_window: str | None = WindowOpt, utm_campaign: str | None = UtmOpt,
        utm_source: str | None = UtmSourceOpt, utm_medium: str | None = UtmMediumOpt, grace: str | None = GraceOpt,
        cost: float | None = CostOpt, transactional: bool | None = TransOpt, late: str | None = LateOpt,
        trigger: str | None = TriggerOpt, offset: str | None = OffsetOpt, exit_when: str | None = ExitOpt,
        goal: str | None = GoalOpt, reentry: str | None = ReentryOpt,
        topic: str | None = TopicOpt, journey: Path | None = JourneyOpt,
        test_share: str | None = TestShareOpt, winner_after: str | None = WinnerAfterOpt, winner_by: str | None = WinnerByOpt,
        activate_now: bool = typer.Option(False, "--activate", help="Make it live at once (else it is a draft).")) -> None:
    """Define a campaign: who (segment), what (template), when (--at, --cron, --step, or manual).

    A new campaign is a draft: the daemon ignores it until `campaigns activate NAME`.
    """
    a = get_app(ctx)
    spec = _spec(segment, channel, template, at, cron, step, timezone, local_time, quiet_hours, cap, throttle,
                 holdout, variant, attribution_window, utm_campaign, grace, cost, transactional,
                 utm_source, utm_medium, late, trigger, offset, exit_when, goal, reentry, topic,
                 test_share, winner_after, winner_by)
    if journey is not None:
        spec.journey, spec.journey_source = read_journey(journey, "--journey"), str(journey)
    with a.session() as s:
        c = create_campaign(s, a.settings, name, spec, activate=activate_now)
        status, kind = c.status, c.schedule_kind
    if kind == "manual":
        hint = f": send it with `campaigns send {name} --now`"
    elif status == "draft":
        hint = f": preview it with `campaigns send {name} --dry-run`, make it live with `campaigns activate {name}`"
    else:
        hint = ": the daemon sends it on schedule"
    ok(f"campaign {name} created ({kind}, {status}){hint}")


def edit(ctx: typer.Context, name: str = typer.Argument(...), segment: str | None = SegmentOpt, channel: Channel | None = ChannelOpt,
         template: str | None = TemplateOpt, at: str | None = AtOpt, cron: str | None = CronOpt, step: list[str] = StepOpt,
         timezone: str | None = TzOpt, local_time: bool | None = LocalOpt, quiet_hours: str | None = QuietOpt, cap: str | None = CapOpt,
         throttle: str | None = ThrottleOpt, holdout: str | None = HoldoutOpt, variant: list[str] = VariantOpt,
         attribution_window: str | None = WindowOpt, utm_campaign: str | None = UtmOpt,
         utm_source: str | None = UtmSourceOpt, utm_medium: str | None = UtmMediumOpt, grace: str | None = GraceOpt,
         cost: float | None = CostOpt, transactional: bool | None = TransOpt, late: str | None = LateOpt,
         trigger: str | None = TriggerOpt, offset: str | None = OffsetOpt, exit_when: str | None = ExitOpt,
         goal: str | None = GoalOpt, reentry: str | None = ReentryOpt,
         topic: str | None = TopicOpt, test_share: str | None = TestShareOpt,
         winner_after: str | None = WinnerAfterOpt, winner_by: str | None = WinnerByOpt,
         journey: Path | None = JourneyOpt) -> None:
    """Change a campaign (the daemon picks the change up within seconds)."""
    a = get_app(ctx)
    spec = _spec(segment, channel, template, at, cron, step, timezone, local_time, quiet_hours, cap, throttle,
                 holdout, variant, attribution_window, utm_campaign, grace, cost, transactional,
                 utm_source, utm_medium, late, trigger, offset, exit_when, goal, reentry, topic,
                 test_share, winner_after, winner_by)
    if journey is not None:
        spec.journey, spec.journey_source = read_journey(journey, "--journey"), str(journey)
    with a.session() as s:
        edit_campaign(s, a.settings, name, spec)
    ok(f"campaign {name} updated")


def list_cmd(ctx: typer.Context, as_json: bool = JsonOpt, as_csv: bool = CsvOpt,
             show_all: bool = typer.Option(False, "--all", help="Include archived campaigns.")) -> None:
    """All campaigns with their status and outbox counts (archived ones with --all)."""
    a = get_app(ctx)
    with a.session() as s:
        counts = views.outbox_by_campaign(s)
        rows = []
        for c in views.campaigns(s, include_archived=show_all):
            d = describe(c)
            by_state = counts.get(c.id, {})
            rows.append({**d, "sent": by_state.get("sent", 0), "queued": by_state.get("queued", 0) + by_state.get("retry_wait", 0),
                         "held_out": by_state.get("held_out", 0), "failed": by_state.get("failed", 0)})
    emit_rows(rows, ["name", "channel", "segment", "schedule_kind", "schedule", "status", "queued", "sent", "failed", "held_out"],
              title="Campaigns", as_json=as_json, as_csv=as_csv,  # a narrow terminal keeps name, status, sent, schedule
              drop_first=["schedule_kind", "held_out", "failed", "channel", "queued", "segment"])


def calendar(ctx: typer.Context, days: int = typer.Option(14, "--days", min=1, max=3660, help="How many days ahead."),
             as_json: bool = JsonOpt) -> None:
    """Every upcoming firing and drip step across campaigns, with its audience, soonest first."""
    from scheduler.calendar import calendar as upcoming

    a = get_app(ctx)
    with a.session(write=False) as s:
        rows = [e.as_dict() for e in upcoming(s, a.settings, utcnow(), days)]
    emit_rows(rows, ["at", "campaign", "what", "audience", "source"], title=f"Calendar: the next {days} days",
              as_json=as_json, caption="estimate: the audience if planned now; queued: rows already in the outbox",
              empty=f"Nothing is planned in the next {days} days (`campaigns status` shows each campaign's next firing).")


def show(ctx: typer.Context, name: str = typer.Argument(...), as_json: bool = JsonOpt) -> None:
    """One campaign: its definition, status (and why), runs and outbox by state."""
    a = get_app(ctx)
    with a.session() as s:
        c = get_campaign(s, name)
        record = describe(c)
        journey = c.journey
        segment_gone = c.segment_id is None
        record["outbox"] = views.outbox_of(s, c.id)
        record["runs"] = [{"scheduled_for": r.scheduled_for, "status": r.status, "note": _run_note(r.counts or {}), "counts": r.counts,
                           **({"ab_decision": r.ab_decision} if r.ab_decision else {})}
                          for r in views.runs_of(s, c.id)]
        error = last_transport_error(s, c.id)
        record["last_error"] = f"{error[0]} (at {cell(error[1])})" if error else None
        if c.status == "scheduled" and c.schedule_kind in ("once", "cron"):
            from scheduler.firings import next_key

            record["next_firing"] = next_key(c, utcnow())
    if as_json:
        emit_record({**record, **({"journey": journey} if journey else {})}, as_json=True)
        return
    runs, outbox = record.pop("runs"), record.pop("outbox")
    if segment_gone and record["segment"]:
        record["segment"] = f"{record['segment']} (deleted since; archived with this definition)"
    record["outbox"] = counted(outbox, STATE_WORDS) or "empty"
    decided = [r["ab_decision"] for r in runs if r.get("ab_decision")]
    if decided:
        record["ab_winner"] = winner_sentence(decided[-1])
    emit_record(record, title=f"Campaign {name}")
    if journey:
        console.print("[bold]Journey[/bold]")
        for line in draw(journey):
            console.print(escape(line), highlight=False, soft_wrap=True)
    if runs:
        emit_rows([{**run_row(r), "note": r["note"]} for r in runs],
                  ["scheduled_for", "status", "in_segment", "planned", "held_out", "skipped", "note"], title="Runs")
    else:
        console.print("No runs yet.")


def _run_note(counts: dict[str, Any]) -> str:
    """Why a run looks the way it does: caught up, missed (and why), extra."""
    if counts.get("reason"):
        return f"missed: {counts['reason']}"
    if counts.get("caught_up"):
        late = int(counts.get("late_by_seconds", 0))
        return f"caught up after downtime, {late // 3600}h {late % 3600 // 60}m late"
    if counts.get("extra"):
        return "extra run (send --now)"
    return ""


def activate(ctx: typer.Context, name: str = typer.Argument(...)) -> None:
    """Make a draft campaign live: the daemon starts sending it on its schedule."""
    a = get_app(ctx)
    with a.session() as s:
        c = activate_campaign(s, a.settings, name)
        when = describe(c)["schedule"]
    ok(f"campaign {name} is live: the daemon sends it on schedule ({when})")


def clone(ctx: typer.Context, name: str = typer.Argument(...), new_name: str = typer.Argument(..., metavar="NEW"),
          topic: str | None = TopicOpt) -> None:
    """Copy a campaign's definition under a new name, as a draft (no runs, no messages)."""
    a = get_app(ctx)
    with a.session() as s:
        passed = one_off_passed(clone_campaign(s, a.settings, name, new_name, topic), utcnow())
    ok(f"campaign {new_name} created as a draft copy of {name}; change it with `campaigns edit {new_name}`"
       + (f" (its one-off time has passed: give it a new one with `campaigns edit {new_name} --at ...`)" if passed else ""))


def delete(ctx: typer.Context, name: str = typer.Argument(...),
           yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")) -> None:
    """Delete a draft campaign that never sent anything."""
    a = get_app(ctx)
    with a.session() as s:
        get_campaign(s, name)
        if not yes and not typer.confirm(f"Delete draft campaign {name}?"):
            raise typer.Abort()
        delete_campaign(s, name)
    ok(f"campaign {name} deleted")


def archive(ctx: typer.Context, name: str = typer.Argument(...)) -> None:
    """Archive a finished (completed, cancelled or sent) campaign: hidden from `list`, its reports kept.

    Its segment is freed (`segments delete` works); `show` and `report` keep what it targeted.
    """
    with get_app(ctx).session() as s:
        archive_campaign(s, name)
    ok(f"campaign {name} archived (see it with `campaigns list --all`; copy it with `campaigns clone`)")


def pause(ctx: typer.Context, name: str = typer.Argument(...), reason: str | None = typer.Option(None, "--reason")) -> None:
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
         now: bool = typer.Option(False, "--now", help="An extra run now (the schedule is kept); sends what is due (no daemon needed)."),
         dry_run: bool = typer.Option(False, "--dry-run", help="Preview the next firing: who would get what and when, who is skipped and why."),
         as_json: bool = JsonOpt) -> None:
    """Run a campaign once more, immediately (--now), or preview its next firing (--dry-run)."""
    from scheduler.dispatcher import Dispatcher
    from scheduler.firings import fire_at, next_key
    from scheduler.jobs import settle
    from scheduler.planner import plan_firing

    if not (now or dry_run):
        raise typer.BadParameter("say --now to send, or --dry-run to preview", param_hint="--now")
    a = get_app(ctx)
    at = utcnow()
    with a.session() as s:
        c = get_campaign(s, name)
        if c.status in ("cancelled", "paused", "completed", "archived"):
            raise ConflictError(f"campaign {name} is {c.status}" + ("; resume it first" if c.status == "paused" else ""))
        if c.schedule_kind == "drip":  # no single firing to run: each contact's steps count from their entry
            raise ConflictError(f"campaign {name} is a drip: each step goes out as contacts enter its segment, so there is "
                                f"no run to send now; `campaigns calendar` shows the steps waiting")
        campaign_id = c.id
        key, plan_at, extra = at, at, True
        if dry_run and c.status == "scheduled" and c.schedule_kind in ("once", "cron"):
            upcoming = next_key(c, at)
            if upcoming is not None:  # preview that firing as the daemon will plan it
                key, plan_at, extra = upcoming, max(fire_at(c, upcoming), at), False
        result = plan_firing(s, a.settings, c, key, plan_at, extra=extra)
        preview = views.run_sample(s, result.run_id, 20)
        capped = views.addresses(s, result.capped[:20])
        if dry_run:
            s.rollback()
    summary: dict[str, Any] = {"campaign": name, "firing": key if not extra else None, "counts": result.counts, "sample": preview,
                               "capped": capped}
    if dry_run:
        if as_json:
            emit_record(summary, as_json=True)
            return
        when = f" at its firing of {key:%Y-%m-%d %H:%M} UTC" if not extra else ""
        console.print(f"{escape(name)} would send{escape(when)} to {plan_sentence(result.counts)}. Nothing was saved.", soft_wrap=True)
        if preview:
            emit_rows(preview, ["contact", "variant", "template", "due_at", "holdout"],
                      title=f"First {len(preview)} recipients")
        if capped:
            emit_rows([{"contact": x} for x in capped], ["contact"], title=f"Capped ({len(result.capped)}): at the frequency cap")
        return
    async def send_now():
        dispatcher = Dispatcher(a)
        try:
            return await dispatcher.dispatch_once()
        finally:
            await dispatcher.close()

    stats = asyncio.run(send_now())
    with a.session() as s:
        waiting = views.still_waiting(s, result.run_id)
        error = last_transport_error(s, campaign_id)
        settle(s, [campaign_id])
    summary["sent"] = dict(stats.counts)
    summary["waiting"] = waiting
    summary["last_error"] = error[0] if error else None
    if as_json:
        emit_record(summary, as_json=True)
        return
    ok(f"{name}: planned for {plan_sentence(result.counts)}; just now: {counted(dict(stats.counts), OUTCOME_WORDS) or 'nothing was due'}")
    if waiting and stats.counts.get("retry_wait"):
        warn(f"{waiting} messages wait for a retry (the daemon retries them); the transport said: "
             f"{error[0] if error else 'no reason recorded'}")
    elif waiting:
        warn(f"{waiting} messages are due later (recipients' quiet hours or throttle): the daemon sends them")
