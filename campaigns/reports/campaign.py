"""One campaign's report as plain data (the JSON schema in docs/reports.md), aggregated in SQL."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from campaigns.config import Settings
from campaigns.models import (
    Attribution,
    Campaign,
    CampaignRun,
    Delivery,
    Event,
    Purchase,
)
from campaigns.reports import itt
from campaigns.reports.abtest import variant_test
from campaigns.reports.stats import lift, ratio
from campaigns.timespec import utcnow

SKIPS = ("no_consent", "suppressed", "capped", "invalid_address")


def _bucket(session: Session, column: Any, unit: str) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.date_trunc(unit, column), "YYYY-MM-DD HH24:00" if unit == "hour" else "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d %H:00" if unit == "hour" else "%Y-%m-%d", column)


def _deliveries_with(session: Session, c: Campaign, kind: str, machine: bool | None = False) -> int:
    """How many of the campaign's deliveries have at least one event of `kind` (machine: False, True or None = any)."""
    q = select(func.count(distinct(Event.delivery_id))).where(Event.campaign_id == c.id, Event.type == kind)
    if machine is not None:
        q = q.where(Event.is_machine.is_(machine))
    return session.scalar(q) or 0


def campaign_report(session: Session, settings: Settings, c: Campaign, now: datetime | None = None) -> dict[str, Any]:
    """Funnel, rates, lift, breakdowns and timeline for one campaign.

    The funnel's converted and revenue are attributed (credit, campaigns/attribution.py);
    the lift compares intention-to-treat groups and never reads the credit.
    """
    d = Delivery
    states = dict(session.execute(select(d.state, func.count()).where(d.campaign_id == c.id).group_by(d.state)).all())
    runs = list(session.scalars(select(CampaignRun).where(CampaignRun.campaign_id == c.id)))
    in_segment = sum((r.counts or {}).get("in_segment", 0) for r in runs)
    skipped = {k: sum((r.counts or {}).get("skipped", {}).get(k, 0) for r in runs) for k in SKIPS}
    sent = states.get("sent", 0)
    bounced = _deliveries_with(session, c, "bounce", None)
    opened = _deliveries_with(session, c, "open")
    clicked = _deliveries_with(session, c, "click")
    unsubscribed = _deliveries_with(session, c, "unsubscribe", None)
    complaints = _deliveries_with(session, c, "complaint", None)
    any_open = _deliveries_with(session, c, "open", None)
    a = Attribution
    treated_conv, treated_rev = session.execute(select(func.count(distinct(a.contact_id)), func.coalesce(func.sum(a.credited_cents), 0))
                                                .where(a.campaign_id == c.id, a.is_holdout.is_(False))).one()
    treated_n = session.scalar(select(func.count(distinct(d.contact_id))).where(d.campaign_id == c.id, d.state == "sent")) or 0
    treated_rev = int(treated_rev)
    revenue = treated_rev / 100
    per_message = c.cost_per_message if c.cost_per_message is not None else (
        settings.sending.cost_per_sms if c.channel == "sms" else settings.sending.cost_per_email)
    cost = round(sent * per_message, 2) if per_message else None
    funnel = {
        "in_segment": in_segment, "held_out": states.get("held_out", 0), "skipped": skipped,
        "planned": sum(states.values()) - states.get("held_out", 0), "queued": states.get("queued", 0) + states.get("retry_wait", 0),
        "sent": sent, "delivered": max(0, sent - bounced), "failed": states.get("failed", 0), "unknown": states.get("unknown", 0),
        "suppressed_at_send": states.get("suppressed", 0), "bounced": bounced, "opened": opened,
        "opened_machine_only": any_open - opened, "clicked": clicked, "unsubscribed": unsubscribed,
        "complaints": complaints, "converted": treated_conv, "revenue": revenue,
        "revenue_per_recipient": ratio(revenue, sent), "cost": cost,
        "roi": None, "roi_ci95": None, "roi_attributed": (revenue - cost) / cost if cost else None,
    }
    found = itt.outcomes(session, c, now or utcnow())
    lf = lift(itt.group(found, False), itt.group(found, True))
    if cost and lf["incremental_revenue"] is not None:
        # What the campaign caused (the holdout says), not what attribution credited it with.
        funnel["roi"] = (lf["incremental_revenue"] - cost) / cost
        funnel["roi_ci95"] = [(v - cost) / cost for v in lf["incremental_revenue_ci95"]]
    rates = {
        "delivery_rate": ratio(funnel["delivered"], sent), "open_rate": ratio(opened, funnel["delivered"]),
        "click_rate": ratio(clicked, funnel["delivered"]), "click_to_open": ratio(clicked, opened),
        "unsubscribe_rate": ratio(unsubscribed, funnel["delivered"]), "conversion_rate": ratio(treated_conv, treated_n),
    }
    return {
        "campaign": {"name": c.name, "channel": c.channel, "status": c.status, "status_reason": c.status_reason,
                     "holdout_pct": c.holdout_pct, "attribution_window_hours": c.attribution_window_seconds // 3600},
        "funnel": funnel, "rates": rates,
        "lift": lf, "ab_test": variant_test(found),
        "by_variant": _breakdown(session, c, d.variant), "by_lifecycle": _breakdown(session, c, d.lifecycle_stage),
        "by_rfm_segment": _breakdown(session, c, d.rfm_segment), "timeline": _timeline(session, c),
    }


def _breakdown(session: Session, c: Campaign, column: Any) -> list[dict[str, Any]]:
    d = Delivery
    sent: dict[Any, int] = dict(session.execute(select(column, func.count()).where(d.campaign_id == c.id, d.state == "sent").group_by(column)).all())
    out = {}
    for key, n in sent.items():
        out[key] = {"group": key, "sent": n, "opened": 0, "clicked": 0, "converted": 0, "revenue": 0.0}
    for kind in ("open", "click"):
        rows = session.execute(select(column, func.count(distinct(Event.delivery_id))).join(Event, Event.delivery_id == d.id)
                               .where(d.campaign_id == c.id, Event.type == kind, Event.is_machine.is_(False)).group_by(column))
        for key, n in rows:
            if key in out:
                out[key]["opened" if kind == "open" else "clicked"] = n
    rows = session.execute(select(column, func.count(distinct(Attribution.contact_id)), func.sum(Attribution.credited_cents))
                           .join(Attribution, Attribution.delivery_id == d.id)
                           .where(d.campaign_id == c.id, Attribution.is_holdout.is_(False)).group_by(column))
    for key, n, cents in rows:
        if key in out:
            out[key]["converted"], out[key]["revenue"] = n, int(cents or 0) / 100
    return sorted(out.values(), key=lambda r: (r["group"] is None, str(r["group"])))


def _timeline(session: Session, c: Campaign) -> dict[str, Any]:
    first_event, last_event = session.execute(select(func.min(Event.occurred_at), func.max(Event.occurred_at))
                                              .where(Event.campaign_id == c.id)).one()
    first_order, last_order = session.execute(select(func.min(Purchase.occurred_at), func.max(Purchase.occurred_at))
                                              .join(Attribution, Attribution.purchase_id == Purchase.id)
                                              .where(Attribution.campaign_id == c.id)).one()
    starts = [t for t in (first_event, first_order) if t is not None]
    ends = [t for t in (last_event, last_order) if t is not None]
    span = (min(starts) if starts else None, max(ends) if ends else None)
    unit = "day" if span[0] and span[1] and span[1] - span[0] > timedelta(days=3) else "hour"
    rows: dict[str, dict[str, Any]] = {}
    for kind in ("open", "click"):
        b = _bucket(session, Event.occurred_at, unit)
        # One per delivery per bucket, like the funnel: a pixel fetched 1,000 times by
        # rotating User-Agents is one open, not 1,000.
        for at, n in session.execute(select(b, func.count(distinct(Event.delivery_id))).where(Event.campaign_id == c.id, Event.type == kind,
                                                                  Event.is_machine.is_(False)).group_by(b)):
            rows.setdefault(at, {"at": at, "opens": 0, "clicks": 0, "orders": 0, "revenue": 0.0})["opens" if kind == "open" else "clicks"] = n
    b = _bucket(session, Purchase.occurred_at, unit)
    for at, n, cents in session.execute(select(b, func.count(), func.sum(Attribution.credited_cents))
                                        .join(Attribution, Attribution.purchase_id == Purchase.id)
                                        .where(Attribution.campaign_id == c.id, Attribution.is_holdout.is_(False)).group_by(b)):
        row = rows.setdefault(at, {"at": at, "opens": 0, "clicks": 0, "orders": 0, "revenue": 0.0})
        row["orders"], row["revenue"] = n, int(cents or 0) / 100
    return {"bucket": unit, "rows": [rows[k] for k in sorted(rows)]}


def overview(session: Session, settings: Settings) -> list[dict[str, Any]]:
    """One row per campaign with the headline figures."""
    out = []
    for c in session.scalars(select(Campaign).order_by(Campaign.id)):
        r = campaign_report(session, settings, c)
        f, lf = r["funnel"], r["lift"]
        out.append({"campaign": c.name, "channel": c.channel, "status": c.status, "sent": f["sent"], "opened": f["opened"],
                    "clicked": f["clicked"], "converted": f["converted"], "revenue": f["revenue"],
                    "lift": lf["absolute"], "verdict": lf["verdict"]})
    return out
