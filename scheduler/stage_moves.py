"""`--trigger lifecycle:STAGE` enrols on the move into the stage, not for being in it.

Each evaluation lists who is in the stage (within the campaign's segment) now and compares
with the list kept from the last one (`stage_member`): those in now and not then moved in.
The first evaluation only takes the list (whoever is already at risk when the campaign goes
live did not move: they are not enrolled). Those who left the stage are dropped from the
list, so a contact who comes back and moves in again enrols again if `--reentry` allows it.
A contact who moved in while not messageable (no consent, suppressed) is not enrolled later:
the move is gone. The list is rewritten in the tick's transaction: a daemon killed
mid-evaluation leaves the old list and the next tick sees the same moves.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from campaigns.config import Settings
from campaigns.segments import members_query
from campaigns.store.models import Campaign, CampaignRun, Segment, StageMember

CHUNK = 5000


def moved_in(session: Session, settings: Settings, c: Campaign, stage: Segment, run: CampaignRun,
             now: datetime) -> list[int]:
    """Contacts in the stage now who were not at the last evaluation (none at the first); the list is updated."""
    members = members_query(session, stage, settings, at=now).subquery()
    current = set(session.scalars(select(members.c.id)))
    before = set(session.scalars(select(StageMember.contact_id).where(StageMember.campaign_id == c.id)))
    first = not (run.counts or {}).get("stage_baseline")
    gone, new = sorted(before - current), sorted(current - before)
    for i in range(0, len(gone), CHUNK):
        session.execute(delete(StageMember).where(StageMember.campaign_id == c.id,
                                                  StageMember.contact_id.in_(gone[i:i + CHUNK])))
    for i in range(0, len(new), CHUNK):
        session.execute(insert(StageMember), [{"campaign_id": c.id, "contact_id": cid} for cid in new[i:i + CHUNK]])
    if first:
        run.counts = {**(run.counts or {}), "stage_baseline": True}
        return []
    return new
