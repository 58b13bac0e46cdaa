"""Report identifiers that carry their own proof.

A report ID looks like OONI's (``20240217T101500Z_webconnectivity_PK_17557_n1_<16 chars>``) and
names the test, country and network it was opened for; its last 8 characters are an HMAC under
the collector's key. Any collector holding the key can check a report without remembering it,
so reports survive restarts and a probe can resend to the same report after a crash, which is
what keeps resubmission idempotent.

The ID spells the test name without underscores (as OONI does), which loses information:
``web_connectivity`` and ``web_conn_ectivity`` look the same. So the 8 characters before the
HMAC are 4 random ones and 4 that bind the exact test name (an HMAC of the random part and the
name): a submission must carry the very test name its report was opened for.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from censorwatch.times import compact_stamp, utcnow

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
#: Applied with ``fullmatch`` (``$`` would let a trailing newline through); ASCII digits only.
REPORT_ID_RE = re.compile(
    r"([0-9]{8}T[0-9]{6}Z)_([a-z0-9]{1,64})_([A-Z]{2})_([0-9]{1,10})_n1_([A-Za-z0-9]{8})([A-Za-z0-9]{8})"
)


@dataclass(frozen=True, slots=True)
class Report:
    report_id: str
    test_name_key: str  # test name without underscores, as OONI writes it in report IDs
    probe_cc: str
    probe_asn: str  # "AS1234"
    #: ``names(test_name)``: whether the report was opened for exactly this test name.
    names: Callable[[str], bool] = field(
        default=lambda _test_name: False, compare=False, repr=False
    )


def load_key(directory: str | Path) -> bytes:
    """The collector's report key, created (0600) on first use."""
    path = Path(directory) / "report.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(32))
            fh.flush()
            os.fsync(fh.fileno())
    return path.read_bytes()


def _tag(key: bytes, prefix: str) -> str:
    digest = hmac.new(key, prefix.encode(), hashlib.sha256).digest()
    return "".join(ALPHABET[b % len(ALPHABET)] for b in digest[:8])


def test_name_key(test_name: str) -> str:
    return test_name.replace("_", "").lower()


def _name_tag(key: bytes, salt: str, test_name: str) -> str:
    return _tag(key, f"test_name\0{salt}\0{test_name}")[:4]


def mint(key: bytes, test_name: str, probe_cc: str, probe_asn: str) -> str:
    stamp = compact_stamp(utcnow())
    salt = "".join(secrets.choice(ALPHABET) for _ in range(4))
    nonce = salt + _name_tag(key, salt, test_name)
    prefix = f"{stamp}_{test_name_key(test_name)}_{probe_cc}_{probe_asn[2:]}_n1_{nonce}"
    return prefix + _tag(key, prefix)


def verify(key: bytes, report_id: str) -> Report | None:
    """The report named by ``report_id``, or None when this collector did not open it."""
    m = REPORT_ID_RE.fullmatch(report_id)
    if m is None:
        return None
    if not hmac.compare_digest(m.group(6), _tag(key, report_id[:-8])):
        return None
    salt, bound = m.group(5)[:4], m.group(5)[4:]
    test_key = m.group(2)

    def names(test_name: str) -> bool:
        return test_name_key(test_name) == test_key and hmac.compare_digest(
            bound, _name_tag(key, salt, test_name)
        )

    return Report(report_id, test_key, m.group(3), f"AS{m.group(4)}", names)
