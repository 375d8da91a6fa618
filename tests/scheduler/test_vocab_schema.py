"""The database knows the vocabulary: a state, status or type the code does not know is refused."""

from __future__ import annotations

import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from campaigns.store.models import Campaign, CampaignRun, Delivery, Event, Suppression
from campaigns.timespec import utcnow
from campaigns.vocab import CampaignStatus, DeliveryState, EventType
from tests.scheduler.conftest import add_people, make_campaign


def _refused(app, statement) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(IntegrityError), app.engine.begin() as conn:
        conn.execute(statement)


def test_unknown_event_type_state_status_are_refused(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app()
    [cid] = add_people(app, 1)
    campaign = make_campaign(app, "vocab")
    now = utcnow()
    with app.engine.begin() as conn:
        run_id = conn.execute(insert(CampaignRun.__table__).values(
            campaign_id=campaign, scheduled_for=now, status="planned", counts={})).inserted_primary_key[0]
        delivery_id = conn.execute(insert(Delivery.__table__).values(
            run_id=run_id, campaign_id=campaign, contact_id=cid, channel="email", step=0, is_holdout=False,
            state=DeliveryState.QUEUED, attempts=0, due_at=now, created_at=now, updated_at=now)).inserted_primary_key[0]
        # every known event type goes in
        for i, kind in enumerate(EventType):
            conn.execute(insert(Event.__table__).values(delivery_id=delivery_id, type=kind, occurred_at=now,
                                                        is_machine=False, dedup_key=f"k{i}", data={}))
    _refused(app, insert(Event.__table__).values(delivery_id=delivery_id, type="bounced", occurred_at=now,
                                                 is_machine=False, dedup_key="typo", data={}))
    _refused(app, update(Delivery.__table__).where(Delivery.id == delivery_id).values(state="released"))
    _refused(app, update(Campaign.__table__).where(Campaign.id == campaign).values(status="running"))
    _refused(app, update(CampaignRun.__table__).where(CampaignRun.id == run_id).values(status="started"))
    _refused(app, insert(Suppression.__table__).values(channel="email", address_hash="x" * 64, reason="because", since=now))
    _refused(app, update(Delivery.__table__).where(Delivery.id == delivery_id).values(channel="fax"))
    with app.engine.connect() as conn:  # nothing half-written
        assert conn.scalar(select(Delivery.state).where(Delivery.id == delivery_id)) == DeliveryState.QUEUED
        assert conn.scalar(select(Campaign.status).where(Campaign.id == campaign)) in set(CampaignStatus)
