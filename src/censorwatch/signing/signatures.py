"""Signed measurements: the probe signs, anyone checks, OONI tools read on unaffected.

The signature travels in the measurement as the extra top-level field ``x_signature``::

    {"alg": "ed25519", "key_id": "<16 hex>", "public_key": "<base64, 32 bytes>",
     "sig": "<base64, 64 bytes>", "signed_at": "<RFC 3339 UTC>"}

The signed message is ``b"censorwatch/measurement/v1\\x00"`` followed by the canonical JSON
(model.canonical_json) of ``{"alg", "key_id", "public_key", "signed_at", "measurement": BODY}``,
where BODY is the measurement without ``x_signature``, ``measurement_uid`` and ``report_id``: the
last two are assigned by the collector when the measurement is submitted (possibly long after a
probe queued it offline), so the probe cannot sign them. Every byte of the field except ``sig``
is covered too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from censorwatch.model import canonical_json
from censorwatch.signing.encoding import (
    ED25519,
    b64decode,
    b64encode,
    ed25519_verify,
    key_id,
    public_key_bytes,
)
from censorwatch.times import parse_time, rfc3339, utcnow

SIGNATURE_FIELD = "x_signature"
MEASUREMENT_CONTEXT = b"censorwatch/measurement/v1\x00"
UNSIGNED_FIELDS = ("measurement_uid", "report_id", SIGNATURE_FIELD)
_HEADER_FIELDS = {"alg", "key_id", "public_key", "sig", "signed_at"}

SignatureStatus = Literal["verified", "unverified", "invalid"]


@dataclass(frozen=True)
class SignatureCheck:
    status: SignatureStatus
    key_id: str | None = None
    public_key: bytes | None = None
    reason: str = ""


def signed_body(measurement: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in measurement.items() if k not in UNSIGNED_FIELDS}


def signing_message(header: dict[str, Any], body: dict[str, Any]) -> bytes:
    covered = {k: header[k] for k in ("alg", "key_id", "public_key", "signed_at")}
    covered["measurement"] = body
    return MEASUREMENT_CONTEXT + canonical_json(covered)


def sign_measurement(
    measurement: dict[str, Any], key: Ed25519PrivateKey, signed_at: str | None = None
) -> dict[str, Any]:
    """A copy of ``measurement`` carrying ``x_signature`` (any earlier signature replaced).

    The measurement is first normalised through its canonical JSON, so what is signed is
    exactly what any later reader of the JSON will rebuild (tuples, NaN, non-string keys...).
    """
    if measurement.get("probe_ip") not in (None, "", "127.0.0.1"):
        # A signature would bind the address for good; scrubbing later would break it.
        raise ValueError("scrub the probe's IP address (probe_ip) before signing")
    normal = msgspec.json.decode(canonical_json(signed_body(measurement)))
    pub = public_key_bytes(key)
    header = {
        "alg": ED25519,
        "key_id": key_id(pub),
        "public_key": b64encode(pub),
        "signed_at": signed_at or rfc3339(utcnow()),
    }
    header["sig"] = b64encode(key.sign(signing_message(header, normal)))
    out = dict(normal)
    for name in UNSIGNED_FIELDS[:-1]:
        if name in measurement:
            out[name] = measurement[name]
    out[SIGNATURE_FIELD] = header
    return out


def check_signature(measurement: dict[str, Any]) -> SignatureCheck:
    """Status of a measurement's signature, with the reason when it does not hold."""
    header = measurement.get(SIGNATURE_FIELD)
    if header is None:
        return SignatureCheck("unverified", reason="no signature")
    if not isinstance(header, dict) or set(header) != _HEADER_FIELDS:
        return SignatureCheck(
            "invalid",
            reason=f"{SIGNATURE_FIELD} must have exactly the fields {sorted(_HEADER_FIELDS)}",
        )
    if header["alg"] != ED25519:
        return SignatureCheck("invalid", reason=f"unsupported alg {header['alg']!r}")
    try:
        pub = b64decode(header["public_key"], 32)
        sig = b64decode(header["sig"], 64)
    except ValueError as exc:
        return SignatureCheck("invalid", reason=f"bad encoding: {exc}")
    kid = key_id(pub)
    if header["key_id"] != kid:
        return SignatureCheck("invalid", kid, pub, "key_id does not name the public key")
    signed_at = header["signed_at"]
    try:
        if not isinstance(signed_at, str) or rfc3339(parse_time(signed_at)) != signed_at:
            raise ValueError
    except ValueError:
        return SignatureCheck("invalid", kid, pub, "signed_at is not RFC 3339 UTC")
    if not ed25519_verify(pub, sig, signing_message(header, signed_body(measurement))):
        return SignatureCheck("invalid", kid, pub, "signature does not match the measurement")
    return SignatureCheck("verified", kid, pub)


def verify_signature(measurement: dict[str, Any]) -> SignatureStatus:
    """The collector's hook: ``verified``, ``unverified`` (no signature) or ``invalid``.

    ``verified`` means "signed by the key it names"; whether that key is a known probe is a
    policy question for the caller (compare ``check_signature(m).key_id`` with a list).
    """
    return check_signature(measurement).status
