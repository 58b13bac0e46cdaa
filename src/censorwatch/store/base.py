"""The storage contract every backend honours: typed rows in, filtered rows and aggregates out.

The collector, the ingester, the events stage and the API speak only to :class:`Store`, so a
backend (DuckDB now, a column store such as ClickHouse at scale) can be added without touching
them. The contract asks nothing a column store lacks: no multi-statement transactions, no
``ON CONFLICT``, no enforced ``PRIMARY KEY`` (docs/collector.md, "The Store interface").
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Literal

import msgspec

from censorwatch.model import Event
from censorwatch.times import rfc3339

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
    "workarounds",
    "locate",
)
#: Columns the API and export publish (the archive pointers stay internal).
PUBLIC_COLUMNS: tuple[str, ...] = tuple(
    c for c in COLUMNS if c not in ("archive_segment", "archive_offset")
)

#: Axes ``aggregate`` can group by (the OONI aggregation API's names; ``blocking_type`` is
#: OONI's name for the axis our ``method`` column answers).
AXES: tuple[str, ...] = (
    "measurement_start_day",
    "probe_cc",
    "probe_asn",
    "domain",
    "input",
    "method",
    "blocking_type",
    "test_name",
)
TIME_GRAINS: tuple[str, ...] = ("hour", "day", "week", "month", "year")
#: Columns ``rows`` can order by (OONI's ``order_by`` values that the table holds); ties are
#: broken by ``measurement_start_time`` then ``measurement_uid``, so paging is stable.
ORDER_COLUMNS: tuple[str, ...] = (
    "measurement_start_time",
    "input",
    "probe_cc",
    "probe_asn",
    "test_name",
)
VERDICTS: tuple[str, ...] = ("ok", "blocked", "down", "unknown")
SIGNATURE_STATES: tuple[str, ...] = ("verified", "unverified", "invalid")
EXPORT_FORMATS: tuple[str, ...] = ("csv", "parquet")

Axis = Literal[
    "measurement_start_day",
    "probe_cc",
    "probe_asn",
    "domain",
    "input",
    "method",
    "blocking_type",
    "test_name",
]
Grain = Literal["hour", "day", "week", "month", "year"]

_json_encode = msgspec.json.Encoder().encode


def axis_expression(axis: str, time_grain: str, truncate: Callable[[str], str]) -> str:
    """The SQL an aggregation axis groups by, checked against ``AXES`` and ``TIME_GRAINS``;
    ``truncate(grain)`` is the backend's spelling of ``measurement_start_time`` cut to it."""
    if axis not in AXES:
        raise ValueError(f"unknown axis {axis!r}; expected one of {', '.join(AXES)}")
    if axis == "measurement_start_day":
        if time_grain not in TIME_GRAINS:
            raise ValueError(f"unknown time_grain {time_grain!r}")
        return truncate(time_grain)
    if axis == "blocking_type":
        return "method"
    return axis


def _text(value: Any) -> str:
    return value if isinstance(value, str) else _json_encode(value).decode()


def _decode_evidence(text: str | bytes) -> list[str]:
    """Evidence lines from JSON text; a value that is not a string is kept as its JSON."""
    value = msgspec.json.decode(text)
    return [_text(v) for v in value] if isinstance(value, list) else [_text(value)]


def _decode_layers(text: str | bytes) -> dict[str, str | None]:
    """Layer states from JSON text; a state that is not a string is kept as its JSON."""
    value = msgspec.json.decode(text)
    if not isinstance(value, dict):
        return {}
    return {str(k): v if v is None else _text(v) for k, v in value.items()}


def _decode_workarounds(text: str | bytes) -> dict[str, dict[str, str]] | None:
    """A circumvention summary from JSON text (empty text: none); each technique's fields
    kept as text, whatever the JSON held."""
    if not text:
        return None
    value = msgspec.json.decode(text)
    if not isinstance(value, dict):
        return None
    return {
        str(technique): {str(k): _text(v) for k, v in result.items()}
        for technique, result in value.items()
        if isinstance(result, dict)
    }


def _decode_locate(text: str | bytes) -> dict[str, Any] | None:
    """Where the censor sits (the verdict's ``locate``) from JSON text (empty text: none)."""
    if not text:
        return None
    value = msgspec.json.decode(text)
    return value if isinstance(value, dict) else None


#: Columns kept as JSON text by a backend that has no nested types.
JSON_COLUMNS = frozenset({"evidence", "layers", "workarounds", "locate"})


class ArchiveLocation(msgspec.Struct, frozen=True):
    """Where a measurement's raw bytes live: a segment file and the offset of its block.

    Locations order as the archive does (segment names sort, offsets grow), so the greatest
    location a backend has recorded is its checkpoint.
    """

    segment: str
    offset: int


class MeasurementRow(msgspec.Struct):
    """One stored measurement: the facts it is filed under, its verdict, where its bytes live.

    Every value is typed; ``evidence`` and ``layers`` are a list and a mapping, never JSON text
    (a backend chooses how to keep them; DuckDB keeps JSON text). Their JSON text is accepted
    on construction too, as a backend or a CSV export gives them back. ``workarounds`` is the
    verdict's circumvention summary (docs/verdicts.md), None for a measurement without one;
    ``locate`` where the censor sits (the verdict's ``locate``), None without a localization;
    both last, so that rows built before they existed still build.
    """

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
    evidence: list[str]
    layers: dict[str, str | None]
    signature: str
    source: str  # "collector" | "ooni"
    archive_segment: str
    archive_offset: int
    workarounds: dict[str, dict[str, str]] | None = None
    locate: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.evidence, str | bytes):
            self.evidence = _decode_evidence(self.evidence)
        if isinstance(self.layers, str | bytes):
            self.layers = _decode_layers(self.layers)
        if isinstance(self.workarounds, str | bytes):
            self.workarounds = _decode_workarounds(self.workarounds)
        if isinstance(self.locate, str | bytes):
            self.locate = _decode_locate(self.locate)

    @property
    def location(self) -> ArchiveLocation:
        return ArchiveLocation(self.archive_segment, self.archive_offset)

    def as_tuple(self) -> tuple[Any, ...]:
        """The values in ``COLUMNS`` order, the ``JSON_COLUMNS`` as JSON text (``workarounds``
        and ``locate`` None when there is none)."""
        return tuple(
            _json_encode(v).decode() if name in JSON_COLUMNS and v is not None else v
            for name, v in zip(COLUMNS, msgspec.structs.astuple(self), strict=True)
        )

    def public(self) -> dict[str, Any]:
        """The published columns as a mapping (the JSON columns as JSON text), the shape
        ``export`` writes and the explorer's templates read."""
        values = dict(zip(COLUMNS, self.as_tuple(), strict=True))
        return {name: values[name] for name in PUBLIC_COLUMNS}

    def verdict_record(self) -> dict[str, Any]:
        """The stable verdict record (``censorwatch.model.Verdict.to_record``)."""
        return {
            "measurement_uid": self.measurement_uid,
            "report_id": self.report_id,
            "input": self.input,
            "target": self.target,
            "probe_cc": self.probe_cc,
            "probe_asn": self.probe_asn,
            "measurement_start_time": rfc3339(self.measurement_start_time),
            "verdict": self.verdict,
            "method": self.method,
            "confidence": self.confidence,
            "confirmed": self.confirmed,
            "fingerprint": self.fingerprint,
            "evidence": list(self.evidence),
            "layers": dict(self.layers),
            # Only when there is one, as ``Verdict.to_record`` leaves it out.
            **({"workarounds": self.workarounds} if self.workarounds else {}),
            **({"locate": self.locate} if self.locate else {}),
        }


@dataclass(frozen=True, slots=True)
class EventFilters:
    """Which stored events to return (``GET /api/v1/events``'s filters, checked by the caller).

    ``since`` and ``until`` are canonical RFC 3339 times (``times.canonical_time``), so string
    order is time order: ``since`` keeps events still active at or after it (ongoing, or whose
    ``end.before`` is not earlier), ``until`` events whose ``onset.before`` is earlier.
    """

    cc: str | None = None
    asn: str | None = None  # "AS1234": one of the event's networks
    target: str | None = None
    scope: str | None = None  # "network" | "national"
    status: str | None = None  # "ongoing" | "ended"
    since: str | None = None
    until: str | None = None


#: What people say went wrong when they report a target (``POST /api/v1/reports``): a fixed
#: vocabulary in plain words, so that counts add up and nothing free-form is required.
REPORT_FAILURES: tuple[str, ...] = (
    "does not load",
    "loads a warning page",
    "very slow",
    "app does not connect",
    "other",
)


class PeopleReport(msgspec.Struct, frozen=True):
    """One person's report that a target fails from their network, as stored: the country
    and network the collector looked up from the connection (the address itself is never
    kept), the target, the failure word, the optional note and the hour it arrived in."""

    hour: datetime  # naive UTC, rounded down to the hour
    probe_cc: str
    probe_asn: str  # "AS1234"
    target: str  # a platform name ("x") or a URL
    failure: str  # one of REPORT_FAILURES
    note: str | None = None


class ReportCount(msgspec.Struct, frozen=True):
    """How many reports one (country, network, target) had in one hour."""

    probe_cc: str
    probe_asn: str
    target: str
    hour: datetime  # naive UTC
    reports: int


@dataclass(frozen=True, slots=True)
class ReportFilters:
    """Which people's reports to read; a tuple holds values any of which matches."""

    probe_cc: str | tuple[str, ...] | None = None
    probe_asn: str | tuple[str, ...] | None = None
    target: str | tuple[str, ...] | None = None
    since: datetime | None = None  # inclusive, on the report's hour (naive UTC)
    until: datetime | None = None  # exclusive


@dataclass(slots=True)
class Filters:
    """The filters shared by the measurements API, aggregation and export.

    ``probe_cc``, ``probe_asn``, ``domain`` and ``test_name`` hold one value, or a tuple of
    values any of which matches (OONI's comma-separated lists, read only for the API).
    """

    report_id: str | None = None
    probe_cc: str | tuple[str, ...] | None = None
    probe_asn: str | tuple[str, ...] | None = None  # "AS1234"
    input: str | None = None
    domain: str | tuple[str, ...] | None = None
    test_name: str | tuple[str, ...] | None = None
    since: datetime | None = None  # inclusive, naive UTC
    until: datetime | None = None  # exclusive, naive UTC
    verdict: str | None = None
    method: str | None = None
    confirmed: bool | None = None
    signature: str | None = None
    anomaly: bool | None = None  # OONI's flag: verdict "blocked" (or not)
    failure: bool | None = None  # OONI's flag: verdict "unknown" (or not)

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))


class Store(ABC):
    """What the collector, the ingester, the events stage and the API need from storage.

    A backend implements the abstract methods; the rest are written once here on top of them.
    Rules every backend keeps (docs/collector.md):

    * **One row per UID, without transactions.** ``add`` never leaves two rows of one UID
      visible to the reads. A backend may check and insert in one statement (DuckDB), or
      accept duplicates and collapse them by ``measurement_uid`` in the engine or on read
      (ClickHouse's ``ReplacingMergeTree``). The pipeline also asks ``existing`` first.
    * **The checkpoint is a lower bound.** It may be written after the rows, in its own step:
      a crash between the two only makes the pipeline replay rows it then finds ``existing``.
    * **Typed rows.** ``MeasurementRow`` in and out; times naive UTC.
    """

    # -- writing ---------------------------------------------------------------------------
    @abstractmethod
    def add(
        self, rows: Sequence[MeasurementRow], checkpoint: ArchiveLocation | None = None
    ) -> list[str]:
        """Store rows whose UID is not yet stored, then record ``checkpoint`` if given.

        Returns the UIDs that were new. Not atomic across the two steps (see the class).
        """

    @abstractmethod
    def mark_ingested(
        self, source_key: str, size: int, measurements: int, errors: str | None = None
    ) -> None:
        """Remember an ingested source file (idempotent): done, or done with ``errors`` (why it
        was not read to its end). A file done with errors is recorded again by a retry; a done
        file stays done."""

    # -- reading ---------------------------------------------------------------------------
    @abstractmethod
    def checkpoint(self) -> ArchiveLocation | None:
        """The archive position up to which this store is known to be complete."""

    @abstractmethod
    def existing(self, uids: Sequence[str]) -> set[str]:
        """The subset of ``uids`` already stored."""

    @abstractmethod
    def row(self, measurement_uid: str) -> MeasurementRow | None:
        """One stored row, or None."""

    @abstractmethod
    def rows(
        self,
        filters: Filters,
        *,
        limit: int,
        offset: int,
        order: str = "desc",
        order_by: str = "measurement_start_time",
    ) -> list[MeasurementRow]:
        """A page of matching rows by ``order_by`` (``ORDER_COLUMNS``; ``probe_asn`` by its
        number), then ``measurement_start_time``, then UID, all ``asc`` or ``desc``."""

    @abstractmethod
    def scan(self, filters: Filters) -> Iterator[MeasurementRow]:
        """Every matching row, oldest first (ties by UID), streamed."""

    @abstractmethod
    def count(self, filters: Filters | None = None) -> int: ...

    @abstractmethod
    def aggregate(
        self,
        filters: Filters,
        axis_x: str | None,
        axis_y: str | None,
        time_grain: str = "day",
    ) -> list[dict[str, Any]]:
        """One bucket per value of the axes (``AXES``): ``measurement_count``, one
        ``<verdict>_count`` per verdict, OONI's ``anomaly_count`` (blocked, not confirmed),
        ``confirmed_count``, ``failure_count`` (verdict unknown) and ``method_counts``; a day
        axis as ``YYYY-MM-DD`` (RFC 3339 for hours)."""

    @abstractmethod
    def export(self, path: str, fmt: str, filters: Filters) -> int:
        """Write the matching rows' ``PUBLIC_COLUMNS`` to ``path`` as CSV or Parquet."""

    @abstractmethod
    def ingested(self, source_key: str) -> bool:
        """Whether the source file is recorded, done or done with errors."""

    @abstractmethod
    def ingest_errors(self, source_key: str) -> str | None:
        """Why a file recorded as done with errors was not read to its end; None otherwise."""

    @abstractmethod
    def add_aliases(self, aliases: Mapping[str, str]) -> None:
        """Remember that a stored measurement also goes by another name (``{alias: uid}``;
        an alias already known keeps its first UID). Ingest names a measurement by its
        content this way, so the same one read from two of OONI's layouts is stored once."""

    @abstractmethod
    def aliased(self, aliases: Sequence[str]) -> dict[str, str]:
        """The UID each known alias of ``aliases`` stands for."""

    @abstractmethod
    def close(self) -> None: ...

    # -- stored events -------------------------------------------------------------------------
    # The events stage keeps its detector state and the events it found here, so that reads
    # never re-detect over history. Two parts, neither needing a transaction:
    #
    # * an events table keyed by ``event_id`` with a version column: ``save_events`` appends a
    #   row per changed event (or a tombstone per removed one) with a version greater than any
    #   before; a read takes each id's newest row and drops tombstones (ClickHouse:
    #   ``ReplacingMergeTree(version)`` plus ``argMax``, or ``FINAL``);
    # * the detector's state, one opaque blob per save, newest save wins on read.
    #
    # One process writes events for a store at a time (the collector, or ``events rebuild``).
    # The writer saves events before the state, and the state records the archive position it
    # has taken (inside the blob): after a crash between the two, the writer replays rows from
    # that position (``scan_from``) and saves again, and the events converge.

    @abstractmethod
    def save_events(self, changed: Sequence[Event], removed: Sequence[str]) -> None:
        """Store a new version of each event of ``changed`` (replacing the row of its
        ``event_id`` for every later read) and a tombstone for each id of ``removed``."""

    @abstractmethod
    def save_event_state(self, state: bytes) -> None:
        """Store the detector's state (opaque bytes, up to hundreds of MB); ``load_event_state``
        returns the newest one saved. A backend may drop older ones."""

    @abstractmethod
    def load_event_state(self) -> bytes | None:
        """The newest saved detector state, or None when events were never built here (a store
        from before stored events, or filled by an ingest that did not build them)."""

    @abstractmethod
    def has_event_state(self) -> bool:
        """Whether a detector state is saved (cheap: reads no blob). A store opened read-only
        that predates the events tables answers False, it does not fail."""

    @abstractmethod
    def stored_events(self, query: EventFilters | None = None) -> list[Event]:
        """The newest version of each stored event matching ``query``, without tombstones:
        national events first, then network ones, each by ``onset.before``, ``cc``, ``asns``,
        ``target`` (the order ``EventTracker.events`` gives). Empty when none are stored."""

    @abstractmethod
    def scan_from(self, location: ArchiveLocation) -> Iterator[MeasurementRow]:
        """Every row whose archive location (segment, then offset) is at or past ``location``,
        streamed in archive order: what was committed after the events writer last saved."""

    # -- people's reports ---------------------------------------------------------------------
    # Kept apart from the measurements (their own table): they never change a verdict. Rows
    # are only appended; reads return them in an order that does not reveal arrival.

    @abstractmethod
    def add_people_reports(self, reports: Sequence[PeopleReport]) -> None:
        """Append people's reports."""

    @abstractmethod
    def people_report_counts(self, query: ReportFilters | None = None) -> list[ReportCount]:
        """Reports per (country, network, target, hour), by hour, country, network, target.
        Empty for a store opened read-only that predates the table."""

    @abstractmethod
    def people_reports(
        self, query: ReportFilters | None = None, *, limit: int = 100
    ) -> list[PeopleReport]:
        """Matching reports, newest hour first; within an hour by target, failure and note
        (never by arrival)."""

    # -- written once, on top of the above --------------------------------------------------
    def location(self, measurement_uid: str) -> ArchiveLocation | None:
        found = self.row(measurement_uid)
        return found.location if found is not None else None

    def get(self, measurement_uid: str) -> dict[str, Any] | None:
        """One stored row as its published mapping (``MeasurementRow.public``), or None."""
        found = self.row(measurement_uid)
        return found.public() if found is not None else None

    def query(
        self, filters: Filters, *, limit: int, offset: int, order: str = "desc"
    ) -> list[dict[str, Any]]:
        """``rows`` as published mappings."""
        return [r.public() for r in self.rows(filters, limit=limit, offset=offset, order=order)]

    def iter_verdicts(self, **filters: Any) -> Iterator[dict[str, Any]]:
        """Verdict records ordered by measurement_start_time (``Filters`` fields as keywords)."""
        for found in self.scan(Filters(**filters)):
            yield found.verdict_record()

    def uids(self) -> list[str]:
        """Every stored UID (as many times as the reads see it: once)."""
        return [r.measurement_uid for r in self.scan(Filters())]

    def optimize(self) -> int:
        """Reorganise storage for faster filtered reads, if the backend can; returns the count."""
        return self.count()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
