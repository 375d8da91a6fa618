"""HMAC signing with key rotation, and keyed hashes of addresses.

New signatures use the current key; verification accepts the current and previous keys
(`previous_secret_keys`), so a key can be rotated without breaking links in old mail.
`Settings` reads the key once per process (`reload_keys()` to read it again): a message
carries about nine signatures, and each used to stat() the key file.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from functools import lru_cache

from campaigns.config import Settings


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@lru_cache(maxsize=8)
def _keyed(key: bytes) -> hmac.HMAC:
    """An HMAC with the key already absorbed: copying it is cheaper than keying anew (about
    nine signatures per message: links, pixel, unsubscribe, Message-ID, Return-Path)."""
    return hmac.new(key, digestmod=hashlib.sha256)


def sign(settings: Settings, purpose: str, message: str, length: int = 16) -> str:
    """A URL-safe signature of `message` for one `purpose` (domain-separated)."""
    mac = _keyed(settings.signing_key).copy()
    mac.update(f"{purpose}\x00{message}".encode())
    return _b64(mac.digest()[:length])


def verify(settings: Settings, purpose: str, message: str, signature: str, length: int = 16) -> bool:
    """True when `signature` was made by the current or a previous key."""
    for key in settings.signing_keys:
        mac = hmac.new(key, f"{purpose}\x00{message}".encode(), hashlib.sha256)
        if same(_b64(mac.digest()[:length]), signature):
            return True
    return False


def same(expected: str, given: str) -> bool:
    """Constant-time equality of two strings compared as bytes (any text a client sends,
    non-ASCII included, is simply unequal instead of an error)."""
    return hmac.compare_digest(expected.encode("utf-8", "surrogatepass"), given.encode("utf-8", "surrogatepass"))


def address_hash(settings: Settings, channel: str, address: str) -> str:
    """Keyed hash of a normalised address: what suppression matches on (survives erasure)."""
    mac = hmac.new(settings.hashing_key, f"{channel}:{address}".encode(), hashlib.sha256)
    return mac.hexdigest()


def address_hasher(settings: Settings) -> Callable[[str, str], str]:
    """`address_hash` with the key read and set up once: an import hashes two addresses a row."""
    keyed = hmac.new(settings.hashing_key, digestmod=hashlib.sha256)

    def hash_of(channel: str, address: str) -> str:
        mac = keyed.copy()
        mac.update(f"{channel}:{address}".encode())
        return mac.hexdigest()

    return hash_of


def token_hash(token: str) -> str:
    """Hash of a high-entropy single-use token (the database never holds the token)."""
    return hashlib.sha256(token.encode()).hexdigest()
