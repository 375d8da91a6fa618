"""An SMTP sink for benchmarks, in its own process: accepts everything, counts messages.

    python -m bench.sink PORT    # prints "ready", then the count when it gets SIGTERM
"""

from __future__ import annotations

import signal
import sys
import threading

from aiosmtpd.controller import Controller


class _Count:
    def __init__(self) -> None:
        self.n = 0

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.n += len(envelope.rcpt_tos)
        return "250 2.0.0 Ok: queued"


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
