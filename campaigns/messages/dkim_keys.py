"""DKIM's private-key side: keys parsed from PEM, and the signature over a header's digest.

Shared by the sender (`dkim_signing.DkimSigner`) and the signing process
(`scheduler/dkim_child.py`); it imports only `cryptography`, so that process starts fast.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

RSA = b"rsa-sha256"
ED25519 = b"ed25519-sha256"


@lru_cache(maxsize=8)
def rsa_key(pem: bytes) -> rsa.RSAPrivateKey:
    """The RSA private key in `pem` (ValueError naming what it is instead)."""
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"a {type(key).__name__.removeprefix('_')} key, not RSA")
    return key


@lru_cache(maxsize=8)
def ed25519_key(pem: bytes) -> ed25519.Ed25519PrivateKey:
    """The Ed25519 private key in `pem` (ValueError otherwise)."""
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ValueError("not an Ed25519 key")
    return key


def sign_digest(rsa_pem: bytes, ed25519_pem: bytes | None, algorithm: bytes, digest: bytes) -> bytes:
    """The private-key operation over a header's SHA-256 digest: PKCS#1 v1.5 for RSA, and for
    Ed25519 the digest itself signed (RFC 8463)."""
    if algorithm == RSA:
        return rsa_key(rsa_pem).sign(digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    if algorithm != ED25519 or ed25519_pem is None:
        raise ValueError(f"no key for {algorithm.decode(errors='replace')}")
    return ed25519_key(ed25519_pem).sign(digest)
