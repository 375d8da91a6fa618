"""The A/B winner of one firing's test share: the figures by the chosen metric, and the decision.

The test share's contacts are compared per variant (intention to treat: every contact
assigned a variant whose message was due, sent or not) by the campaign's `winner_by`:
clicks (contacts with a human click), conversions (contacts who bought inside the
attribution window) or revenue (per contact). campaigns/reports/abtest.compare tests each
variant against the best, Holm-adjusted. The rest of the audience is then sent:
- the best, when it is significantly better than every other variant;
- otherwise still the best observed (the marketer set a deadline, and the best estimate is
  the better bet than a coin), and when nothing tells the variants apart at all (every
  score equal, e.g. no clicks yet), the first variant listed: the control.
The reason is written into the decision, which is stored on the firing (campaign_run).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from campaigns.reports import itt
from campaigns.reports.abtest import Arm, compare
from campaigns.store.models import Campaign, Delivery, Event
from campaigns.vocab import DeliveryState, EventType, WinnerMetric


def arms(session: Session, c: Campaign, run_id: int, now: datetime) -> dict[str, Arm]:
    """Each variant's test share in that firing, by the campaign's metric, in the order the variants were given."""
    names = [v["name"] for v in c.variants]
    metric = c.winner_by or WinnerMetric.CLICKS
    if metric == WinnerMetric.CLICKS:
        d = Delivery
        test = (d.run_id == run_id, d.is_holdout.is_(False), d.ab_remainder.is_(False), d.state != DeliveryState.WAITING,
                func.coalesce(d.sent_at, d.due_at) <= now)
        contacts = dict(session.execute(select(d.variant, func.count(distinct(d.contact_id))).where(*test).group_by(d.variant)).all())
        clicked = dict(session.execute(
            select(d.variant, func.count(distinct(d.contact_id))).join(Event, Event.delivery_id == d.id)
            .where(*test, Event.type == EventType.CLICK, Event.is_machine.is_(False), Event.occurred_at <= now)
            .group_by(d.variant)).all())
        return {n: Arm(int(contacts.get(n, 0)), int(clicked.get(n, 0))) for n in names}
    found = itt.summary(session, c, now, run_id=run_id, test_only=True)
    out = {}
    for n in names:
        g = itt.group(found, False, n)
        out[n] = Arm(g.contacts, g.converters, g.buyer_revenue)
    return out


def decide(c: Campaign, found: dict[str, Arm], now: datetime) -> dict[str, Any]:
    """The decision record: winner, its template, metric, the test (p-values) and why."""
    metric = c.winner_by or WinnerMetric.CLICKS
    test = compare(found, metric)
    winner = test["best"]
    if test["significant"]:
        reason = f"{winner} is significantly better than every other variant by {metric} (Holm-adjusted p < 0.05)"
    elif test["tied"]:
        winner = c.variants[0]["name"]
        reason = (f"no difference observed by {metric} (all variants equal): the rest get the first variant "
                  f"listed, {winner}, the control")
    else:
        reason = (f"no variant is significantly better by {metric}: the rest get the best observed, {winner}, "
                  "as the deadline leaves no more time to test")
    template = next(v["template"] for v in c.variants if v["name"] == winner)
    return {"winner": winner, "template": template, "metric": metric, "significant": test["significant"],
            "reason": reason, "method": test["method"], "variants": test["variants"], "decided_at": now.isoformat()}
