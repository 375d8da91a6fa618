"""Throttles and the frequency cap apply to claimed rows before they are rendered.

A message that had to wait for its minute used to be rendered (a coupon taken, tracked
links registered, the render's time spent), then put back in the queue, to be rendered
again when it fitted.
"""

import asyncio
from collections import Counter

from sqlalchemy import select

import campaigns.messages.rendering as rendering
import scheduler.render_stage as render_stage
from campaigns.store.models import Delivery
from campaigns.timespec import utcnow
from scheduler.channels import SendResult
from scheduler.dispatcher import Dispatcher
from tests.scheduler.test_dispatcher import _setup


class _Counting:
    """Accepts everything and counts what it was handed."""

    def __init__(self):
        self.handed = 0

    async def send(self, message):
        self.handed += 1
        return SendResult("sent", message.message_id)

    async def close(self):
        pass


def test_messages_a_throttle_holds_back_are_not_rendered_until_they_fit(make_app, smtp, monkeypatch):
    app, _ = _setup(make_app, smtp, 10)
    app.settings.sending.max_per_minute = 3  # a limit of the hand-over, not of planning
    rendered: list[int] = []
    real = rendering.render_delivery

    def counted(*args, **kwargs):
        rendered.append(kwargs["delivery_id"])
        return real(*args, **kwargs)

    monkeypatch.setattr(render_stage, "render_delivery", counted)
    channel = _Counting()
    # One fixed clock: the limit is per calendar minute, and a run that crossed a minute's
    # end on the real clock was allowed three more (the held rows fell due).
    asyncio.run(Dispatcher(app, channels={"email": channel, "sms": channel}).dispatch_once(utcnow()))
    assert channel.handed == 3
    assert len(rendered) == 3  # the seven that wait took no coupon, link or rendering time
    with app.session() as s:
        assert Counter(s.scalars(select(Delivery.state))) == Counter({"sent": 3, "queued": 7})
