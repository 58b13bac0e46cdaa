"""The encodings of keys and signatures that probe, collector and verifier share.

Strict on purpose: one value has exactly one accepted spelling, so a signature or a key id read
years later means the same bytes it meant when written.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ED25519 = "ed25519"


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: Any, size: int | None = None) -> bytes:
    """Standard base64 with padding, canonical only (a re-encoding must give the same text)."""
    if not isinstance(text, str):
        raise ValueError("expected a base64 string")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not base64: {exc}") from None
    if b64encode(data) != text:
        raise ValueError("base64 is not in canonical form")
    if size is not None and len(data) != size:
        raise ValueError(f"expected {size} bytes, got {len(data)}")
    return data


def public_key_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key: bytes) -> str:
    """A probe key's name: the first 16 hex digits of SHA-256 over the raw 32-byte key."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def ed25519_verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True
