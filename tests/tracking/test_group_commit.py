"""Clicks and opens are written by one writer thread, many requests to one transaction
(campaigns/tracking/group_commit.py): every click is still committed before its redirect,
and one request's failure never costs another its click."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError

from campaigns.store.models import Delivery, Event
from campaigns.timespec import utcnow
from campaigns.tracking import events
from campaigns.tracking.app import create_app
from campaigns.tracking.group_commit import GroupCommit


def _count_commits(engine: Any) -> list[int]:
    seen = [0]

    def on_commit(_conn: Any) -> None:
        seen[0] += 1
    event.listen(engine, "commit", on_commit)
    return seen


class Gate:
    """A piece of work that holds the writer (inside its transaction) until `open()`."""

    def __init__(self) -> None:
        self._open = threading.Event()

    def __call__(self, session: Any) -> str:
        session.execute(select(1))  # a transaction on every database (PostgreSQL begins on first use)
        assert self._open.wait(30)
        return "gate"

    def open(self) -> None:
        self._open.set()


async def _until(predicate: Any) -> None:
    """Wait (on the loop, so the requests go on) until `predicate()` holds."""
    for _ in range(2000):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the requests never reached the writer")


async def _together(writes: GroupCommit, starts: list[Callable[[], Awaitable[Any]]]) -> list[Any]:
    """Hold the writer with a Gate of its own, start every request, wait until all of them
    wait for the writer, then let it go: they reach it as one batch. Returns the gate's
    answer, then each request's answer or exception, in order."""
    gate = Gate()
    held = asyncio.create_task(writes.run(gate))
    await _until(lambda: writes._thread is not None and not writes._pending)
    started = [asyncio.ensure_future(start()) for start in starts]
    await _until(lambda: len(writes._pending) == len(starts))
    gate.open()
    return await asyncio.gather(held, *started, return_exceptions=True)


def test_clicks_that_arrive_together_share_one_transaction_and_every_one_is_recorded(shop):
    web = create_app(shop.app.settings, shop.app)
    writes: GroupCommit = next(r.endpoint.__self__.writes for r in web.routes if r.path.startswith("/c/"))
    path = shop.links()["click"][0].split(":", 2)[2].split("/", 1)[1]
    commits = _count_commits(shop.app.engine)

    async def go() -> list[Any]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=web), base_url="http://test") as client:
            return await _together(writes, [
                functools.partial(client.get, f"/{path}", headers={"User-Agent": f"Mozilla/5.0 person {i}"})
                for i in range(20)])

    gated, *answers = asyncio.run(go())
    assert gated == "gate"
    assert [r.status_code for r in answers] == [302] * 20
    assert commits[0] == 2  # the gate's transaction, then the 20 clicks' one
    with shop.app.session(write=False) as s:
        agents = s.scalars(select(Event.user_agent).where(Event.type == "click")).all()
    assert sorted(agents) == sorted(f"Mozilla/5.0 person {i}" for i in range(20))


def test_a_request_whose_work_fails_keeps_its_error_and_its_neighbours_keep_their_clicks(shop):
    writes = GroupCommit(shop.app)
    with shop.app.session(write=False) as s:
        sent, _ = events.delivery_and_erased(s, s.scalar(select(func.min(Delivery.id))))
    assert sent is not None

    def click(key: str, fail: bool = False) -> Any:
        def work(session: Any) -> bool:
            new = events.record(session, type="click", dedup_key=key, delivery=sent, at=utcnow(), user_agent="x")
            if fail:  # after its own write: that write must not stay
                raise ValueError("this request's own failure")
            return new
        return work

    gated, a, bad, b = asyncio.run(_together(writes, [
        functools.partial(writes.run, click(key, fail=key == "k-bad")) for key in ("k-a", "k-bad", "k-b")]))
    assert (gated, a, b) == ("gate", True, True)
    assert isinstance(bad, ValueError) and str(bad) == "this request's own failure"
    with shop.app.session(write=False) as s:
        keys = set(s.scalars(select(Event.dedup_key).where(Event.dedup_key.like("k-%"))))
    assert keys == {"k-a", "k-b"}


def test_the_writer_thread_ends_when_idle_and_a_later_request_starts_another(shop, monkeypatch: pytest.MonkeyPatch):
    from campaigns.tracking import group_commit

    monkeypatch.setattr(group_commit, "IDLE_SECONDS", 0.05)
    writes = GroupCommit(shop.app)

    async def one() -> Any:
        return await writes.run(lambda s: s.scalar(select(func.count()).select_from(Event)))

    assert asyncio.run(one()) >= 0
    first = writes._thread
    assert first is not None
    first.join(timeout=10)
    assert not first.is_alive() and writes._thread is None
    assert asyncio.run(one()) >= 0 and writes._thread is not first


def test_a_database_failure_reaches_the_whole_batch_at_once_without_a_try_per_request(shop):
    writes = GroupCommit(shop.app)
    tried: list[str] = []

    def work(name: str, locked: bool = False) -> Any:
        def run(session: Any) -> str:
            tried.append(name)
            session.execute(select(1))
            if locked:
                raise OperationalError("INSERT INTO event ...", {}, Exception("database is locked"))
            return name
        return run

    gated, *answers = asyncio.run(_together(writes, [
        functools.partial(writes.run, work(name, locked=name == "b")) for name in ("a", "b", "c")]))
    assert gated == "gate"
    assert all(isinstance(a, OperationalError) for a in answers), answers
    assert tried == ["a", "b"] and writes.transactions == 2  # the gate's, then one for the batch: no try per request


class _Escaped(BaseException):
    """Not an Exception: what `except Exception` in the writer does not catch."""


# The escaped exception ends that writer thread and is reported by threading's hook, as it should be.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_work_that_escapes_the_writer_answers_its_request_and_a_new_writer_serves_the_next(shop):
    writes = GroupCommit(shop.app)

    def escape(_session: Any) -> None:
        raise _Escaped("out of the writer")

    async def go() -> tuple[Any, Any]:
        try:
            await writes.run(escape)
            first: Any = None
        except _Escaped as exc:
            first = exc
        second = await asyncio.wait_for(writes.run(lambda s: s.scalar(select(func.count()).select_from(Event))), 30)
        return first, second

    first, second = asyncio.run(go())
    assert isinstance(first, _Escaped) and isinstance(second, int)
