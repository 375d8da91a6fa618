"""The recipient's address lives in one place, the contact: planning copies it into no
delivery row (the copy was never read: rendering sends to the contact's current address, so a
stale copy could only mislead, and was one more place for personal data to outlive erasure)."""

import asyncio

from sqlalchemy import select

from campaigns.store.models import Campaign, Delivery
from campaigns.timespec import utcnow
from scheduler.dispatcher import Dispatcher
from scheduler.planner import plan_firing
from tests.scheduler.conftest import add_people, make_campaign


def test_planning_copies_no_address_and_the_message_goes_to_the_contact(make_app, smtp):
    app = make_app(smtp.config_toml())
    add_people(app, 2)
    cid = make_campaign(app)
    now = utcnow()
    with app.session() as s:
        plan_firing(s, app.settings, s.get(Campaign, cid), now.replace(microsecond=0), now)
        planned = list(s.execute(select(Delivery.id, Delivery.address).where(Delivery.campaign_id == cid)))
    assert len(planned) == 2 and [a for _id, a in planned] == [None, None]
    asyncio.run(Dispatcher(app).dispatch_once(now))
    assert sorted(rcpt for rcpt, _mid, _from in smtp.received) == ["p0@example.com", "p1@example.com"]
