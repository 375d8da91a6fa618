"""Define, check and steer campaigns: who (segment), what (templates), when, how carefully.

A campaign can only be scheduled when its segment and templates exist, the templates are
for its channel, and they lint clean. Schedules: `--at` (once), `--cron` (recurring),
`--step` (a drip, each step relative to when a contact entered the segment), or none
(manual: `campaigns send NAME --now`).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from campaigns.audience.suppression import check_channel
from campaigns.audience.topics import get_topic
from campaigns.config import Settings
from campaigns.errors import ConflictError, InputError, NotFoundError
from campaigns.journey_defs import FilterCheck, TemplateCheck, lint_journey, parse_journey, templates_in
from campaigns.messages.templates_store import lint_template, load_template
from campaigns.store.models import Campaign, Delivery, DripEnrollment, Segment
from campaigns.timespec import (
    check_timezone,
    parse_cap,
    parse_clock_range,
    parse_datetime,
    parse_duration,
    utcnow,
)
from campaigns.vocab import DeliveryState, WinnerMetric, values

LATE_POLICIES = ("skip", "send")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass
class CampaignSpec:
    """What the marketer typed; every field optional on edit."""

    segment: str | None = None
    channel: str | None = None
    template: str | None = None
    at: str | None = None
    cron: str | None = None
    steps: list[str] = field(default_factory=list)
    timezone: str | None = None
    local_time: bool | None = None
    quiet_hours: str | None = None
    cap: str | None = None
    throttle: str | None = None
    holdout: str | None = None
    variants: list[str] = field(default_factory=list)
    attribution_window: str | None = None
    utm_campaign: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    grace: str | None = None
    late: str | None = None
    cost_per_message: float | None = None
    transactional: bool | None = None
    trigger: str | None = None
    offset: str | None = None
    exit_when: str | None = None
    goal: str | None = None
    reentry: str | None = None
    test_share: str | None = None
    winner_after: str | None = None
    winner_by: str | None = None
    topic: str | None = None  # a topic's name; "none" takes the topic away (edit)
    journey: str | None = None  # a branching journey's TOML text (`--journey FILE.toml`)
    journey_source: str = "journey"  # its file name, for the mistakes' FILE:LINE


def parse_percent(text: str, what: str = "--holdout") -> float:
    """'10%' or '10' -> 10.0, between 0 and 100 (exclusive of 100)."""
    m = re.match(r"^\s*(\d+(?:\.\d+)?)\s*%?\s*$", str(text))
    if not m or not 0 <= float(m.group(1)) < 100:
        raise InputError(f"{what}: '{text}' is not a percentage from 0 to 99 (e.g. 10%)")
    return float(m.group(1))


def parse_test_share(text: str) -> float | None:
    """'20%' -> 20.0, strictly between 0 and 100; 'none' / 'off' -> None (everyone gets the split)."""
    if str(text).strip().lower() in ("none", "off"):
        return None
    m = re.match(r"^\s*(\d+(?:\.\d+)?)\s*%?\s*$", str(text))
    if not m or not 0 < float(m.group(1)) < 100:
        raise InputError(f"--test-share: '{text}' is not a percentage between 0 and 100, both excluded (e.g. 20%)")
    return float(m.group(1))


def _apply_winner(c: Campaign, spec: CampaignSpec) -> None:
    """--test-share, --winner-after, --winner-by: set together, and only with two or more variants."""
    if spec.test_share is not None:
        c.test_share_pct = parse_test_share(spec.test_share)
    if spec.winner_after is not None:
        after = parse_duration(spec.winner_after, "--winner-after")
        if after.total_seconds() < 60:
            raise InputError(f"--winner-after: '{spec.winner_after}' is too short to measure anything; give at least 1m (e.g. 4h)")
        c.winner_after_seconds = int(after.total_seconds())
    if spec.winner_by is not None:
        if spec.winner_by not in values(WinnerMetric):
            raise InputError(f"--winner-by: '{spec.winner_by}' is not one of {', '.join(values(WinnerMetric))}")
        c.winner_by = spec.winner_by
    if c.test_share_pct is None:
        if spec.winner_after is not None or spec.winner_by is not None:
            raise InputError("--winner-after/--winner-by: give --test-share too (e.g. --test-share 20%)")
        c.winner_after_seconds = c.winner_by = None  # 'none' switched the test off
        return
    if c.winner_after_seconds is None:
        raise InputError("--winner-after: required with --test-share (e.g. --winner-after 4h)")
    c.winner_by = c.winner_by or WinnerMetric.CLICKS.value
    if len(c.variants or []) < 2:
        raise InputError("--test-share: needs two or more --variant to test (e.g. --variant A:welcome:50 --variant B:promo:50)")
    if c.schedule_kind == "drip":
        raise InputError("--test-share: not for drips (--step); each contact enters a drip at their own time")


def parse_throttle(text: str) -> int | None:
    """'600/min', '10/s', '3600/h' -> messages per minute; '' / 'none' -> None."""
    if str(text).strip().lower() in ("", "none", "off"):
        return None
    m = re.match(r"^\s*(\d+)\s*/\s*(s|sec|m|min|h|hour)\s*$", str(text))
    if not m or int(m.group(1)) < 1:
        raise InputError(f"--throttle: '{text}' is not a rate like 600/min, 10/s or 3600/h")
    n, unit = int(m.group(1)), m.group(2)
    per_minute = n * 60 if unit in ("s", "sec") else n if unit in ("m", "min") else max(1, n // 60)
    return per_minute


def parse_step(text: str) -> dict[str, Any]:
    """'3d:tips' -> {"offset_seconds": 259200, "template": "tips"}."""
    offset, sep, template = str(text).partition(":")
    if not sep or not template.strip():
        raise InputError(f"--step: '{text}' is not OFFSET:TEMPLATE like 3d:tips")
    return {"offset_seconds": int(parse_duration(offset.strip(), "--step").total_seconds()), "template": template.strip()}


def parse_variant(text: str) -> dict[str, Any]:
    """'A:tmpl_a:50' -> {"name": "A", "template": "tmpl_a", "weight": 50}."""
    parts = str(text).split(":")
    if len(parts) != 3 or not parts[0] or not parts[1] or not parts[2].isdigit() or int(parts[2]) < 1:
        raise InputError(f"--variant: '{text}' is not NAME:TEMPLATE:WEIGHT like A:welcome_a:50")
    return {"name": parts[0], "template": parts[1], "weight": int(parts[2])}


def check_cron(expr: str, tz: str) -> str:
    """A five-field crontab expression, or a clear error."""
    try:
        CronTrigger.from_crontab(expr, timezone=check_timezone(tz))
    except (ValueError, TypeError) as exc:
        raise InputError(f"--cron: '{expr}' is not a crontab expression like '0 10 1 * *' ({exc})") from None
    return expr


def templates_of(campaign: Campaign) -> list[str]:
    """Every template the campaign may send."""
    names = [v["template"] for v in campaign.variants] if campaign.variants else []
    names += [s["template"] for s in campaign.steps]
    names += templates_in(campaign.journey)
    if campaign.template_name:
        names.append(campaign.template_name)
    return sorted(set(names))


def check_ready(session: Session, settings: Settings, campaign: Campaign) -> None:
    """Refuse to schedule a campaign whose segment or templates are missing or broken."""
    if campaign.segment_id is None or session.get(Segment, campaign.segment_id) is None:
        raise NotFoundError(f"campaign {campaign.name}: its segment no longer exists")
    names = templates_of(campaign)
    if not names:
        raise InputError(f"campaign {campaign.name}: give --template, --variant or --step")
    for name in names:
        tmpl = load_template(settings, name)
        if tmpl.channel != campaign.channel:
            raise InputError(f"template {name} is for {tmpl.channel}, but campaign {campaign.name} sends {campaign.channel}")
        errors = [i.message for i in lint_template(settings, name) if i.level == "error"]
        if errors:
            raise InputError(f"template {name} does not lint clean: {errors[0]} (run `campaigns templates lint {name}`)")


def _apply(session: Session, settings: Settings, c: Campaign, spec: CampaignSpec, now: datetime | None = None) -> None:
    if spec.segment is not None:
        seg = session.scalar(select(Segment).where(Segment.name == spec.segment))
        if seg is None:
            raise NotFoundError(f"--segment: no segment '{spec.segment}' (see `campaigns segments list`)")
        c.segment_id = seg.id
    if spec.channel is not None:
        c.channel = check_channel(spec.channel)
    if spec.timezone is not None:
        check_timezone(spec.timezone, "--timezone")
        c.timezone = spec.timezone
    if spec.template is not None:
        c.template_name = spec.template
    if (spec.journey is not None or spec.steps) and c.journey and c.id is not None and session.scalar(
            select(DripEnrollment.id).where(DripEnrollment.campaign_id == c.id).limit(1)) is not None:
        raise ConflictError(f"campaign {c.name} has contacts in its journey; its steps cannot change under them "
                            f"(clone it with `campaigns clone {c.name} NEW`, edit the copy, cancel this one)")
    if spec.journey is not None:
        if spec.steps or spec.at or spec.cron:
            raise InputError("--journey: the journey is the schedule; leave out --step, --at and --cron")
        templates, filters = journey_checks(session, settings)
        c.journey = parse_journey(spec.journey, spec.journey_source, templates=templates, filters=filters)
        c.schedule_kind, c.steps, c.send_at, c.cron = "drip", [], None, None
    elif spec.steps and c.journey:
        c.journey = None  # --step on edit: a linear drip replaces the journey
    at = _apply_trigger(session, settings, c, spec)
    spec = replace(spec, at=at)
    schedules = [x for x in (spec.at, spec.cron, spec.steps or None) if x]
    if len(schedules) > 1:
        raise InputError("choose one schedule: --at, --cron or --step")
    if spec.at:
        c.schedule_kind, c.send_at, c.cron, c.steps = "once", parse_datetime(spec.at, c.timezone, "--at"), None, []
    elif spec.cron:
        c.schedule_kind, c.cron, c.send_at, c.steps = "cron", check_cron(spec.cron, c.timezone), None, []
    elif spec.steps:
        c.schedule_kind, c.steps, c.send_at, c.cron = "drip", [parse_step(s) for s in spec.steps], None, None
    if spec.local_time is not None:
        c.local_time = spec.local_time
    if spec.quiet_hours is not None:
        c.quiet_hours = str(parse_clock_range(spec.quiet_hours, "--quiet-hours") or "none")
    if spec.cap is not None:
        c.frequency_cap = str(parse_cap(spec.cap, "--cap") or "none")
    if spec.throttle is not None:
        c.throttle_per_minute = parse_throttle(spec.throttle)
    if spec.holdout is not None:
        c.holdout_pct = parse_percent(spec.holdout)
    if spec.variants:
        variants = [parse_variant(v) for v in spec.variants]
        if len({v["name"] for v in variants}) != len(variants):
            raise InputError("--variant: each variant needs its own name")
        c.variants = variants
    if spec.attribution_window is not None:
        c.attribution_window_seconds = int(parse_duration(spec.attribution_window, "--attribution-window").total_seconds())
    if spec.utm_campaign is not None:
        c.utm = {**(c.utm or {}), "campaign": spec.utm_campaign}
    for key, value in (("source", spec.utm_source), ("medium", spec.utm_medium)):
        if value is not None:
            c.utm = {**(c.utm or {}), key: value}
    if spec.grace is not None:
        c.grace_seconds = int(parse_duration(spec.grace, "--grace").total_seconds())
    if spec.cost_per_message is not None:
        if spec.cost_per_message < 0:
            raise InputError("--cost: must not be negative")
        c.cost_per_message = spec.cost_per_message
    if spec.transactional is not None:
        c.marketing = not spec.transactional
    if spec.topic is not None:
        c.topic = None if spec.topic.strip().lower() in ("", "none") else get_topic(session, spec.topic.strip())
    if spec.late is not None:
        if spec.late not in LATE_POLICIES:
            raise InputError(f"--late: '{spec.late}' is not one of {', '.join(LATE_POLICIES)}")
        c.late_policy = spec.late
    _apply_winner(c, spec)
    if spec.at:
        _refuse_past(c, spec.at, now or utcnow())


def _apply_trigger(session: Session, settings: Settings, c: Campaign, spec: CampaignSpec) -> str | None:
    """--trigger, --offset, --exit-when, --goal, --reentry; returns --at unless a date trigger took it as its clock."""
    from campaigns.segments import compile_where
    from campaigns.triggers import parse_clock, parse_offset, parse_reentry, parse_trigger

    at = spec.at
    if spec.trigger is not None:
        trigger = parse_trigger(spec.trigger)
        c.trigger = None if trigger.kind == "segment" else str(trigger)
        if trigger.kind != "segment" and not (spec.steps or c.steps or c.journey):
            raise InputError(f"--trigger {trigger}: give the steps it starts, as in --step 0d:thanks")
    trigger = parse_trigger(c.trigger)
    if trigger.kind == "date":
        if at:
            c.trigger_clock, at = parse_clock(at), None
        c.trigger_clock = c.trigger_clock or "09:00"
        if spec.offset is not None:
            c.trigger_offset_seconds = parse_offset(spec.offset)
    elif spec.offset is not None:
        raise InputError("--offset: only a date trigger takes one (as in --trigger date:attributes.birthday --offset -7d)")
    elif c.trigger and at:
        raise InputError(f"--at: a {trigger.kind} trigger sends when it happens; give --step offsets instead")
    for option, text, attr in (("--exit-when", spec.exit_when, "exit_when"), ("--goal", spec.goal, "goal")):
        if text is not None:
            try:
                compile_where(text, settings, session=session)
            except InputError as exc:
                raise InputError(f"{option}: {exc}") from None
            setattr(c, attr, text.strip() or None)
    if spec.reentry is not None:
        c.reentry = parse_reentry(spec.reentry, trigger)
    return at


def journey_checks(session: Session, settings: Settings) -> tuple[TemplateCheck, FilterCheck]:
    """The two checks a journey's lint needs from the world: the template exists, the filter parses."""
    from campaigns.segments import compile_where

    def template(name: str) -> str | None:
        try:
            load_template(settings, name)
        except (InputError, NotFoundError) as exc:
            return str(exc)
        return None

    def where(text: str) -> str | None:
        try:
            compile_where(text, settings, session=session)
        except InputError as exc:
            return str(exc)
        return None

    return template, where


def lint_journey_text(session: Session, settings: Settings, text: str, source: str) -> list[str]:
    """Every mistake of a journey file, one line each (empty: it is good)."""
    templates, filters = journey_checks(session, settings)
    return lint_journey(text, source, templates=templates, filters=filters)[1]


def utm_defaults(settings: Settings, channel: str) -> dict[str, str]:
    """utm_source and utm_medium for a channel from [tracking] (empty values are left out of links)."""
    t = settings.tracking
    source, medium = (t.utm_source_sms, t.utm_medium_sms) if channel == "sms" else (t.utm_source_email, t.utm_medium_email)
    return {"source": source, "medium": medium}


def one_off_passed(c: Campaign, now: datetime) -> bool:
    """A one-off whose time is gone (local time: gone in every zone) would never fire."""
    if c.schedule_kind != "once" or c.send_at is None:
        return False
    moment = c.send_at
    if c.local_time:  # the wall-clock time read in the latest zone on Earth (UTC-12)
        moment = c.send_at.astimezone(check_timezone(c.timezone)).replace(tzinfo=UTC) + timedelta(hours=12)
    return moment <= now


def _refuse_past(c: Campaign, text: str, now: datetime) -> None:
    """A one-off time already gone would never fire: say so now."""
    if one_off_passed(c, now):
        raise InputError(f"--at: '{text}' is in the past (now is {now.astimezone(check_timezone(c.timezone)):%Y-%m-%d %H:%M} "
                         f"{c.timezone}); give a future time, or send now with `campaigns send NAME --now`")


def create_campaign(session: Session, settings: Settings, name: str, spec: CampaignSpec, now: datetime | None = None, *,
                    activate: bool = False) -> Campaign:
    """A new campaign after all checks pass: a draft the daemon ignores, unless `activate`.

    `now` is when it is created (default: the clock); a simulation (the demo) gives its own.
    """
    if not _NAME.match(name):
        raise InputError(f"NAME: '{name}' must be letters, digits, '.', '_' or '-' (up to 100)")
    if session.scalar(select(Campaign.id).where(Campaign.name == name)):
        raise ConflictError(f"a campaign named {name} already exists (use `campaigns edit`)")
    if spec.segment is None or spec.channel is None:
        raise InputError("--segment and --channel are required")
    now = now or utcnow()
    c = Campaign(name=name, channel="email", segment_id=0, schedule_kind="manual", timezone=settings.timezone,
                 variants=[], steps=[], utm={"campaign": name}, holdout_pct=0.0,
                 attribution_window_seconds=int(parse_duration(settings.policy.attribution_window).total_seconds()),
                 marketing=True, local_time=False, late_policy="skip", status="draft", created_at=now, updated_at=now)
    _apply(session, settings, c, spec, now)
    c.utm = {**utm_defaults(settings, c.channel), **c.utm}  # what the marketer gave wins
    check_ready(session, settings, c)
    session.add(c)
    session.flush()
    if activate:
        activate_campaign(session, settings, name, now)
    return c


def get_campaign(session: Session, name: str) -> Campaign:
    """A campaign by name, or NotFoundError."""
    c = session.scalar(select(Campaign).where(Campaign.name == name))
    if c is None:
        raise NotFoundError(f"no campaign '{name}' (see `campaigns list`)")
    return c


def edit_campaign(session: Session, settings: Settings, name: str, spec: CampaignSpec) -> Campaign:
    """Change a campaign; the result must pass the same checks as a new one."""
    c = get_campaign(session, name)
    if c.status in ("cancelled", "completed", "archived"):
        raise ConflictError(f"campaign {name} is {c.status}; copy it with `campaigns clone {name} NEW` instead")
    old_defaults = utm_defaults(settings, c.channel)
    _apply(session, settings, c, spec)
    new_defaults = utm_defaults(settings, c.channel)
    if new_defaults != old_defaults:  # a new channel: its defaults replace the old channel's, not the marketer's own
        c.utm = {**c.utm, **{k: v for k, v in new_defaults.items() if c.utm.get(k) == old_defaults.get(k)
                             and getattr(spec, f"utm_{k}") is None}}
    check_ready(session, settings, c)
    c.updated_at = utcnow()
    session.flush()
    return c


def set_status(session: Session, name: str, action: str, reason: str | None = None) -> Campaign:
    """pause | resume | cancel, with the transitions that make sense."""
    c = get_campaign(session, name)
    allowed = {"pause": ("scheduled", "draft"), "resume": ("paused",), "cancel": ("scheduled", "paused", "draft")}
    if c.status not in allowed[action]:
        raise ConflictError(f"campaign {name} is {c.status}; it cannot be {action}d")
    if action == "pause":
        c.status, c.status_reason = "paused", reason or "paused by the marketer"
    elif action == "resume":
        c.status, c.status_reason = ("scheduled" if c.schedule_kind != "manual" else "draft"), None
    else:
        c.status, c.status_reason = "cancelled", reason or "cancelled by the marketer"
        session.execute(update(Delivery).where(Delivery.campaign_id == c.id, Delivery.state.in_(("queued", "retry_wait", DeliveryState.WAITING)))
                        .values(state="cancelled", updated_at=utcnow()))
    c.updated_at = utcnow()
    session.flush()
    return c


def describe(c: Campaign) -> dict[str, Any]:
    """A campaign as plain values for tables and JSON."""
    schedule = {"once": lambda: c.send_at, "cron": lambda: c.cron,
                "drip": lambda: (f"journey of {len(c.journey['steps'])} steps" if c.journey else
                                 ", ".join(f"{s['offset_seconds'] // 86400}d:{s['template']}" for s in c.steps)),
                "manual": lambda: "manual (campaigns send --now)"}[c.schedule_kind]()
    segment, definition = c.target()
    return {
        "name": c.name, "channel": c.channel, "segment": segment, "segment_definition": definition,
        "template": c.template_name, "variants": c.variants, "schedule_kind": c.schedule_kind,
        "schedule": schedule, "timezone": c.timezone, "local_time": c.local_time, "late_policy": c.late_policy,
        "quiet_hours": c.quiet_hours, "frequency_cap": c.frequency_cap, "throttle_per_minute": c.throttle_per_minute,
        "holdout_pct": c.holdout_pct, **c.winner_settings(), "attribution_window": f"{c.attribution_window_seconds // 3600}h",
        "topic": c.topic.name if c.topic else c.topic_name,
        "utm": c.utm, "marketing": c.marketing, "status": c.status, "status_reason": c.status_reason,
        "trigger": _trigger_text(c), "exit_when": c.exit_when, "goal": c.goal, "reentry": c.reentry,
        "created_at": c.created_at, "updated_at": c.updated_at,
    }


def _trigger_text(c: Campaign) -> str | None:
    """'date:attributes.birthday at 09:00 -7d', 'purchase', or None for non-drips."""
    if c.schedule_kind != "drip":
        return None
    text = c.trigger or "segment"
    if c.trigger_clock:
        text += f" at {c.trigger_clock}"
    if c.trigger_offset_seconds:
        days = c.trigger_offset_seconds / 86400
        text += f" {'+' if days > 0 else ''}{days:g}d"
    return text


def grace_for(settings: Settings, c: Campaign) -> timedelta:
    """How late a missed firing may still run."""
    return timedelta(seconds=c.grace_seconds) if c.grace_seconds is not None else timedelta(minutes=settings.policy.grace_minutes)



# The lifecycle: new -> draft -> (activate) -> scheduled -> completed | cancelled.
# A draft is never planned by the daemon; `campaigns send NAME --now` still sends one on demand.

def activate_campaign(session: Session, settings: Settings, name: str, now: datetime | None = None) -> Campaign:
    """Make a draft live: the daemon plans it from now on (no firing before `activated_at`).
    Checks run again first."""
    c = get_campaign(session, name)
    if c.status != "draft":
        raise ConflictError(f"campaign {name} is {c.status}; only a draft can be activated")
    if c.schedule_kind == "manual":
        raise InputError(f"campaign {name} has no schedule: give it --at, --cron or --step with "
                         f"`campaigns edit`, or send it once with `campaigns send {name} --now`")
    now = now or utcnow()
    if one_off_passed(c, now):  # a clone of last month's one-off: live, but it would never fire
        assert c.send_at is not None
        raise InputError(f"campaign {name} is set to send once at {c.send_at.astimezone(check_timezone(c.timezone)):%Y-%m-%d %H:%M} "
                         f"{c.timezone}, which has passed; give it a new time with `campaigns edit {name} --at ...`, then activate")
    check_ready(session, settings, c)
    c.status, c.status_reason, c.updated_at, c.activated_at = "scheduled", None, now, now
    session.flush()
    return c


def clone_campaign(session: Session, settings: Settings, name: str, new_name: str, topic: str | None = None) -> Campaign:
    """A draft copy of a campaign's definition (not its runs or messages) under a new name
    (about `topic` instead of the source's, when given; 'none' for no topic)."""
    src = get_campaign(session, name)
    segment_id = src.segment_id if src.segment_id is not None else _segment_again(session, src)
    if not _NAME.match(new_name):
        raise InputError(f"NEW: '{new_name}' must be letters, digits, '.', '_' or '-' (up to 100)")
    if session.scalar(select(Campaign.id).where(Campaign.name == new_name)):
        raise ConflictError(f"a campaign named {new_name} already exists")
    now = utcnow()
    utm = dict(src.utm or {})
    if utm.get("campaign") == src.name:  # the default utm_campaign follows the name
        utm["campaign"] = new_name
    copy = Campaign(
        name=new_name, channel=src.channel, segment_id=segment_id, template_name=src.template_name,
        variants=list(src.variants or []), schedule_kind=src.schedule_kind, send_at=src.send_at, cron=src.cron,
        steps=list(src.steps or []), timezone=src.timezone, local_time=src.local_time, quiet_hours=src.quiet_hours,
        frequency_cap=src.frequency_cap, throttle_per_minute=src.throttle_per_minute, holdout_pct=src.holdout_pct,
        test_share_pct=src.test_share_pct, winner_after_seconds=src.winner_after_seconds, winner_by=src.winner_by,
        attribution_window_seconds=src.attribution_window_seconds, utm=utm, marketing=src.marketing,
        grace_seconds=src.grace_seconds, cost_per_message=src.cost_per_message, topic_id=src.topic_id, status="draft",
        trigger=src.trigger, trigger_offset_seconds=src.trigger_offset_seconds, trigger_clock=src.trigger_clock,
        exit_when=src.exit_when, goal=src.goal, reentry=src.reentry, journey=src.journey,
        created_at=now, updated_at=now)
    if topic is not None:
        copy.topic = None if topic.strip().lower() in ("", "none") else get_topic(session, topic.strip())
    session.add(copy)
    session.flush()
    return copy


def _segment_again(session: Session, src: Campaign) -> int:
    """An archived campaign's segment was deleted: a segment made again under its name, or say how."""
    seg = session.scalar(select(Segment.id).where(Segment.name == src.segment_name))
    if seg is None:
        where = shlex.quote(src.segment_definition or "...")
        raise NotFoundError(f"campaign {src.name} targeted segment '{src.segment_name}', which has been deleted; "
                            f"create it again with `campaigns segments create {src.segment_name} --where {where}`, "
                            "then clone")
    return seg


def delete_campaign(session: Session, name: str) -> None:
    """Delete a draft that never sent anything (a campaign with history is cancelled, not deleted)."""
    c = get_campaign(session, name)
    if c.status != "draft":
        raise ConflictError(f"campaign {name} is {c.status}; only a draft can be deleted "
                            f"(cancel it with `campaigns cancel {name}` to stop it)")
    if session.scalar(select(Delivery.id).where(Delivery.campaign_id == c.id).limit(1)) is not None:
        raise ConflictError(f"campaign {name} has messages in its history; it cannot be deleted "
                            "(its reports depend on them)")
    session.delete(c)
    session.flush()


def last_transport_error(session: Session, campaign_id: int) -> tuple[str, Any] | None:
    """The latest error a transport gave for one of the campaign's messages, and when, or None.

    A TLS or login failure leaves messages waiting for a retry; this is what `show`,
    `status` and `send --now` print so the cause is not only in the database.
    """
    row = session.execute(
        select(Delivery.error, Delivery.updated_at)
        .where(Delivery.campaign_id == campaign_id, Delivery.error.is_not(None),
               Delivery.state.in_(("retry_wait", "failed", "unknown")))
        .order_by(Delivery.updated_at.desc(), Delivery.id.desc()).limit(1)).first()
    return (str(row[0]), row[1]) if row else None


def archive_campaign(session: Session, name: str) -> Campaign:
    """Put a finished (completed, cancelled or sent) campaign away: hidden from `list`, its reports kept.

    It frees its segment and its topic (`segments delete` and `topics delete` no longer count
    it): the segment's name and definition and the topic's name are copied onto the campaign,
    so `show` and `report` still say what it targeted and what it was about.
    """
    c = get_campaign(session, name)
    if c.status not in ("completed", "cancelled", "sent"):
        raise ConflictError(f"campaign {name} is {c.status}; only a completed, cancelled or sent campaign can be archived"
                            + (f" (cancel it first with `campaigns cancel {name}`)" if c.status in ("scheduled", "paused", "draft") else ""))
    c.segment_name, c.segment_definition = c.target()
    c.topic_name = c.topic.name if c.topic else None
    c.status, c.updated_at = "archived", utcnow()
    session.flush()
    return c
