"""Hand-over: one batch's messages are rendered and go to the channels, wave by wave.

Waves of `concurrency` messages. While a wave is out, the next wave's messages are rendered
(scheduler/render_stage.py, one transaction per wave's worth), a message between the wave's
steps, so the connections do not idle while the sender renders. One short transaction between waves writes down the last
wave's outcomes and marks the next wave `sending`: a crash leaves at most one wave
`unknown`; the rest of the batch is still `claimed` and goes back to the queue when its
lease ends, because none of it was handed over. This is the last moment before a message
leaves: the per-message checks live here (consent or suppression changed since the claim,
the campaign paused meanwhile, the DKIM signature).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace
from datetime import datetime

from campaigns.context import App
from campaigns.errors import ConfigError
from campaigns.timespec import utcnow
from scheduler.channels import Channel, OutgoingEmail, SendResult
from scheduler.dkim_pool import DkimPool
from scheduler.holds import before_wave
from scheduler.outbox import DB_DOWN, Claimed, first_line, still_allowed
from scheduler.record import DispatchStats, Recorder, Results
from scheduler.render_stage import Chunk, Failures, Message, Rendered, RenderStage

log = logging.getLogger("campaigns.dispatcher")


@dataclass
class Leftover:
    """What the waves did not write down yet: the dispatcher records it after the batch."""

    done: Results = field(default_factory=list)
    failures: Failures = field(default_factory=list)
    released: list[Claimed] = field(default_factory=list)


class Handover:
    """Sends one batch through `channels`, recording between waves with `recorder`."""

    def __init__(self, app: App, channels: dict[str, Channel], dkim: DkimPool | None, recorder: Recorder) -> None:
        self.app = app
        self.channels = channels
        self.dkim = dkim
        self.recorder = recorder
        self.stopping: asyncio.Event | None = None  # set: SIGTERM, the rest of the batch is released

    def _still_allowed(self, row: Claimed, now: datetime) -> bool:
        """The full consent and suppression check for one row whose contact changed meanwhile."""
        with self.app.engine.connect() as conn:
            return row.id in still_allowed(conn, self.app.settings, [row], max(now, utcnow()))

    async def _send(self, row: Claimed, message: Message, changed: set[int], now: datetime,
                    signing: dict[int, asyncio.Future[bytes]]) -> tuple[Claimed, SendResult]:
        """Last checks, the signature, then the channel; every failure becomes an outcome."""
        try:
            if row.contact_id in changed and not self._still_allowed(row, now):
                return row, SendResult("suppressed", None, "consent revoked, topic left or address suppressed while in flight")
        except DB_DOWN as exc:  # cannot tell: do not send, retry later
            return row, SendResult("transient", None, f"database unavailable: {first_line(exc)}")
        if row.id in signing:
            try:
                signed = await signing.pop(row.id)
                if isinstance(message, OutgoingEmail):
                    message = replace(message, data=signed)
            except RuntimeError as exc:  # the signing threads were shut down (the sender is closing): nothing was handed over
                return row, SendResult("transient", None, f"DKIM signing: {type(exc).__name__}: {exc}"[:300])
            except Exception as exc:  # the signer refused this message (DkimSigningError)
                return row, SendResult("failed", None, f"DKIM signing: {type(exc).__name__}: {exc}"[:300])
        try:
            return row, await self.channels[row.channel].send(message)
        except Exception as exc:  # a transport bug must not lose the row
            return row, SendResult("unknown", None, f"{type(exc).__name__}: {exc}"[:300])

    async def run(self, rows: list[Claimed], renderer: RenderStage, now: datetime, marks: tuple[int, int],
                  stats: DispatchStats) -> Leftover:
        """Render `rows` a wave's worth at a time and send them in waves: while a wave is out,
        the next one is rendered between its steps. Counts what the waves wrote into `stats`
        and returns what is left to write (render failures are written with the next wave)."""
        size = max(1, self.app.settings.sending.concurrency)
        todo = list(rows)  # claimed, not rendered yet
        ready: Rendered = []  # rendered, committed, signing: the next wave
        left = Leftover()
        paused = self.recorder.autopause.paused_now
        paused.clear()
        signing: dict[int, asyncio.Future[bytes]] = {}
        chunk: Chunk | None = None
        renderer.new_batch(rows)

        def take_chunk() -> Chunk:
            made = renderer.chunk(todo[:size])  # may raise: the rows stay in `todo`
            del todo[:len(made.rows)]
            return made

        def closed(done: Chunk) -> None:
            """A committed chunk: its messages join the next wave; DKIM starts signing them now,
            on the signing threads, and each waits for its own signature at hand-over."""
            out, failed = done.close()
            left.failures.extend(failed)
            ready.extend(out)
            if self.dkim is not None:
                signing.update((row.id, asyncio.ensure_future(self.dkim.sign(msg.data)))
                               for row, msg in out if isinstance(msg, OutgoingEmail))

        def unsent() -> list[Claimed]:
            """Rows not handed over: rendered (`ready`), being rendered, or not yet rendered."""
            return [row for row, _ in ready] + (chunk.rows if chunk is not None else []) + todo

        def hold_paused(wave: Rendered) -> Rendered:
            """The wave without rows of auto-paused campaigns; those wait for a resume."""
            if not paused:
                return wave
            left.released.extend(row for row, _ in wave if row.campaign_id in paused)
            return [(row, msg) for row, msg in wave if row.campaign_id not in paused]

        def not_sent(note: str) -> None:
            nonlocal chunk
            if chunk is not None:
                chunk.abandon()
            left.done.extend((row, SendResult("transient", None, note)) for row in unsent())
            ready.clear()
            todo.clear()
            chunk = None

        try:
            while True:
                try:  # what nothing was in flight for: render until a wave is ready
                    while len(ready) < size and (todo or chunk is not None):
                        chunk = chunk or take_chunk()
                        while chunk.step():
                            pass
                        closed(chunk)
                        chunk = None
                except Exception as exc:  # the database or the setup went away: the rest retries after backoff
                    not_sent(_why(exc))
                    break
                if not ready:
                    break
                # Paused or cancelled by anyone meanwhile, or this sender stopping (scheduler/holds.py).
                try:
                    pending = [(row, None) for row in unsent()]
                    if before_wave(self.app.engine, pending, paused, self.stopping, left.released):
                        ready.clear()
                        todo.clear()
                        break
                except DB_DOWN as exc:  # cannot tell: hand over nothing more; what went out is still written down
                    not_sent(f"database unavailable before sending: {first_line(exc)}")
                    break
                # Rows of a campaign auto-paused by an earlier write are released before they are
                # marked `sending` (a crash then requeues them instead of leaving them unknown).
                wave = hold_paused(ready[:size])
                del ready[:size]
                try:
                    # In the same transaction, just before hand-over: whose consent or suppression
                    # changed since the claim? Two primary-key range scans, almost always empty; an
                    # unsubscribe acknowledged while its message waited in the batch still wins.
                    recorded, changed, marked = self.recorder.write(left.done, left.failures, left.released, now,
                                                                    mark=[row.id for row, _ in wave], marks=marks)
                    stats.add(recorded)
                    left = Leftover()
                except DB_DOWN as exc:
                    ready[:0] = wave
                    not_sent(f"database unavailable before sending: {first_line(exc)}")
                    break
                # A row another sender claimed meanwhile (this one was taken for dead) is theirs.
                wave = [(row, msg) for row, msg in wave if row.id in marked]
                wave = hold_paused(wave)  # ... and so are rows of one this very write paused
                out = asyncio.ensure_future(asyncio.gather(*(self._send(row, msg, changed, now, signing) for row, msg in wave)))
                try:  # the next wave is rendered while this one is out, a message between its steps
                    while not out.done() and len(ready) < size and (todo or chunk is not None):
                        chunk = chunk or take_chunk()
                        if not chunk.step():
                            closed(chunk)
                            chunk = None
                        await asyncio.sleep(0)
                    left.done += await out
                    if chunk is not None:  # the wave was quicker: finish the chunk before the next write
                        while chunk.step():
                            pass
                        closed(chunk)
                        chunk = None
                except Exception as exc:  # as above; the wave in flight is still written down
                    left.done += await out
                    not_sent(_why(exc))
                    break
                if any(r.outcome == "policy" for _, r in left.done):  # refused: the rest waits for a resume
                    left.released += unsent()
                    ready.clear()
                    todo.clear()
                    break
        finally:
            if chunk is not None:  # cancelled mid-chunk: none of it was handed over
                chunk.abandon()
            for pending_sig in signing.values():  # messages that were not sent (released, database down)
                pending_sig.cancel()
            await asyncio.gather(*signing.values(), return_exceptions=True)
        return left


def _why(exc: Exception) -> str:
    """The note of rows not handed over because rendering could not go on (the database, the
    setup, or a bug that is no one row's): each is retried after backoff."""
    if isinstance(exc, DB_DOWN):
        return f"database unavailable before sending: {first_line(exc)}"
    if isinstance(exc, ConfigError):  # the DKIM or secret key went away mid-run
        log.error("batch not sent: %s", exc)
        return str(exc)[:300]
    log.error("rendering stopped: %s: %s", type(exc).__name__, first_line(exc))
    return f"render: {type(exc).__name__}: {first_line(exc)}"[:300]
