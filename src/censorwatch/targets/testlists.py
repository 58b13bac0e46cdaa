"""Citizen Lab test lists (``url,category_code,category_description,date_added,source,notes``).

Lists are edited by hand by many people; a bad row is reported with its ``file:line`` and
skipped, and the rest of the list still runs.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

from censorwatch.targets import Target, check_url

COLUMNS = ("url", "category_code", "category_description", "date_added", "source", "notes")


def load(path: str | Path, warn: Callable[[str], None] | None = None) -> list[Target]:
    """The list's targets in file order; each bad row becomes one warning."""
    path = Path(path)
    warn = warn or (lambda _message: None)
    targets: list[Target] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8", errors="replace", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            warn(f"{path}:1: empty file")
            return targets
        names = [h.strip().lower() for h in header]
        if "url" not in names:
            warn(f"{path}:1: no 'url' column in header {header!r}")
            return targets
        url_at = names.index("url")
        cat_at = names.index("category_code") if "category_code" in names else None
        for row in reader:
            line = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(names):
                warn(f"{path}:{line}: expected {len(names)} fields, found {len(row)}")
                continue
            url = row[url_at].strip()
            problem = check_url(url)
            if problem:
                warn(f"{path}:{line}: {problem}: {url!r}")
                continue
            if url in seen:
                continue
            seen.add(url)
            category = row[cat_at].strip() if cat_at is not None else ""
            targets.append(Target(url, category_code=category, source=f"{path}:{line}"))
    return targets
