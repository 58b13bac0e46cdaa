"""Fetching current free IP databases (``censorwatch geo sync``), bounded in time and bytes.

A downloaded file replaces the one in place only once it opens as a MaxMind-format database
and holds the records its source promises (``geo.open_mmdb``), and it is written atomically; so
a failed or hostile source leaves the old file. Reading the files is ``censorwatch.geo``'s job.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from censorwatch.download import Budget, DownloadError, NotPublished, fetch
from censorwatch.durable import write_atomic
from censorwatch.geo import ASN_FIELD, COUNTRY_FIELD, GeoDatabaseError, date_in_name, open_mmdb
from censorwatch.times import utcnow


@dataclass(frozen=True)
class Source:
    """A database to fetch: its URL and file name (``{month}`` = ``YYYY-MM``, ``{day}`` =
    ``YYYYMM01``, both of the current month), and the facts its records must carry."""

    url: str
    name: str
    expect: frozenset[str] = frozenset()

    def for_month(self, first: date) -> tuple[str, str]:
        values = {"month": first.strftime("%Y-%m"), "day": first.strftime("%Y%m01")}
        return self.url.format(**values), self.name.format(**values)

    @property
    def monthly(self) -> bool:
        return "{" in self.url


#: The free databases ``geo sync`` fetches when given no ``--source``: DB-IP Lite (monthly,
#: CC BY 4.0) and OONI's own ip2country_as (monthly, built from DB-IP and CAIDA prefix2as).
DEFAULT_SOURCES: tuple[Source, ...] = (
    Source(
        "https://download.db-ip.com/free/dbip-asn-lite-{month}.mmdb.gz",
        "dbip-asn-lite-{month}.mmdb",
        frozenset({ASN_FIELD}),
    ),
    Source(
        "https://download.db-ip.com/free/dbip-country-lite-{month}.mmdb.gz",
        "dbip-country-lite-{month}.mmdb",
        frozenset({COUNTRY_FIELD}),
    ),
    Source(
        "https://archive.org/download/ip2country-as/{day}-ip2country_as.mmdb.gz",
        "{day}-ip2country_as.mmdb",
        frozenset({ASN_FIELD, COUNTRY_FIELD}),
    ),
)

#: Bounds of one download: bytes on the wire, bytes once decompressed (the real files are
#: tens of MiB; a gzip bomb is refused as soon as it passes the limit), seconds in all.
MAX_DOWNLOAD_BYTES = 256 * 1024 * 1024
MAX_DATABASE_BYTES = 1024 * 1024 * 1024
DOWNLOAD_SECONDS = 600.0


class GeoSyncError(Exception):
    """A database that could not be fetched or was refused; nothing was replaced."""


@dataclass(frozen=True)
class SyncResult:
    path: Path
    status: str  # "written", "unchanged", "present"
    url: str
    database_type: str = ""


def default_geo_dir() -> Path:
    """Where ``geo sync`` writes when told nothing: ``$XDG_DATA_HOME/censorwatch/geoip``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "censorwatch" / "geoip"


def source_from_url(url: str) -> Source:
    """A ``--source`` URL: its file name is the URL's last segment without ``.gz``."""
    name = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    name = name.removesuffix(".gz").removesuffix(".GZ")
    if not name.lower().endswith(".mmdb"):
        raise GeoSyncError(f"{url}: the URL must name a .mmdb or .mmdb.gz file")
    return Source(url, name)


def sync_databases(
    directory: str | os.PathLike[str] | None = None,
    sources: Sequence[Source] | None = None,
    *,
    timeout: float = 30.0,
    deadline_seconds: float = DOWNLOAD_SECONDS,
    max_download: int = MAX_DOWNLOAD_BYTES,
    max_database: int = MAX_DATABASE_BYTES,
    today: date | None = None,
) -> list[SyncResult | GeoSyncError]:
    """Fetch each source into ``directory``; one result (or error) per source, in order.

    A monthly source is tried for this month, then for last month (the new month's file is
    often published late). A dated file already present and valid is not fetched again; an
    undated one is fetched and replaced only when it changed. Every file is checked
    (:func:`open_mmdb`) before it is written, atomically, so a failed source leaves the
    previous file as it was.
    """
    import httpx

    target = Path(directory) if directory else default_geo_dir()
    month = (today or utcnow().date()).replace(day=1)
    months = (month, (month - timedelta(days=1)).replace(day=1))
    results: list[SyncResult | GeoSyncError] = []
    limits = httpx.Timeout(timeout, connect=min(timeout, 10.0))
    with httpx.Client(timeout=limits, follow_redirects=True, max_redirects=5) as client:
        for source in sources or DEFAULT_SOURCES:
            try:
                results.append(
                    _sync_one(
                        client,
                        source,
                        months if source.monthly else months[:1],
                        target,
                        deadline_seconds,
                        max_download,
                        max_database,
                    )
                )
            except GeoSyncError as exc:
                results.append(exc)
    return results


def _sync_one(
    client: Any,
    source: Source,
    months: Sequence[date],
    target: Path,
    deadline_seconds: float,
    max_download: int,
    max_database: int,
) -> SyncResult:
    last_missing: GeoSyncError | None = None
    for first in months:
        url, name = source.for_month(first)
        path = target / name
        dated = date_in_name(name) is not None
        if dated and path.is_file():
            try:
                present = open_mmdb(path, expect=source.expect)
            except GeoDatabaseError:
                pass  # a broken copy: fetch it again
            else:
                present.reader.close()
                return SyncResult(path, "present", url, present.database_type)
        try:
            body = _download(client, url, deadline_seconds, max_download)
        except _NotFound as exc:
            last_missing = GeoSyncError(str(exc))
            continue
        data = _gunzip(body, url, max_database) if body[:2] == b"\x1f\x8b" else body
        try:
            checked = open_mmdb(data, name=name, expect=source.expect)
        except GeoDatabaseError as exc:
            raise GeoSyncError(f"{url}: refused, nothing replaced: {exc}") from None
        checked.reader.close()
        if path.is_file() and _sha256_file(path) == hashlib.sha256(data).hexdigest():
            return SyncResult(path, "unchanged", url, checked.database_type)
        write_atomic(path, data)
        return SyncResult(path, "written", url, checked.database_type)
    assert last_missing is not None
    raise last_missing


class _NotFound(GeoSyncError):
    pass


def _download(client: Any, url: str, deadline_seconds: float, max_bytes: int) -> bytes:
    try:
        return fetch(client, url, Budget.starting_now(max_bytes, deadline_seconds), raw=True)
    except NotPublished as exc:
        raise _NotFound(str(exc)) from None
    except DownloadError as exc:
        raise GeoSyncError(str(exc)) from None


def _gunzip(body: bytes, url: str, max_bytes: int) -> bytes:
    """The decompressed body, refused as soon as it grows past ``max_bytes`` (a gzip bomb
    expands a thousandfold: it is never held whole)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # a gzip member, header checked
    out, size, pending = [], 0, body
    try:
        while not inflater.eof:
            piece = inflater.decompress(pending, 1024 * 1024)
            pending = inflater.unconsumed_tail
            if not piece and not pending:
                raise GeoSyncError(f"{url}: refused: the gzip stream is truncated")
            size += len(piece)
            if size > max_bytes:
                raise GeoSyncError(
                    f"{url}: refused: decompresses to more than {max_bytes} bytes (gzip bomb?)"
                )
            out.append(piece)
    except zlib.error as exc:
        raise GeoSyncError(f"{url}: refused: not valid gzip ({exc})") from None
    return b"".join(out)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()
