"""The signing process: private-key operations over digests the sender prepared.

Run by scheduler/dkim_pool.py as `python -P .../scheduler/dkim_child.py` (it imports only the
standard library and `cryptography`) with pipes on stdin and stdout. The first frame
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

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

RSA = b"rsa-sha256"


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
    rsa_key = serialization.load_pem_private_key(rsa_pem, password=None)
    ed_key = serialization.load_pem_private_key(ed_pem, password=None) if ed_pem else None
    assert isinstance(rsa_key, rsa.RSAPrivateKey)
    assert ed_key is None or isinstance(ed_key, ed25519.Ed25519PrivateKey)
    pkcs1, prehashed = padding.PKCS1v15(), Prehashed(hashes.SHA256())
    while (job := read_frame(fd_in)) is not None:
        seq, messages = pickle.loads(job)
        out: list[list[bytes] | str] = []
        for headers in messages:
            try:
                out.append([rsa_key.sign(digest, pkcs1, prehashed) if algorithm == RSA else ed_key.sign(digest)  # type: ignore[union-attr]
                            for algorithm, digest in headers])
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
