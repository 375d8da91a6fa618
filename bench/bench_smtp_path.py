"""The SMTP channel alone: SmtpPool.send with PIPELINING against one command at a time.

    python -m bench.bench_smtp_path N ROUNDS POOL    # e.g. 5000 5 8, and 3000 5 1

No database, no rendering: N built messages (3 KB each) go through one SmtpPool of POOL
connections into `bench.sink` (which offers PIPELINING, as Postfix does), with and without
using it, alternated ROUNDS times. Prints per round and the medians: the sending process's
CPU per message and messages per second. Without pipelining here means the pool's sequential
path, which is what a server that does not offer PIPELINING gets.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path

from bench.sink import Sink
from scheduler.channels import OutgoingEmail
from scheduler.channels.config import SmtpConfig
from scheduler.channels.smtp import SmtpPool
from scheduler.channels.smtp_pipelining import PipeliningSMTP

ROOT = Path(__file__).resolve().parents[1]
OFFERED = PipeliningSMTP.pipelining


async def _run(port: int, pool_size: int, messages: list[OutgoingEmail], pipelining: bool) -> tuple[float, float]:
    PipeliningSMTP.pipelining = OFFERED if pipelining else property(lambda self: False)  # type: ignore[method-assign, assignment]
    pool = SmtpPool(SmtpConfig(port=port, pool_size=pool_size))
    room = asyncio.Semaphore(4 * pool_size)  # enough senders to keep every connection busy

    async def one(m: OutgoingEmail) -> None:
        async with room:
            result = await pool.send(m)
            assert result.outcome == "sent", result

    await one(messages[0])  # connect outside the measurement
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(m) for m in messages))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await pool.close()
    return cpu / len(messages) * 1000, len(messages) / wall


def main(n: int, rounds: int, pool_size: int) -> None:
    body = b"Subject: bench\r\n\r\n" + (b"x" * 76 + b"\r\n") * 39  # about 3 KB
    messages = [OutgoingEmail(str(i), "news@example.com", f"p{i}@example.com", body, f"<{i}@bench>") for i in range(n)]
    runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    with Sink(ROOT) as sink:
        for k in range(rounds):
            for pipelining in (False, True):
                runs[pipelining].append(asyncio.run(_run(sink.port, pool_size, messages, pipelining)))
                cpu, rate = runs[pipelining][-1]
                print(f"round {k}: {'pipelining' if pipelining else 'sequential'} cpu {cpu:.3f} ms/msg, {rate:.0f}/s",
                      flush=True)
    for pipelining in (False, True):
        cpu = statistics.median(c for c, _ in runs[pipelining])
        rate = statistics.median(r for _, r in runs[pipelining])
        print(f"{'pipelining' if pipelining else 'sequential'}: median cpu {cpu:.3f} ms/msg, median {rate:.0f}/s "
              f"(pool {pool_size}, {n} messages, {rounds} rounds)")


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
