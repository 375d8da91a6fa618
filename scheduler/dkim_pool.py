"""DKIM signatures on a few threads beside the event loop.

Through OpenSSL (`cryptography`) an RSA-2048 signature costs about 0.3 ms of CPU, and
`cryptography` releases the GIL while OpenSSL works, so a signing thread runs on the other
core while the loop keeps sending; only the canonicalisation (about a tenth of a
millisecond) holds the GIL. The dispatcher hands each rendered batch to the threads
(`[smtp] dkim_threads`, default one per core), 16 messages per hand-off, and each message
waits for its own signature at hand-over.

This replaced a pool of signing processes, which also paid a pickle of every message both
ways and the processes' scheduling: `python -m bench.bench_send dkim`-style runs alternating
both in one run on the loaded 2-core bench machine gave DKIM on at 0.77 and 0.71 of DKIM off
with threads, against 0.61 and 0.69 with processes.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from campaigns.messages.dkim_signing import DkimSigner

CHUNK = 16  # messages per hand-off to a signing thread (the first wave waits for the first 16)


class DkimPool:
    """Signs message bytes on `threads` threads; `close` stops them."""

    def __init__(self, signer: DkimSigner, threads: int = 0) -> None:
        self.signer = signer
        self.threads = threads or os.cpu_count() or 1
        self._pool: ThreadPoolExecutor | None = None

    def sign_all(self, items: list[bytes]) -> list[asyncio.Future[bytes]]:
        """A future per message for its signed bytes (DkimSigningError if it cannot be signed,
        RuntimeError if the threads were stopped). The messages go to the threads `CHUNK` at
        a time: a hand-off per message (a future, a thread wake-up, a wake-up of the loop)
        cost about 0.05 ms of CPU a message more (bench/RESULTS.md)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="dkim")
        loop = asyncio.get_running_loop()
        out: list[asyncio.Future[bytes]] = []
        for start in range(0, len(items), CHUNK):
            part = items[start:start + CHUNK]
            mine = [loop.create_future() for _ in part]
            out += mine
            try:
                job = loop.run_in_executor(self._pool, _sign_each, self.signer, part)
            except RuntimeError as exc:  # the threads were shut down (the sender is closing)
                for future in mine:
                    future.set_exception(exc)
                continue
            job.add_done_callback(partial(_settle, mine))
            for future in mine:  # nobody waits any more (released, stopped): the job need not run
                future.add_done_callback(partial(_drop_if_unwanted, mine, job))
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _sign_each(signer: DkimSigner, items: list[bytes]) -> list[bytes | Exception]:
    """On a signing thread: each message signed, or the reason it could not be."""
    out: list[bytes | Exception] = []
    for data in items:
        try:
            out.append(signer.sign(data))
        except Exception as exc:  # DkimSigningError: this message only
            out.append(exc)
    return out


def _settle(mine: list[asyncio.Future[bytes]], job: asyncio.Future[list[bytes | Exception]]) -> None:
    """A job's results onto its messages' futures."""
    if job.cancelled():
        results: list[bytes | BaseException] = [RuntimeError("signing stopped")] * len(mine)
    elif (failed := job.exception()) is not None:
        results = [failed] * len(mine)
    else:
        results = list(job.result())
    for future, result in zip(mine, results, strict=True):
        if future.done():
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)


def _drop_if_unwanted(mine: list[asyncio.Future[bytes]], job: asyncio.Future[list[bytes | Exception]],
                      _done: asyncio.Future[bytes]) -> None:
    if all(future.cancelled() for future in mine):
        job.cancel()  # a job not started yet is dropped; one running finishes
