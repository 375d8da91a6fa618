"""DKIM signatures in worker processes.

Through OpenSSL a signature costs about 0.6 ms of CPU per message on the (loaded) bench
machine, most of the rest of the send path again. Signed inline it is paid by the sending
process, which is CPU-bound: `python -m bench.bench_send dkim` measured DKIM on at 0.66 of
DKIM off inline against 0.71 with this pool in the same run (goal 0.75), and the sender's
CPU per message 1.90 ms inline, 1.36 ms with the pool. The dispatcher hands each rendered
batch to a small pool of processes (`[smtp] dkim_processes`, default one per core), which
sign it in parallel while the loop keeps sending the messages already signed.

Processes are started with `spawn`: the dispatcher's process holds an event loop, database
connections and a watchdog thread, none of which a forked child should inherit.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from campaigns.messages.dkim_signing import DkimSigner

_SIGNER: DkimSigner | None = None  # in a worker process: the key it signs with


def _start(signer: DkimSigner) -> None:
    global _SIGNER
    _SIGNER = signer


def _sign(data: bytes) -> bytes:
    assert _SIGNER is not None
    return _SIGNER.sign(data)


class DkimPool:
    """Signs message bytes in worker processes; `close` stops them."""

    def __init__(self, signer: DkimSigner, processes: int = 0) -> None:
        self.signer = signer
        self.processes = processes or os.cpu_count() or 1
        self._pool: ProcessPoolExecutor | None = None

    async def sign(self, data: bytes) -> bytes:
        """The message with its DKIM-Signature header; BrokenProcessPool if a worker died
        (the next call starts a fresh pool)."""
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.processes, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_start, initargs=(self.signer,))
        pool = self._pool
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, _sign, data)
        except BrokenProcessPool:
            if self._pool is pool:
                self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
            raise

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
