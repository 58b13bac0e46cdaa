"""Storage: one interface (``Store``), backends chosen by URL; see docs/collector.md.

``open_store(url)`` is the only way in: callers never import a backend module.
``duckdb:///path/file.duckdb`` (or a plain path) is the embedded DuckDB backend.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from censorwatch.store.base import ArchiveLocation, Filters, MeasurementRow, Store

__all__ = [
    "SCHEMES",
    "ArchiveLocation",
    "Filters",
    "MeasurementRow",
    "Store",
    "StoreNotFoundError",
    "StoreURL",
    "UnsupportedStoreError",
    "open_store",
    "parse_store_url",
]

#: The URL schemes ``open_store`` understands, with an example of each.
SCHEMES: dict[str, str] = {"duckdb": "duckdb:///path/file.duckdb"}
# A scheme of two letters or more followed by "/" ("duckdb:///x", or "duckdb:/x" once a
# command-line Path has folded the slashes); a drive letter or a plain name is a path.
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):(?=/)")


class UnsupportedStoreError(ValueError):
    """The store URL names a backend this build does not have."""


class StoreNotFoundError(FileNotFoundError):
    """A store opened for reading does not exist."""


@dataclass(frozen=True, slots=True)
class StoreURL:
    """A parsed store URL: the backend's scheme and where its data is."""

    scheme: str
    location: str

    @property
    def path(self) -> Path:
        """The file of a file-based backend (DuckDB)."""
        return Path(self.location)


def _supported() -> str:
    return ", ".join(f"{scheme} ({example})" for scheme, example in SCHEMES.items())


def parse_store_url(url: str | os.PathLike[str]) -> StoreURL:
    """``duckdb:///abs/file.duckdb``, ``duckdb://rel/file.duckdb`` or a plain path → DuckDB.

    Any other scheme raises ``UnsupportedStoreError`` naming the supported ones.
    """
    text = os.fspath(url)
    match = _SCHEME_RE.match(text)
    if match is None:
        return StoreURL("duckdb", text)
    scheme = match.group(1).lower()
    if scheme not in SCHEMES:
        raise UnsupportedStoreError(
            f"unsupported store URL scheme {scheme!r} in {text!r}; supported: {_supported()}, "
            "or a plain file path for duckdb"
        )
    rest = text[match.end() :]
    location = rest[2:] if rest.startswith("//") else rest
    if not location:
        raise UnsupportedStoreError(f"store URL {text!r} names no file; e.g. {SCHEMES[scheme]}")
    return StoreURL(scheme, location)


def open_store(
    url: str | os.PathLike[str], *, read_only: bool = False, create: bool = True
) -> Store:
    """Open the store named by ``url`` (see ``parse_store_url``).

    ``read_only`` opens an existing store for queries. A store that does not exist is created,
    unless ``read_only`` or not ``create``: then ``StoreNotFoundError``.
    """
    parsed = parse_store_url(url)
    if (read_only or not create) and not parsed.path.exists():
        raise StoreNotFoundError(f"no store at {parsed.location}")
    from censorwatch.store.duckdb_store import DuckDBStore

    return DuckDBStore(parsed.path, read_only=read_only)
