"""Fetch the current fingerprint databases from upstream, bounded in time and size.

All four files are fetched and parsed before any is written, and each is replaced atomically,
so a failed or partial sync leaves the previous copy intact.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from censorwatch.analysis.fingerprints import (
    FILE_NAMES,
    default_dir,
    parse_cp_jsonl,
    parse_ooni_csv,
)

UPSTREAM = {
    "fingerprints_dns.csv": (
        "https://raw.githubusercontent.com/ooni/blocking-fingerprints/main/fingerprints_dns.csv"
    ),
    "fingerprints_http.csv": (
        "https://raw.githubusercontent.com/ooni/blocking-fingerprints/main/fingerprints_http.csv"
    ),
    "blockpage_signatures.json": (
        "https://raw.githubusercontent.com/censoredplanet/censoredplanet-analysis/master/"
        "pipeline/metadata/data/blockpage_signatures.json"
    ),
    "false_positive_signatures.json": (
        "https://raw.githubusercontent.com/censoredplanet/censoredplanet-analysis/master/"
        "pipeline/metadata/data/false_positive_signatures.json"
    ),
}
MAX_BYTES = 32 * 1024 * 1024  # per file; the real files are well under 1 MiB


class SyncError(Exception):
    pass


def _count(name: str, text: str) -> int:
    if name.endswith(".csv"):
        return len(parse_ooni_csv(text))
    return len(parse_cp_jsonl(text, false_positive=name.startswith("false_")))


def _fetch(client, url: str) -> bytes:  # client: httpx.Client
    import httpx

    try:
        with client.stream("GET", url) as response:
            if response.status_code != 200:
                raise SyncError(f"{url}: HTTP status {response.status_code}")
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > MAX_BYTES:
                raise SyncError(f"{url}: larger than {MAX_BYTES} bytes")
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > MAX_BYTES:
                    raise SyncError(f"{url}: larger than {MAX_BYTES} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.HTTPError as exc:
        raise SyncError(f"{url}: {type(exc).__name__}: {exc}") from None


def sync_fingerprints(
    dest: str | os.PathLike[str] | None = None,
    *,
    source: str | None = None,
    timeout: float = 30.0,
) -> list[tuple[Path, int]]:
    """Download the four files into ``dest``; returns each written path and its entry count.

    ``source`` replaces upstream with one base URL serving all four names (a mirror, or a
    local server in tests).
    """
    import httpx

    target = Path(dest) if dest else default_dir()
    fetched: dict[str, bytes] = {}
    limits = httpx.Timeout(timeout, connect=min(timeout, 10.0))
    with httpx.Client(timeout=limits, follow_redirects=True, max_redirects=5) as client:
        for name in FILE_NAMES:
            url = f"{source.rstrip('/')}/{name}" if source else UPSTREAM[name]
            fetched[name] = _fetch(client, url)
    counts: dict[str, int] = {}
    for name, data in fetched.items():
        text = data.decode("utf-8", errors="replace")
        counts[name] = _count(name, text)
        if counts[name] == 0:
            raise SyncError(f"{name}: no fingerprints in the downloaded file; nothing written")
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in fetched.items():
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=target)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append((target / name, counts[name]))
    return written
