"""Hand-over: one batch's rendered messages go to the channels, wave by wave.

Waves of half of `concurrency` messages, two out at a time. When the older one is done,
one short transaction writes down its outcomes and marks the next wave `sending`, which
goes out while the other is still out: the connections never wait for the slowest message
of a wave or for the write, and at most `concurrency` rows are ever `sending`, so a crash
leaves at most that many `unknown`; the rest of the batch is still `claimed` and goes back
to the queue when its lease ends, because none of it was handed over. This is the last moment before a message
leaves: the per-message checks live here (consent or suppression changed since the claim,
the campaign paused meanwhile, the DKIM signature).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime

from campaigns.context import App
from campaigns.timespec import utcnow
from scheduler.channels import Channel, OutgoingEmail, SendResult
from scheduler.outbox import DB_DOWN, Claimed, first_line, still_allowed
from scheduler.record import DispatchStats, Recorder, Results
from scheduler.render_stage import Failures, Message, Rendered

WAVES_OUT = 2  # waves out at a time, each of `concurrency` // WAVES_OUT messages (1 of 1 when concurrency is 1)


@dataclass
class Leftover:
    """What the waves did not write down yet: the dispatcher records it after the batch."""

    done: Results = field(default_factory=list)
    failures: Failures = field(default_factory=list)
    released: list[Claimed] = field(default_factory=list)


class Handover:
    """Sends one batch through `channels`, recording between waves with `recorder`."""

    def __init__(self, app: App, channels: dict[str, Channel], recorder: Recorder) -> None:
        self.app = app
        self.channels = channels
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
            except RuntimeError as exc:  # the signing process is gone or stopped (the sender is closing): nothing was handed over
                return row, SendResult("transient", None, f"DKIM signing: {type(exc).__name__}: {exc}"[:300])
            except Exception as exc:  # the signer refused this message (DkimSigningError)
                return row, SendResult("failed", None, f"DKIM signing: {type(exc).__name__}: {exc}"[:300])
        try:
            return row, await self.channels[row.channel].send(message)
        except Exception as exc:  # a transport bug must not lose the row
            return row, SendResult("unknown", None, f"{type(exc).__name__}: {exc}"[:300])

    async def run(self, messages: Rendered, failures: Failures, now: datetime, marks: tuple[int, int],
                  stats: DispatchStats, signing: dict[int, asyncio.Future[bytes]] | None = None) -> Leftover:
        """Send `messages` in waves (render `failures` are written with the first wave); counts
        what the waves wrote into `stats` and returns what is left to write. `signing`: the
        DKIM-signed bytes of each email by row id, on their way (each waits for its own)."""
        signing = {} if signing is None else signing
        left = Leftover(failures=failures)
        paused = self.recorder.autopause.paused_now
        paused.clear()
        size = max(1, self.app.settings.sending.concurrency)

        def hold_paused(wave: Rendered) -> Rendered:
            """The wave without rows of campaigns paused meanwhile (auto-paused, or paused or
            cancelled by anyone); those wait for a resume."""
            if not paused:
                return wave
            left.released.extend(row for row, _ in wave if row.campaign_id in paused)
            return [(row, msg) for row, msg in wave if row.campaign_id not in paused]

        # Two waves of half of `concurrency` are out at a time: while one is out, the write
        # records the one before it and marks the next, which then waits at the connections
        # for the first free one. The connections never wait for a write or for the slowest
        # message of a wave, and `sending` still never holds more than `concurrency` rows.
        waves_out = min(WAVES_OUT, size)
        step = size // waves_out  # waves_out * step <= concurrency
        out: deque[asyncio.Future[list[tuple[Claimed, SendResult]]]] = deque()

        async def collect(keep: int) -> None:
            """Wait for the oldest waves out until `keep` are left; their outcomes join `left`."""
            while len(out) > keep:
                left.done.extend(await out.popleft())

        for start in range(0, len(messages), step):
            if self.stopping is not None and self.stopping.is_set():  # SIGTERM: hand over nothing more
                left.released.extend(row for row, _ in messages[start:])
                break
            # Rows of a campaign auto-paused by an earlier write are released before they are
            # marked `sending` (a crash then requeues them instead of leaving them unknown).
            wave = hold_paused(messages[start:start + step])
            try:
                # In the same transaction, just before hand-over: is the wave's campaign paused
                # or cancelled by now (by anyone; scheduler/holds.py)? Whose consent or
                # suppression changed since the claim? A primary-key read and two range scans,
                # almost always empty; an unsubscribe acknowledged while its message waited in
                # the batch still wins.
                recorded, changed, marked = self.recorder.write(left.done, left.failures, left.released, now,
                                                                mark=[row for row, _ in wave], marks=marks)
                stats.add(recorded)
                left = Leftover()
            except DB_DOWN as exc:  # cannot tell: hand over nothing more; what went out is still written down
                note = f"database unavailable before sending: {first_line(exc)}"
                left.done += [(row, SendResult("transient", None, note)) for row, _ in messages[start:]]
                break
            wave = hold_paused(wave)  # a campaign halted by now (its rows were not marked) waits for a resume
            # A row another sender claimed meanwhile (this one was taken for dead) is theirs.
            wave = [(row, msg) for row, msg in wave if row.id in marked]
            out.append(asyncio.ensure_future(asyncio.gather(*(self._send(row, msg, changed, now, signing) for row, msg in wave))))
            await collect(waves_out - 1)
            if any(r.outcome == "policy" for _, r in left.done):  # refused: the rest waits for a resume
                left.released += [row for row, _ in messages[start + step:]]
                break
        await collect(0)
        for pending in signing.values():  # messages that were not sent (released, database down)
            pending.cancel()
        await asyncio.gather(*signing.values(), return_exceptions=True)
        return left
