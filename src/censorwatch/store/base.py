"""The storage contract every backend honours: rows in, filtered rows and aggregates out.

The collector, the ingester and the API speak only to this interface, so a backend (DuckDB
now, ClickHouse at scale) can be swapped without touching them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Literal, Protocol

#: Columns of the ``measurements`` table, in table order (docs/collector.md documents each).
COLUMNS: tuple[str, ...] = (
    "measurement_uid",
    "report_id",
    "test_name",
    "probe_cc",
    "probe_asn",
    "input",
    "domain",
    "target",
    "measurement_start_time",
    "received_at",
    "verdict",
    "method",
    "confidence",
    "confirmed",
    "fingerprint",
    "evidence",
    "layers",
    "signature",
    "source",
    "archive_segment",
    "archive_offset",
)

#: Axes ``aggregate`` can group by (the OONI aggregation API's names).
AXES: tuple[str, ...] = (
    "measurement_start_day",
    "probe_cc",
    "probe_asn",
    "domain",
    "method",
    "test_name",
)
TIME_GRAINS: tuple[str, ...] = ("hour", "day", "week", "month")
VERDICTS: tuple[str, ...] = ("ok", "blocked", "down", "unknown")
SIGNATURE_STATES: tuple[str, ...] = ("verified", "unverified", "invalid")

Axis = Literal["measurement_start_day", "probe_cc", "probe_asn", "domain", "method", "test_name"]
Grain = Literal["hour", "day", "week", "month"]


@dataclass(slots=True)
class MeasurementRow:
    """One stored measurement: where it came from, where its raw bytes live, and its verdict."""

    measurement_uid: str
    report_id: str
    test_name: str
    probe_cc: str
    probe_asn: str
    input: str | None
    domain: str | None
    target: str | None
    measurement_start_time: datetime  # naive UTC
    received_at: datetime  # naive UTC
    verdict: str
    method: str | None
    confidence: float
    confirmed: bool
    fingerprint: str | None
    evidence: str  # JSON array
    layers: str  # JSON object
    signature: str
    source: str  # "collector" | "ooni"
    archive_segment: str
    archive_offset: int

    def as_tuple(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))


@dataclass(slots=True)
class Filters:
    """The filters shared by the measurements API, aggregation and export."""

    report_id: str | None = None
    probe_cc: str | None = None
    probe_asn: str | None = None  # "AS1234"
    input: str | None = None
    domain: str | None = None
    test_name: str | None = None
    since: datetime | None = None  # inclusive, naive UTC
    until: datetime | None = None  # exclusive, naive UTC
    verdict: str | None = None
    method: str | None = None
    confirmed: bool | None = None
    signature: str | None = None

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))


@dataclass(frozen=True, slots=True)
class ArchiveLocation:
    """Where a measurement's raw bytes live: a segment file and the offset of its block."""

    segment: str
    offset: int


class Store(Protocol):
    """What the collector, the ingester, the events stage and the API need from storage."""

    def add(
        self, rows: Sequence[MeasurementRow], checkpoint: ArchiveLocation | None = None
    ) -> list[str]:
        """Insert rows and move the checkpoint, atomically; existing UIDs are left alone.

        Returns the UIDs that were new.
        """
        ...

    def existing(self, uids: Sequence[str]) -> set[str]:
        """The subset of ``uids`` already stored."""
        ...

    def location(self, measurement_uid: str) -> ArchiveLocation | None: ...

    def get(self, measurement_uid: str) -> dict[str, Any] | None:
        """One stored row (measurement fields and its verdict), or None."""
        ...

    def query(
        self, filters: Filters, *, limit: int, offset: int, order: str = "desc"
    ) -> list[dict[str, Any]]: ...

    def count(self, filters: Filters | None = None) -> int: ...

    def aggregate(
        self,
        filters: Filters,
        axis_x: str | None,
        axis_y: str | None,
        time_grain: str = "day",
    ) -> list[dict[str, Any]]: ...

    def iter_verdicts(self, **filters: Any) -> Iterator[dict[str, Any]]:
        """Verdict records (issue-3 shape) ordered by measurement_start_time."""
        ...

    def export(self, path: str, fmt: str, filters: Filters) -> int: ...

    def checkpoint(self) -> ArchiveLocation | None:
        """The archive position up to which this database is known to be complete."""
        ...

    def ingested(self, source_key: str) -> bool: ...

    def mark_ingested(self, source_key: str, size: int, measurements: int) -> None: ...

    def close(self) -> None: ...
