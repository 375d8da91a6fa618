"""store.bulk.insert_rows stores what SQLAlchemy's insert(table) stores (planning writes its rows with it)."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select

from campaigns.store.bulk import insert_rows
from campaigns.store.models import Campaign, CampaignRun, Delivery
from tests.scheduler.conftest import add_people, make_campaign


def test_bulk_rows_read_back_as_an_ordinary_insert_writes_them(make_app):
    app = make_app()
    people = add_people(app, 4)
    cid = make_campaign(app)
    at = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
    with app.session() as s:
        campaign = s.get(Campaign, cid)
        run = CampaignRun(campaign_id=cid, scheduled_for=at, status="planned", started_at=at, counts={})
        s.add(run)
        s.flush()
        rows = [{"run_id": run.id, "campaign_id": cid, "contact_id": p, "channel": campaign.channel, "step": i % 2, "variant": None if i else "A",
                 "template_name": "welcome", "is_holdout": bool(i % 2), "state": "queued", "attempts": 0,
                 "due_at": at + timedelta(hours=i), "lifecycle_stage": "new", "rfm_segment": None,
                 "created_at": at, "updated_at": at, "occurrence": i // 2, "ab_remainder": i == 3}
                for i, p in enumerate(people)]
        insert_rows(s.connection(), Delivery.__table__, rows[:2])
        s.connection().execute(insert(Delivery.__table__), rows[2:])
        s.commit()
        got = s.execute(select(*(Delivery.__table__.c[k] for k in rows[0])).order_by(Delivery.contact_id)).all()
    assert [dict(r._mapping) for r in got] == rows
    assert got[0].due_at == at and got[0].due_at.tzinfo is not None


def test_a_defaulted_column_left_out_is_refused(make_app):
    app = make_app()
    with app.session() as s:
        try:
            insert_rows(s.connection(), Delivery.__table__, [{"contact_id": 1}])
        except ValueError as e:
            assert "created_at" in str(e)
        else:
            raise AssertionError("a row without its defaulted columns was inserted")
