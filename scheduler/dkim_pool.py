"""DKIM signatures: the private-key operations in a signing process beside the sender.

An RSA-2048 signature through OpenSSL costs about 0.3 ms of CPU; everything else about
0.08 ms (canonical forms, body hash, the header and its digest). The sender prepares each
message itself as it is rendered (`DkimSigner.prepare`) and hands the 32-byte digests, 16
messages at a time, to a child process (`scheduler/dkim_child.py`), which answers with the
signatures; the sender's loop reads them and finishes each header. Handing them over
while the batch is still rendering matters: the SMTP server idles then, so the signing
process has a core to itself, and by the time the waves go out most signatures are made.
The signing threads this replaced (OpenSSL releases Python's lock) could not use that time:
their share of the work under Python's lock made the render wait for them, so a batch
rendered in 150 ms instead of 85 (bench/RESULTS.md).

A message that cannot be signed fails alone (DkimSigningError); a signing process that is
gone or stopped fails its messages with RuntimeError, which the hand-over records as
transient (nothing was handed over), and the next batch starts a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pickle
import subprocess
import sys
from pathlib import Path

from campaigns.messages.dkim_signing import DkimSigner, DkimSigningError, Prepared
from scheduler.dkim_child import frame, write_all

CHUNK = 16  # messages per hand-off to the signing process
_PIPE_BYTES = 1 << 20  # a batch's signatures fit in the pipe while the sender is busy rendering
_ROOT = Path(__file__).resolve().parents[1]  # the folder holding campaigns/ and scheduler/
Waiting = list[tuple[Prepared, asyncio.Future[bytes]]]


class DkimPool:
    """Signs message bytes with `signer`, its private-key work in `processes` child processes
    (default 1); `close` stops them."""

    def __init__(self, signer: DkimSigner, processes: int = 0) -> None:
        self.signer = signer
        self.processes = processes or 1
        self._children: list[_Child] = []
        self._turn = 0

    def sign_all(self, items: list[bytes]) -> list[asyncio.Future[bytes]]:
        """A future per message for its signed bytes (DkimSigningError if it cannot be signed,
        RuntimeError if the signing process is gone)."""
        with self.stream() as stream:
            for i, data in enumerate(items):
                stream.add(i, data)
        return list(stream.futures.values())

    def stream(self) -> Stream:
        """Messages handed over one by one (`add`), `CHUNK` at a time, as a `with` block: what
        is left is handed over at its end, or everything cancelled if it raises."""
        return Stream(self)

    def _submit(self, waiting: Waiting) -> None:
        loop = asyncio.get_running_loop()
        for child in self._children:
            if not child.alive or child.loop is not loop:  # gone, or started under an earlier event loop
                child.close()
        self._children = [c for c in self._children if c.alive]
        while len(self._children) < self.processes:
            try:
                self._children.append(_Child(self.signer, loop))
            except OSError as exc:
                _fail(waiting, RuntimeError(f"the signing process did not start: {exc}"))
                return
        child = self._children[self._turn % len(self._children)]
        self._turn += 1
        child.submit(waiting)

    def close(self) -> None:
        for child in self._children:
            child.close()
        self._children = []


class Stream:
    """A batch's messages handed to the signing process as they come."""

    def __init__(self, pool: DkimPool) -> None:
        self.pool = pool
        self.futures: dict[int, asyncio.Future[bytes]] = {}  # by the key each message was added with
        self._waiting: Waiting = []

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            self.flush()
        else:
            self.cancel()

    def add(self, key: int, data: bytes) -> None:
        """`data` prepared now and signed in the process; its future is `futures[key]`."""
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.futures[key] = future
        try:
            self._waiting.append((self.pool.signer.prepare(data), future))
        except DkimSigningError as exc:  # this message only
            future.set_exception(exc)
        except Exception as exc:  # a bug preparing one message must not stop the batch's render
            future.set_exception(DkimSigningError(f"DKIM signing failed: {type(exc).__name__}: {exc}"))
        if len(self._waiting) >= CHUNK:
            self.flush()

    def flush(self) -> None:
        """Hand over what is waiting."""
        if self._waiting:
            waiting, self._waiting = self._waiting, []
            self.pool._submit(waiting)

    def cancel(self) -> None:
        """Nobody will wait for these (the batch was not handed over)."""
        self._waiting = []
        for future in self.futures.values():
            if future.done() and not future.cancelled():
                future.exception()  # a refusal nobody will read: retrieved, so asyncio does not log it
            future.cancel()


class _Child:
    """One signing process and the hand-offs it has not answered yet."""

    def __init__(self, signer: DkimSigner, loop: asyncio.AbstractEventLoop) -> None:
        # From the root that holds this package, so the child imports this code. Its own
        # session: a Ctrl-C in the terminal stops the sender, which closes it.
        self.proc = subprocess.Popen([sys.executable, "-m", "scheduler.dkim_child"], cwd=_ROOT, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, close_fds=True, start_new_session=True)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.loop = loop
        self._in = self.proc.stdin.fileno()
        self._out = self.proc.stdout.fileno()
        for fd in (self._in, self._out):  # Linux: room for a batch both ways while the loop renders
            with contextlib.suppress(OSError):
                fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), _PIPE_BYTES)
        self.pending: dict[int, Waiting] = {}
        self._seq = 0
        self._buf = bytearray()
        self._unsent = bytearray()  # requests the pipe had no room for yet
        self.alive = True
        write_all(self._in, frame((signer.key, signer.ed25519_key)))
        os.set_blocking(self._in, False)  # never wait for the process: it may itself wait for us to read
        os.set_blocking(self._out, False)
        loop.add_reader(self._out, self._readable)

    def submit(self, waiting: Waiting) -> None:
        self._seq += 1
        self.pending[self._seq] = waiting
        self._unsent += frame((self._seq, [[(algorithm, digest) for algorithm, _, digest in prepared.headers]
                                           for prepared, _ in waiting]))
        self._writable()

    def _writable(self) -> None:
        """Write what the pipe takes; the rest when the loop says there is room."""
        try:
            while self._unsent:
                del self._unsent[:os.write(self._in, self._unsent)]
        except BlockingIOError:
            pass
        except OSError:  # the process is gone: its answers will not come
            self._gone("the signing process is gone")
            return
        if self._unsent:
            self.loop.add_writer(self._in, self._writable)
        else:
            self.loop.remove_writer(self._in)

    def _readable(self) -> None:
        try:
            data = os.read(self._out, _PIPE_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._gone("the signing process is gone")
            return
        self._buf += data
        while len(self._buf) >= 4:
            size = int.from_bytes(self._buf[:4], "big")
            if len(self._buf) < 4 + size:
                break
            seq, answers = pickle.loads(self._buf[4:4 + size])  # from our own child process
            del self._buf[:4 + size]
            for (prepared, future), answer in zip(self.pending.pop(seq), answers, strict=True):
                if future.done():  # cancelled: nobody waits
                    continue
                if isinstance(answer, str):
                    future.set_exception(DkimSigningError(f"DKIM signing failed: {answer}"))
                else:
                    future.set_result(DkimSigner.finish(prepared, answer))

    def _gone(self, why: str) -> None:
        self.alive = False
        self._unsent.clear()
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self._out)
        with contextlib.suppress(Exception):
            self.loop.remove_writer(self._in)
        for waiting in self.pending.values():
            _fail(waiting, RuntimeError(why))
        self.pending = {}

    def close(self) -> None:
        """End the process (its input closed, then killed if it lingers); what it still owed fails."""
        if self.alive and not self.loop.is_closed():
            self._gone("signing stopped")
        self.alive = False
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                stream.close()  # type: ignore[union-attr]
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _fail(waiting: Waiting, exc: Exception) -> None:
    for _, future in waiting:
        if not future.done():
            future.set_exception(exc)

