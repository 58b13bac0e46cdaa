"""The byte formats that outlive the code: log entries, signed tree heads, key encodings.

Everything a verifier recomputes is defined here once, so the log that writes a format and the
bundle verifier that reads it years later cannot drift apart. docs/evidence.md describes each
format for people who write their own verifier.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from censorwatch.evidence.merkle import HASH_SIZE, leaf_hash
from censorwatch.model import canonical_json
from censorwatch.signing.encoding import (  # re-exported: the formats a verifier reads
    b64decode,
    b64encode,
    ed25519_verify,
    public_key_bytes,
)

ENTRY_TYPE = "censorwatch.measurement/v1"
TREE_HEAD_CONTEXT = b"censorwatch/tree-head/v1\x00"
MANIFEST_CONTEXT = b"censorwatch/bundle-manifest/v1\x00"


# -- strict encodings: one value has exactly one accepted spelling -------------------------------


def hexdecode(text: Any, size: int = HASH_SIZE) -> bytes:
    """Lower-case hex of exactly ``size`` bytes."""
    if not isinstance(text, str) or text != text.lower():
        raise ValueError("expected lower-case hex")
    try:
        data = bytes.fromhex(text)
    except ValueError:
        raise ValueError("not hex") from None
    if len(data) != size:
        raise ValueError(f"expected {size} bytes of hex, got {len(data)}")
    return data


def log_id(public_key: bytes) -> str:
    """A log's name: the full SHA-256 (hex) of its raw 32-byte public key."""
    return hashlib.sha256(public_key).hexdigest()


def checkpoint_origin(log_id_hex: str) -> str:
    """The origin line (and key name) of a log's C2SP checkpoints: bound to its key."""
    return f"censorwatch/log/{log_id_hex}"


# -- log entries -----------------------------------------------------------------------------------


def measurement_digest(measurement: dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical measurement, ``measurement_uid`` left out.

    The UID is bound by the entry itself; leaving it out here lets a store add or drop the
    field without changing what was logged.
    """
    body = {k: v for k, v in measurement.items() if k != "measurement_uid"}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def entry_bytes(measurement_uid: str, measurement: dict[str, Any]) -> bytes:
    """The data of one log leaf (RFC 9162's D[i]): canonical JSON naming the measurement."""
    return entry_bytes_of_digest(measurement_uid, measurement_digest(measurement))


def entry_bytes_of_digest(measurement_uid: str, measurement_sha256: str) -> bytes:
    """The same leaf data from the measurement's digest: what a bundle proves for a
    measurement it lists but does not carry."""
    return canonical_json(
        {
            "measurement_sha256": measurement_sha256,
            "measurement_uid": measurement_uid,
            "type": ENTRY_TYPE,
        }
    )


def entry_leaf_hash(measurement_uid: str, measurement: dict[str, Any]) -> bytes:
    return leaf_hash(entry_bytes(measurement_uid, measurement))


# -- signed tree heads -----------------------------------------------------------------------------


def tree_head_message(tree_size: int, timestamp: int, root_hash: bytes, log_id_hex: str) -> bytes:
    """What a log signs: context, then u64 size, u64 milliseconds, root, log id (big-endian)."""
    return (
        TREE_HEAD_CONTEXT
        + struct.pack(">QQ", tree_size, timestamp)
        + root_hash
        + bytes.fromhex(log_id_hex)
    )


@dataclass(frozen=True)
class TreeHead:
    """A signed tree head: the log's signed statement "my tree of this size has this root"."""

    tree_size: int
    timestamp: int  # milliseconds since the Unix epoch, UTC
    root_hash: bytes
    log_id: str
    signature: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "log_id": self.log_id,
            "root_hash": self.root_hash.hex(),
            "signature": b64encode(self.signature),
            "timestamp": self.timestamp,
            "tree_size": self.tree_size,
        }

    @classmethod
    def from_json(cls, data: Any) -> TreeHead:
        """Strict parsing: exactly the five fields, each in its one spelling."""
        if not isinstance(data, dict):
            raise ValueError("a tree head is a JSON object")
        expected = {"log_id", "root_hash", "signature", "timestamp", "tree_size"}
        if set(data) != expected:
            raise ValueError(f"tree head fields must be exactly {sorted(expected)}")
        size, ts = data["tree_size"], data["timestamp"]
        for name, value in (("tree_size", size), ("timestamp", ts)):
            if type(value) is not int or not 0 <= value < 2**63:
                raise ValueError(f"{name} must be a non-negative integer")
        hexdecode(data["log_id"])
        return cls(
            tree_size=size,
            timestamp=ts,
            root_hash=hexdecode(data["root_hash"]),
            log_id=data["log_id"],
            signature=b64decode(data["signature"], 64),
        )

    def message(self) -> bytes:
        return tree_head_message(self.tree_size, self.timestamp, self.root_hash, self.log_id)

    def verify(self, public_key: bytes) -> bool:
        """The signature holds and the head names the log whose key this is."""
        return self.log_id == log_id(public_key) and ed25519_verify(
            public_key, self.signature, self.message()
        )


def sign_tree_head(
    key: Ed25519PrivateKey, tree_size: int, timestamp: int, root_hash: bytes
) -> TreeHead:
    lid = log_id(public_key_bytes(key))
    signature = key.sign(tree_head_message(tree_size, timestamp, root_hash, lid))
    return TreeHead(tree_size, timestamp, root_hash, lid, signature)


# -- proofs ----------------------------------------------------------------------------------------


def _hash_list(value: Any, name: str) -> list[bytes]:
    if not isinstance(value, list) or len(value) > 64:
        raise ValueError(f"{name} must be a list of at most 64 hashes")
    return [hexdecode(v) for v in value]


def _size(value: Any, name: str) -> int:
    if type(value) is not int or not 0 <= value < 2**63:
        raise ValueError(f"{name} must be a non-negative integer")
    return value


@dataclass(frozen=True)
class InclusionProof:
    """Where a measurement's leaf sits in a signed tree, and the path to its root."""

    measurement_uid: str
    leaf_index: int
    tree_size: int
    leaf_hash: bytes
    audit_path: list[bytes]

    def to_json(self) -> dict[str, Any]:
        return {
            "audit_path": [h.hex() for h in self.audit_path],
            "leaf_hash": self.leaf_hash.hex(),
            "leaf_index": self.leaf_index,
            "measurement_uid": self.measurement_uid,
            "tree_size": self.tree_size,
        }

    @classmethod
    def from_json(cls, data: Any) -> InclusionProof:
        expected = {"audit_path", "leaf_hash", "leaf_index", "measurement_uid", "tree_size"}
        if not isinstance(data, dict) or set(data) != expected:
            raise ValueError(f"an inclusion proof has exactly the fields {sorted(expected)}")
        if not isinstance(data["measurement_uid"], str):
            raise ValueError("measurement_uid must be a string")
        return cls(
            measurement_uid=data["measurement_uid"],
            leaf_index=_size(data["leaf_index"], "leaf_index"),
            tree_size=_size(data["tree_size"], "tree_size"),
            leaf_hash=hexdecode(data["leaf_hash"]),
            audit_path=_hash_list(data["audit_path"], "audit_path"),
        )


def consistency_from_json(data: Any) -> tuple[int, int, list[bytes]]:
    """Parse ``{"first", "second", "consistency_path"}`` as the log API serves it."""
    expected = {"consistency_path", "first", "second"}
    if not isinstance(data, dict) or set(data) != expected:
        raise ValueError(f"a consistency proof has exactly the fields {sorted(expected)}")
    return (
        _size(data["first"], "first"),
        _size(data["second"], "second"),
        _hash_list(data["consistency_path"], "consistency_path"),
    )


#: Hashes one batch proof may carry: enough for 200,000 scattered leaves of a 2^40 tree.
MAX_BATCH_HASHES = 8_000_000


@dataclass(frozen=True)
class BatchProof:
    """One proof for many leaves of one tree (``merkle.batch_inclusion_hashes``)."""

    tree_size: int
    hashes: list[bytes]

    def to_json(self) -> dict[str, Any]:
        return {"hashes": [h.hex() for h in self.hashes], "tree_size": self.tree_size}

    @classmethod
    def from_json(cls, data: Any) -> BatchProof:
        if not isinstance(data, dict) or set(data) != {"hashes", "tree_size"}:
            raise ValueError("a batch proof has exactly the fields ['hashes', 'tree_size']")
        hashes = data["hashes"]
        if not isinstance(hashes, list) or len(hashes) > MAX_BATCH_HASHES:
            raise ValueError(f"hashes must be a list of at most {MAX_BATCH_HASHES} hashes")
        return cls(_size(data["tree_size"], "tree_size"), [hexdecode(h) for h in hashes])
