"""Group commit: the click and open endpoints' writes, many requests to one transaction.

A click or an open is one small write, and a request used to pay for a thread hand-off, a
session, BEGIN IMMEDIATE and a commit of its own, several times the write itself. Here a
request hands its work (a function of a Session) to one writer thread and waits for the
answer; the writer takes every request waiting when it starts (at most `MAX_BATCH`), runs
them one after another in one transaction, commits, and answers them all with one wake-up
of the event loop. A request is still answered only after its own write is committed:
nothing is acknowledged that a crash could lose. Under light load a batch is one request,
as before; under load one transaction serves many.

One request's failure stays its own: when a function raises, the batch is rolled back and
each of its requests runs again alone, in its own transaction (the functions are database
work only, so running one again is safe); so a refusal or a bug answers that request with
its exception and the others' clicks are kept. A failure of the database (locked past
the busy timeout, unreachable), in the transaction or in someone's work, reaches every
request of the batch at once, as it would have reached each: it is not tried again per
request, which would keep the later batches waiting once per request.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from campaigns.context import App

MAX_BATCH = 64  # requests per transaction: bounds the time one commit keeps the others waiting
IDLE_SECONDS = 2.0  # the writer thread ends after this long without work (and starts again on demand)

Work = Callable[[Session], Any]
_Item = tuple[Work, asyncio.Future[Any], asyncio.AbstractEventLoop]


class GroupCommit:
    """`await writes.run(fn)`: `fn(session)` in a transaction shared with other requests'."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._pending: list[_Item] = []
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self.transactions = 0  # committed or not: how many the writer opened (tests and benches read it)

    async def run(self, fn: Work) -> Any:
        """`fn(session)`'s result once its transaction committed (or its exception)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._wake:
            self._pending.append((fn, future, loop))
            if self._thread is None:
                self._start()
            self._wake.notify()
        return await future

    def _start(self) -> None:
        """A writer thread (the caller holds the lock and found none)."""
        self._thread = threading.Thread(target=self._writer, name="group-commit", daemon=True)
        self._thread.start()

    def _writer(self) -> None:
        try:
            while True:
                with self._wake:
                    if not self._pending and not self._wake.wait_for(lambda: bool(self._pending), timeout=IDLE_SECONDS):
                        self._thread = None  # idle (decided under the lock): a later request starts a new writer
                        return
                    batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                try:
                    results = self._commit(batch)
                except BaseException as exc:  # not an Exception (a bug, an interrupt): tell the batch, then end
                    _answer([(item, None, exc) for item in batch])
                    raise
                _answer(results)
        finally:
            with self._wake:
                if self._thread is threading.current_thread():  # something escaped: a new writer takes over
                    self._thread = None
                    if self._pending:
                        self._start()

    def _commit(self, batch: list[_Item]) -> list[tuple[_Item, Any, BaseException | None]]:
        """Run the batch in one transaction; when one of its functions raises, each alone."""
        own: Exception | None = None  # a function's own exception (not the database's)
        self.transactions += 1
        try:
            with self.app.session() as session:
                results: list[tuple[_Item, Any, BaseException | None]] = []
                for item in batch:
                    try:
                        results.append((item, item[0](session), None))
                    except (OperationalError, InterfaceError):  # the database (locked, gone): everyone's
                        raise
                    except Exception as exc:
                        own = exc
                        raise
            return results
        except Exception as exc:
            if own is None or len(batch) == 1:  # the transaction's failure, or the only request's own
                return [(item, None, exc) for item in batch]
        # Someone's work raised, so nobody's was kept: each request again, alone (rare).
        return [answer for item in batch for answer in self._commit([item])]


def _answer(results: list[tuple[_Item, Any, BaseException | None]]) -> None:
    """Settle every request's future on its own loop, with one wake-up per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, BaseException | None]]] = {}
    for (_, future, loop), value, exc in results:
        by_loop.setdefault(loop, []).append((future, value, exc))
    for loop, answers in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle, answers)
        except RuntimeError:  # that loop closed meanwhile: nobody is waiting any more
            pass


def _settle(answers: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, value, exc in answers:
        if future.done():  # the request went away (client disconnected): its write stands, nobody to tell
            continue
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(value)
