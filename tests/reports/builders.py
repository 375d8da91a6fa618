"""What the report tests' histories start from: a segment, a campaign, one run, contacts."""

from datetime import datetime
from typing import Any

from sqlalchemy import insert

from campaigns.store.models import Campaign, CampaignRun, Contact, Segment


def campaign_with_contacts(s: Any, *, name: str, at: datetime, contacts: int, prefix: str, run_status: str = "done",
                           counts: dict[str, Any] | None = None, **campaign: Any) -> tuple[Campaign, CampaignRun, list[int]]:
    """An email campaign on segment `all` with a run scheduled `at`, and `contacts` new contacts
    (emails `<prefix><i>@example.com`): (campaign, run, contact ids in order)."""
    seg = Segment(name="all", definition='email contains "@"')
    s.add(seg)
    s.flush()
    c = Campaign(name=name, channel="email", segment_id=seg.id, schedule_kind="manual", variants=[], steps=[], utm={},
                 **campaign)
    s.add(c)
    s.flush()
    run = CampaignRun(campaign_id=c.id, scheduled_for=at, status=run_status, counts=counts or {})
    s.add(run)
    s.flush()
    ids = s.connection().execute(insert(Contact).returning(Contact.id, sort_by_parameter_order=True), [
        {"email": f"{prefix}{i}@example.com", "attributes": {}, "tags": []} for i in range(contacts)]).scalars().all()
    return c, run, list(ids)
