"""The signing process: private-key operations over digests the sender prepared.

Run by scheduler/dkim_pool.py as `python -m scheduler.dkim_child` from the project's root
(it imports only the standard library and campaigns/messages/dkim_keys.py, the same key
operations the sender uses inline) with pipes on stdin and stdout. The first frame
carries the PEM keys (never argv or the environment); each later frame is
(sequence number, [[(algorithm, digest), ...] per message]) and is answered with
(sequence number, [[signature, ...] or the reason as text, per message]). A frame is a
4-byte big-endian length and a pickle; both ends are this program and its parent. It exits
when its input ends, which is also what happens when the sender dies.
"""

from __future__ import annotations

import os
import pickle
import sys
from typing import Any

from campaigns.messages.dkim_keys import sign_digest


def read_frame(fd: int) -> bytes | None:
    """One whole frame from a blocking `fd`, or None at the end of input."""
    head = _read_exactly(fd, 4)
    if head is None:
        return None
    body = _read_exactly(fd, int.from_bytes(head, "big"))
    if body is None:
        return None
    return body


def _read_exactly(fd: int, n: int) -> bytes | None:
    parts: list[bytes] = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            return None
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def frame(obj: Any) -> bytes:
    """`obj` as one frame."""
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return len(payload).to_bytes(4, "big") + payload


def write_all(fd: int, data: bytes) -> None:
    """All of `data` to a blocking `fd`."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def serve(fd_in: int, fd_out: int) -> None:
    keys = read_frame(fd_in)
    if keys is None:
        return
    rsa_pem, ed_pem = pickle.loads(keys)
    while (job := read_frame(fd_in)) is not None:
        seq, messages = pickle.loads(job)
        out: list[list[bytes] | str] = []
        for headers in messages:
            try:
                out.append([sign_digest(rsa_pem, ed_pem, algorithm, digest) for algorithm, digest in headers])
            except Exception as exc:  # this message only
                out.append(f"{type(exc).__name__}: {exc}")
        write_all(fd_out, frame((seq, out)))


if __name__ == "__main__":
    try:
        serve(sys.stdin.fileno(), sys.stdout.fileno())
    except BrokenPipeError:  # the sender went away
        pass
    except Exception as exc:  # one line for the sender's log; the sender fails what it waited for as transient
        print(f"campaigns DKIM signing process: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
