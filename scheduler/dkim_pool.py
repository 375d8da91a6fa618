"""DKIM signatures on a few threads beside the event loop.

Through OpenSSL (`cryptography`) an RSA-2048 signature costs about 0.3 ms of CPU, and
`cryptography` releases the GIL while OpenSSL works, so a signing thread runs on the other
core while the loop keeps sending; only the canonicalisation (about a tenth of a
millisecond) holds the GIL. The dispatcher hands each rendered batch to the threads
(`[smtp] dkim_threads`, default one per core) and each message waits for its own signature
at hand-over.

This replaced a pool of signing processes, which also paid a pickle of every message both
ways and the processes' scheduling: `python -m bench.bench_send dkim`-style runs alternating
both in one run on the loaded 2-core bench machine gave DKIM on at 0.77 and 0.71 of DKIM off
with threads, against 0.61 and 0.69 with processes.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

from campaigns.messages.dkim_signing import DkimSigner


class DkimPool:
    """Signs message bytes on `threads` threads; `close` stops them."""

    def __init__(self, signer: DkimSigner, threads: int = 0) -> None:
        self.signer = signer
        self.threads = threads or os.cpu_count() or 1
        self._pool: ThreadPoolExecutor | None = None

    async def sign(self, data: bytes) -> bytes:
        """The message with its DKIM-Signature header (DkimSigningError if it cannot be signed)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="dkim")
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.signer.sign, data)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
