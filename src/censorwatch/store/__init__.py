"""Storage: one interface (``Store``), backends chosen by URL; see docs/collector.md.

``open_store(url)`` is the only way in: callers never import a backend module.
``duckdb:///path/file.duckdb`` (or a plain path) is the embedded DuckDB backend;
``clickhouse://[USER[:PASSWORD]@]HOST[:8123]/DATABASE`` a ClickHouse server (HTTP interface).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from censorwatch.store.base import ArchiveLocation, Filters, MeasurementRow, Store
from censorwatch.store.errors import (
    StoreNotFoundError,
    StoreUnavailableError,
    UnsupportedStoreError,
)

__all__ = [
    "SCHEMES",
    "ArchiveLocation",
    "Filters",
    "MeasurementRow",
    "Store",
    "StoreNotFoundError",
    "StoreURL",
    "StoreUnavailableError",
    "UnsupportedStoreError",
    "open_store",
    "parse_store_url",
]

#: The URL schemes ``open_store`` understands, with an example of each.
SCHEMES: dict[str, str] = {
    "duckdb": "duckdb:///path/file.duckdb",
    "clickhouse": "clickhouse://127.0.0.1:8123/censorwatch",
}
#: ClickHouse's HTTP port, when a ``clickhouse://`` URL names none.
CLICKHOUSE_HTTP_PORT = 8123
# A scheme of two letters or more followed by "/" ("duckdb:///x", or "duckdb:/x" once a
# command-line Path has folded the slashes); a drive letter or a plain name is a path.
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):(?=/)")


@dataclass(frozen=True, slots=True)
class StoreURL:
    """A parsed store URL: the backend's scheme and where its data is."""

    scheme: str
    location: str

    @property
    def path(self) -> Path:
        """The file of a file-based backend (DuckDB)."""
        return Path(self.location)

    @property
    def is_file(self) -> bool:
        """Whether the store is one local file (DuckDB), not a server."""
        return self.scheme == "duckdb"


def _supported() -> str:
    return ", ".join(f"{scheme} ({example})" for scheme, example in SCHEMES.items())


def parse_store_url(url: str | os.PathLike[str]) -> StoreURL:
    """``duckdb:///abs/file.duckdb``, ``duckdb://rel/file.duckdb`` or a plain path → DuckDB;
    ``clickhouse://HOST:PORT/DATABASE`` → ClickHouse (``location`` is ``HOST:PORT/DATABASE``).

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
    if parsed.scheme == "clickhouse":
        return _open_clickhouse(parsed, read_only=read_only, create=create)
    if (read_only or not create) and not parsed.path.exists():
        raise StoreNotFoundError(f"no store at {parsed.location}")
    from censorwatch.store.duckdb_store import DuckDBStore

    return DuckDBStore(parsed.path, read_only=read_only)


def _open_clickhouse(parsed: StoreURL, *, read_only: bool, create: bool) -> Store:
    """``HOST[:PORT]/DATABASE`` (with ``USER[:PASSWORD]@`` if the server wants them)."""
    from censorwatch.store.clickhouse_schema import check_database_name
    from censorwatch.store.clickhouse_store import ClickHouseStore
    from censorwatch.store.clickhouse_transport import HTTPTransport

    example = SCHEMES["clickhouse"]
    try:
        # lstrip: a command-line Path folds "clickhouse://h/db" into "clickhouse:/h/db".
        parts = urlsplit(f"//{parsed.location.lstrip('/')}")
        host, port = parts.hostname, parts.port or CLICKHOUSE_HTTP_PORT
    except ValueError as exc:
        raise UnsupportedStoreError(f"bad ClickHouse URL ({exc}); e.g. {example}") from None
    database = parts.path.strip("/")
    if not host or not database or "/" in database:
        raise UnsupportedStoreError(
            f"a ClickHouse URL names a server and a database, e.g. {example}"
        )
    check_database_name(database)  # before any traffic
    netloc = f"[{host}]" if ":" in host else host
    public = f"clickhouse://{netloc}:{port}/{database}"  # without the password
    transport = HTTPTransport(
        f"http://{netloc}:{port}/",
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )
    try:
        return ClickHouseStore(transport, database, url=public, read_only=read_only, create=create)
    except BaseException:
        transport.close()
        raise
