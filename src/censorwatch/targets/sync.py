"""Fetching the current Citizen Lab test lists (``censorwatch targets sync``), bounded.

The lists live in the ``lists/`` folder of github.com/citizenlab/test-lists: ``global.csv``
and one ``<cc>.csv`` per country. Every file of a sync is downloaded (bounded in bytes and in
seconds) and read back with the project's own test-list reader (``targets.testlists``) before
any is written; a list is refused when its header is not Citizen Lab's or when it holds no URL
the probe could measure. Only when every file passed is each written, atomically, so a failed
sync (offline, a broken or hostile server) leaves the previous lists exactly as they were.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from censorwatch.download import Budget, DownloadError, NotPublished, fetch
from censorwatch.durable import write_atomic
from censorwatch.targets import testlists

UPSTREAM = "https://raw.githubusercontent.com/citizenlab/test-lists/master/lists/"
COUNTRY_LEGEND = "00-LEGEND-country_codes.csv"
#: Bounds of one file: the real global list is about 200 KB, the largest country list less.
MAX_FILE_BYTES = 8 * 1024 * 1024
#: Bounds of one sync: every file together, and the seconds for all of them.
MAX_TOTAL_BYTES = 64 * 1024 * 1024
SYNC_SECONDS = 300.0
#: More bad rows than this share of a list, and it is refused: not a list someone edited.
MAX_BAD_SHARE = 0.5


class ListSyncError(Exception):
    """The sync failed; no list was replaced."""


@dataclass(frozen=True)
class SyncedList:
    path: Path
    urls: int  # rows the reader accepted
    bad_rows: int  # rows it reported and skipped
    status: str  # "written" or "unchanged"


def default_lists_dir() -> Path:
    """``$XDG_DATA_HOME/censorwatch/test-lists`` (``~/.local/share`` when unset)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "censorwatch" / "test-lists"


def list_name(cc: str) -> str:
    code = cc.strip().lower()
    if code == "global":
        return "global.csv"
    if len(code) != 2 or not code.isalpha():
        raise ListSyncError(f"{cc!r} is not a two-letter country code (or 'global')")
    return f"{code}.csv"


def sync_lists(
    directory: str | os.PathLike[str] | None = None,
    countries: Sequence[str] = (),
    *,
    base_url: str = UPSTREAM,
    timeout: float = 30.0,
    deadline_seconds: float = SYNC_SECONDS,
    max_file_bytes: int = MAX_FILE_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
) -> list[SyncedList]:
    """Fetch ``global.csv`` and each country's list into ``directory``; all or nothing.

    ``countries`` may hold ``"all"``: every country of the upstream legend that has a list
    (a country without one, HTTP 404, is skipped only in that case).
    """
    import httpx

    target = Path(directory) if directory else default_lists_dir()
    base = base_url if base_url.endswith("/") else base_url + "/"
    budget = Budget.starting_now(max_file_bytes, deadline_seconds, max_total_bytes)
    wanted = [n for n in (c.strip().lower() for c in countries) if n != "all"]
    names = ["global.csv", *dict.fromkeys(list_name(c) for c in wanted)]
    limits = httpx.Timeout(timeout, connect=min(timeout, 10.0))
    fetched: dict[str, bytes] = {}
    with httpx.Client(
        timeout=limits, follow_redirects=True, max_redirects=5, trust_env=False
    ) as client:
        optional: set[str] = set()
        if any(c.strip().lower() == "all" for c in countries):
            legend = _download(client, base + COUNTRY_LEGEND, budget)
            for code in _legend_codes(legend, base + COUNTRY_LEGEND):
                name = list_name(code)
                if name not in names:
                    names.append(name)
                    optional.add(name)
        for name in names:
            body = _download(client, base + name, budget, missing_ok=name in optional)
            if body is not None:
                fetched[name] = body
    checked = {name: _check(name, body) for name, body in fetched.items()}
    results = []
    for name, body in fetched.items():
        path = target / name
        urls, bad = checked[name]
        if path.is_file() and path.read_bytes() == body:
            results.append(SyncedList(path, urls, bad, "unchanged"))
            continue
        write_atomic(path, body)
        results.append(SyncedList(path, urls, bad, "written"))
    return results


def _download(client: Any, url: str, budget: Budget, *, missing_ok: bool = False) -> Any:
    try:
        return fetch(client, url, budget)
    except NotPublished:
        if missing_ok:
            return None
        raise ListSyncError(f"{url}: HTTP status 404") from None
    except DownloadError as exc:
        raise ListSyncError(str(exc)) from None


def _legend_codes(body: bytes, url: str) -> list[str]:
    """The country codes of the legend (``CountryCode,CountryName``)."""
    lines = body.decode("utf-8", errors="replace").splitlines()
    if not lines or lines[0].split(",", 1)[0].strip() != "CountryCode":
        raise ListSyncError(f"{url}: not Citizen Lab's country legend")
    codes = []
    for line in lines[1:]:
        code = line.split(",", 1)[0].strip()
        if len(code) == 2 and code.isalpha():
            codes.append(code.lower())
    return codes


def _check(name: str, body: bytes) -> tuple[int, int]:
    """Read ``body`` with the project's test-list reader; (URLs accepted, rows skipped)."""
    first = body.split(b"\n", 1)[0].decode("utf-8", errors="replace").strip().lstrip("\ufeff")
    header = tuple(h.strip().lower() for h in first.split(","))
    if header != testlists.COLUMNS:
        raise ListSyncError(
            f"{name}: refused, nothing replaced: header {first[:120]!r} is not "
            f"{','.join(testlists.COLUMNS)!r}"
        )
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="censorwatch-lists-") as scratch:
        path = Path(scratch) / name
        path.write_bytes(body)
        targets = testlists.load(path, warn=problems.append)
    if not targets:
        raise ListSyncError(f"{name}: refused, nothing replaced: no URL the probe can measure")
    if len(problems) > MAX_BAD_SHARE * (len(targets) + len(problems)):
        raise ListSyncError(
            f"{name}: refused, nothing replaced: {len(problems)} bad rows beside "
            f"{len(targets)} good ones"
        )
    return len(targets), len(problems)


__all__ = [
    "UPSTREAM",
    "ListSyncError",
    "SyncedList",
    "default_lists_dir",
    "list_name",
    "sync_lists",
]
