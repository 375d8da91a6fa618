"""The hand-over renders the next wave while one is out, and at most one wave ahead.

Rendering used to take the whole batch before the first message left, with the
connections idle meanwhile; now a wave's worth is rendered (one transaction) before the
first wave, and each next wave between the steps of the wave in flight.
"""

import asyncio
from collections import Counter

from sqlalchemy import select
from sqlalchemy.exc import OperationalError

import campaigns.messages.rendering as rendering
import scheduler.render_stage as render_stage
from campaigns.store.models import Delivery
from scheduler.channels import SendResult
from scheduler.dispatcher import Dispatcher
from tests.scheduler.test_dispatcher import _setup


class _Slow:
    """Accepts everything after a few turns of the event loop; notes how many messages had
    been rendered when each was handed over and when each came back."""

    def __init__(self, rendered: list[int], turns: int = 30):
        self.rendered = rendered
        self.turns = turns
        self.handed: list[int] = []
        self.back: list[int] = []

    async def send(self, message):
        self.handed.append(len(self.rendered))
        for _ in range(self.turns):  # the server reading the message
            await asyncio.sleep(0)
        self.back.append(len(self.rendered))
        return SendResult("sent", message.message_id)

    async def close(self):
        pass


def _counting(monkeypatch) -> list[int]:
    seen: list[int] = []
    real = rendering.render_delivery

    def counted(*args, **kwargs):
        seen.append(kwargs["delivery_id"])
        return real(*args, **kwargs)

    monkeypatch.setattr(render_stage, "render_delivery", counted)
    return seen


def _states(app) -> Counter:
    with app.session() as s:
        return Counter(s.scalars(select(Delivery.state)))


def test_the_first_wave_leaves_after_its_own_rendering_and_the_next_is_rendered_meanwhile(make_app, smtp, monkeypatch):
    app, _ = _setup(make_app, smtp, 12)
    app.settings.sending.concurrency = 4
    rendered = _counting(monkeypatch)
    channel = _Slow(rendered)
    asyncio.run(Dispatcher(app, channels={"email": channel, "sms": channel}).dispatch_once())
    assert _states(app) == Counter({"sent": 12})
    # The first message left before the second wave was wholly rendered, not after the whole
    # batch ...
    assert max(channel.handed[:4]) < 8
    # ... and when the first wave came back, the second had been rendered in the meantime,
    # but nothing further (one wave ahead at most).
    assert max(channel.back[:4]) == 8
    assert max(channel.handed[4:8]) < 12
    assert sorted(rendered) == sorted(set(rendered))  # each message rendered once


def test_a_database_failure_while_rendering_ahead_keeps_the_wave_out_sent_and_retries_the_rest(make_app, smtp, monkeypatch):
    app, _ = _setup(make_app, smtp, 12)
    app.settings.sending.concurrency = 4
    rendered = _counting(monkeypatch)
    real_step = render_stage.Chunk.step

    def step(self):
        if len(rendered) == 6:  # rendering the second wave, while the first is out
            raise OperationalError("INSERT", {}, Exception("server closed the connection unexpectedly"))
        return real_step(self)

    monkeypatch.setattr(render_stage.Chunk, "step", step)
    channel = _Slow(rendered)
    asyncio.run(Dispatcher(app, channels={"email": channel, "sms": channel}).dispatch_once())
    states = _states(app)
    assert len(channel.handed) == 4
    # The wave handed over is written down as sent; nothing is left `sending` (it would turn
    # unknown) and nothing else went out; the rest waits for a retry.
    assert states == Counter({"sent": 4, "retry_wait": 8}), states
    with app.session() as s:
        notes = set(s.scalars(select(Delivery.error).where(Delivery.state == "retry_wait")))
    assert all("database unavailable" in n for n in notes), notes
    # The failed chunk's transaction was rolled back: the database takes writes again.
    monkeypatch.setattr(render_stage.Chunk, "step", real_step)
    again = asyncio.run(Dispatcher(app, channels={"email": channel, "sms": channel}).dispatch_once(
        _due(app)))
    assert again.counts["sent"] == 8 and _states(app) == Counter({"sent": 12})


def _due(app):
    with app.session() as s:
        return max(s.scalars(select(Delivery.due_at)))


def test_messages_a_throttle_holds_back_are_not_rendered_until_they_fit(make_app, smtp, monkeypatch):
    app, _ = _setup(make_app, smtp, 10)
    app.settings.sending.max_per_minute = 3  # a limit of the hand-over, not of planning
    rendered = _counting(monkeypatch)
    channel = _Slow(rendered, turns=0)
    asyncio.run(Dispatcher(app, channels={"email": channel, "sms": channel}).dispatch_once())
    assert len(channel.handed) == 3
    assert len(rendered) == 3  # the seven that wait took no coupon, link or rendering time
    assert _states(app) == Counter({"sent": 3, "queued": 7})
