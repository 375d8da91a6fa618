"""An SMTP sink for benchmarks, in its own process: accepts everything, counts messages.

    python -m bench.sink PORT    # prints "ready", then the count when it gets SIGTERM

Benchmarks start it with `with Sink(cwd) as sink:` (its `port`; after the block, `received`).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from types import TracebackType

from aiosmtpd.controller import Controller


class _Count:
    def __init__(self) -> None:
        self.n = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # type: ignore[no-untyped-def]
        """EHLO offers PIPELINING (RFC 2920), as Postfix does by default. aiosmtpd reads the
        command stream line by line, so pipelined commands are answered in order; with this
        hook present it no longer records the client's name itself, so the hook does."""
        session.host_name = hostname
        responses.insert(-1, "250-PIPELINING")  # before the last line, "250 HELP"
        return responses

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.n += len(envelope.rcpt_tos)
        return "250 2.0.0 Ok: queued"


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Sink:
    """`python -m bench.sink` in a child process, from `cwd`, on a free port; stopped (and its
    count read into `received`) when the block ends."""

    def __init__(self, cwd: str | Path) -> None:
        self.cwd, self.port, self.received = cwd, free_port(), 0

    def __enter__(self) -> Sink:
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.sink", str(self.port)], cwd=self.cwd,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.proc.terminate()
        self.received = int((self.proc.communicate(timeout=30)[0] or "0").split()[-1])


def main() -> None:
    handler = _Count()
    controller = Controller(handler, hostname="127.0.0.1", port=int(sys.argv[1]))
    controller.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    print("ready", flush=True)
    done.wait()
    controller.stop()
    print(handler.n, flush=True)


if __name__ == "__main__":
    main()
