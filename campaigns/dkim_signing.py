"""DKIM signatures (RFC 6376) with dkimpy, covering the one-click unsubscribe headers.

RFC 8058 §4 requires the DKIM signature to cover List-Unsubscribe and
List-Unsubscribe-Post, or mailbox providers ignore the one-click button. The headers a
reader trusts (From, Subject, the unsubscribe pair, ...) are also *over*-signed: named in
`h=` once more than they occur, so a relay that adds a second copy breaks the signature
instead of slipping its own in (RFC 6376 §5.4.2, select_headers in dkimpy honours it).

The key is read once per (file, modification time) and checked when a sender starts, so
a bad key stops `campaigns daemon`/`worker` with one line instead of failing every
delivery. The private key lives in a file named by config or environment, never in the
database.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import dkim
from dkim.crypto import UnparsableKeyError, parse_pem_private_key

from campaigns.config import Settings
from campaigns.errors import ConfigError

# Signed once (or zero times when absent, which also forbids adding them later).
SIGNED = (b"from", b"reply-to", b"to", b"subject", b"date", b"message-id", b"mime-version",
          b"content-type", b"list-unsubscribe", b"list-unsubscribe-post")
# Named once more: a copy added in transit invalidates the signature.
OVERSIGNED = (b"from", b"reply-to", b"to", b"subject", b"date", b"message-id",
              b"list-unsubscribe", b"list-unsubscribe-post")
CANONICALIZE = (b"relaxed", b"relaxed")  # survives relays that refold headers or trim spaces


@dataclass(frozen=True)
class DkimSigner:
    """Signs built messages for one domain and selector."""

    domain: bytes
    selector: bytes
    key: bytes

    def sign(self, message: bytes) -> bytes:
        """`DKIM-Signature:` prepended to the message bytes."""
        header = dkim.sign(message, self.selector, self.domain, self.key, canonicalize=CANONICALIZE,
                           include_headers=list(SIGNED + OVERSIGNED))
        return header + message

    @property
    def record_name(self) -> str:
        """Where receivers look the public key up."""
        return f"{self.selector.decode()}._domainkey.{self.domain.decode()}"

    @property
    def record_value(self) -> str:
        """The TXT record to publish: the public half of the key as SubjectPublicKeyInfo."""
        pk = parse_pem_private_key(self.key)
        rsa = _der(0x30, _der_int(pk["modulus"]) + _der_int(pk["publicExponent"]))
        algorithm = _der(0x30, _RSA_ENCRYPTION_OID + b"\x05\x00")
        spki = _der(0x30, algorithm + _der(0x03, b"\x00" + rsa))
        return f"v=DKIM1; k=rsa; p={base64.b64encode(spki).decode()}"


_RSA_ENCRYPTION_OID = bytes.fromhex("06092a864886f70d010101")  # 1.2.840.113549.1.1.1


def _der(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


def _der_int(value: int) -> bytes:
    return _der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))  # a leading 0 keeps it positive


def signer(settings: Settings) -> DkimSigner | None:
    """The configured signer, or None when DKIM is off; ConfigError for a half or bad setup."""
    s = settings.smtp
    values = {"dkim_domain": s.dkim_domain, "dkim_selector": s.dkim_selector,
              "dkim_private_key_file": s.dkim_private_key_file}
    if not any(v.strip() for v in values.values()):
        return None
    missing = [k for k, v in values.items() if not v.strip()]
    if missing:
        raise ConfigError(f"[smtp] {', '.join(missing)} is empty: DKIM needs dkim_domain, dkim_selector "
                          "and dkim_private_key_file together (or none of them)")
    path = settings.path(s.dkim_private_key_file)
    try:
        mtime = path.stat().st_mtime_ns
    except OSError as exc:
        raise ConfigError(f"[smtp] dkim_private_key_file: cannot read {path}: {exc.strerror}") from None
    return _load(s.dkim_domain.strip().lower(), s.dkim_selector.strip(), path, mtime)


@lru_cache(maxsize=8)
def _load(domain: str, selector: str, path: Path, mtime: int) -> DkimSigner:
    del mtime  # part of the cache key only: an edited key file is read again
    try:
        key = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"[smtp] dkim_private_key_file: cannot read {path}: {exc.strerror}") from None
    try:
        parse_pem_private_key(key)
    except (UnparsableKeyError, ValueError, IndexError) as exc:
        first = (str(exc).splitlines() or [""])[0]
        raise ConfigError(f"[smtp] dkim_private_key_file: {path} is not a PEM RSA private key ({first})") from None
    for name, value in (("dkim_domain", domain), ("dkim_selector", selector)):
        if not value.isascii() or any(c.isspace() or c in ';=' for c in value):
            raise ConfigError(f"[smtp] {name}: '{value}' is not a valid DNS label")
    return DkimSigner(domain.encode("ascii"), selector.encode("ascii"), key)
