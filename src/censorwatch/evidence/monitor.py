"""A log monitor, as Certificate Transparency has them: is the new tree head an extension of
the one I saw before?

State is one JSON file per log (the pinned log key and the last verified head). A log that
shrinks, re-signs a size with another root, or cannot prove consistency is caught, and both
signed heads are written next to the state file: together they prove the log misbehaved.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from censorwatch.durable import write_atomic
from censorwatch.evidence import merkle
from censorwatch.evidence.formats import TreeHead, consistency_from_json, log_id
from censorwatch.signing.encoding import b64decode, b64encode

TIMEOUT_S = 10.0
MAX_RESPONSE_BYTES = 1 << 20


class MonitorError(Exception):
    """The log could not be asked (network, HTTP status, malformed answer)."""


@dataclass
class MonitorResult:
    ok: bool
    message: str
    previous: TreeHead | None = None
    current: TreeHead | None = None
    notes: list[str] = field(default_factory=list)


def default_state_path(url: str) -> Path:
    config = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    safe = "".join(c if c.isalnum() else "_" for c in url.split("://", 1)[-1]).strip("_")
    return Path(config) / "censorwatch" / "monitor" / f"{safe or 'log'}.json"


def _get(client: httpx.Client, url: str, params: dict[str, Any] | None = None) -> Any:
    try:
        with client.stream("GET", url, params=params) as response:
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_RESPONSE_BYTES:
                    raise MonitorError(f"{url}: answer larger than {MAX_RESPONSE_BYTES} bytes")
            if response.status_code != 200:
                raise MonitorError(f"{url}: HTTP {response.status_code}: {body[:200]!r}")
    except httpx.HTTPError as exc:
        raise MonitorError(f"{url}: {type(exc).__name__}: {exc}") from None
    try:
        return json.loads(body)
    except ValueError:
        raise MonitorError(f"{url}: answer is not JSON") from None


def _load_state(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def _save_json(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def check_log(base_url: str, state_path: Path, expected_log_id: str | None = None) -> MonitorResult:
    """Fetch the log's head and check it against the pinned key and the last head seen.

    The log key is pinned on first contact (``expected_log_id`` makes that first contact
    safe: the key must hash to it).
    """
    base = base_url.rstrip("/") + "/api/v1/log"
    state = _load_state(state_path)
    notes: list[str] = []
    with httpx.Client(timeout=TIMEOUT_S, follow_redirects=False) as client:
        if "public_key" in state:
            public_key = b64decode(state["public_key"], 32)
        else:
            try:
                public_key = b64decode(_get(client, f"{base}/key").get("public_key"), 32)
            except (ValueError, AttributeError) as exc:
                raise MonitorError(f"malformed log key: {exc}") from None
            notes.append(f"first contact: pinned log key {log_id(public_key)}")
        if expected_log_id is not None and log_id(public_key) != expected_log_id.lower():
            return MonitorResult(
                False, f"the log's key is {log_id(public_key)}, not the expected {expected_log_id}"
            )
        try:
            current = TreeHead.from_json(_get(client, f"{base}/sth"))
        except ValueError as exc:
            raise MonitorError(f"malformed tree head: {exc}") from None
        if not current.verify(public_key):
            return MonitorResult(
                False, "tree head signature does not verify with the log key", None, current, notes
            )
        previous = TreeHead.from_json(state["sth"]) if "sth" in state else None
        result = _compare(client, base, previous, current)
        result.notes = notes + result.notes
    if result.ok:
        _save_json(
            state_path,
            {
                "log_id": log_id(public_key),
                "public_key": b64encode(public_key),
                "sth": current.to_json(),
                "url": base_url,
            },
        )
    elif previous is not None:
        conflict = state_path.with_name(f"{state_path.stem}.conflict-{current.timestamp}.json")
        _save_json(
            conflict,
            {"earlier": previous.to_json(), "later": current.to_json(), "reason": result.message},
        )
        result.notes.append(f"both signed heads saved as evidence in {conflict}")
    return result


def _compare(
    client: httpx.Client, base: str, previous: TreeHead | None, current: TreeHead
) -> MonitorResult:
    if previous is None:
        return MonitorResult(True, f"first tree head seen: size {current.tree_size}", None, current)
    if current.tree_size < previous.tree_size:
        return MonitorResult(
            False,
            f"the log shrank from {previous.tree_size} to {current.tree_size} leaves",
            previous,
            current,
        )
    if current.timestamp < previous.timestamp:
        return MonitorResult(
            False, "the new tree head is older than the previous one", previous, current
        )
    if current.tree_size == previous.tree_size:
        if current.root_hash != previous.root_hash:
            return MonitorResult(
                False, f"two different roots signed for size {current.tree_size}", previous, current
            )
        return MonitorResult(True, f"unchanged at size {current.tree_size}", previous, current)
    try:
        first, second, path = consistency_from_json(
            _get(
                client,
                f"{base}/proof/consistency",
                {"first": previous.tree_size, "second": current.tree_size},
            )
        )
    except ValueError as exc:
        raise MonitorError(f"malformed consistency proof: {exc}") from None
    if (first, second) != (previous.tree_size, current.tree_size):
        return MonitorResult(
            False, "the log answered a consistency proof for other sizes", previous, current
        )
    if not merkle.verify_consistency(first, second, previous.root_hash, current.root_hash, path):
        return MonitorResult(
            False,
            f"INCONSISTENT: the tree of size {second} does not extend the tree of size {first} "
            "seen earlier; the log has rewritten its history",
            previous,
            current,
        )
    return MonitorResult(True, f"consistent: {first} -> {second} leaves", previous, current)
