"""Every ``Store`` method, identically on every backend: the same rows in, the same answers out.

Backends: DuckDB (the reference), ClickHouse 18.16 over HTTP (Debian's server, started by
tests/clickhouse_server.py) and today's ClickHouse engine in-process (``chdb``), so the
ClickHouse SQL is held to both the oldest and the newest engine. Answers are checked against
a plain-Python recomputation from the rows, and the aggregations and exports against the
DuckDB backend's own.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from censorwatch.model import METHODS, Bracket, Event
from censorwatch.store import StoreNotFoundError, open_store
from censorwatch.store.base import (
    AXES,
    ORDER_COLUMNS,
    SIGNATURE_STATES,
    TIME_GRAINS,
    VERDICTS,
    ArchiveLocation,
    EventFilters,
    Filters,
    MeasurementRow,
    Store,
)

BACKENDS = [
    "duckdb",
    pytest.param("clickhouse", marks=pytest.mark.slow),
    pytest.param("chdb", marks=pytest.mark.slow),
]
_CHDB_NAMES = itertools.count(1)


class _SharedTransport:
    """The session's one chdb engine, left open when a store closes (chdb keeps one engine
    per process)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def execute(self, sql: str, data: bytes | None = None) -> bytes:
        return self.inner.execute(sql, data)

    def describe(self) -> str:
        return self.inner.describe()

    def close(self) -> None:
        pass


@pytest.fixture(scope="session")
def chdb_transport(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    pytest.importorskip("chdb")
    from censorwatch.store.clickhouse_transport import ChdbTransport

    transport = ChdbTransport(str(tmp_path_factory.mktemp("chdb")))
    try:
        yield transport
    finally:
        transport.close()


@dataclass
class Backend:
    name: str
    open: Callable[..., Store]  # open(read_only=False, create=True)
    # ClickHouse: open(migrations, read_only=False), the store at a given schema version
    open_at: Callable[..., Store] | None = None


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    from censorwatch.store.clickhouse_store import ClickHouseStore

    if request.param == "duckdb":
        path = tmp_path / "cw.duckdb"
        return Backend("duckdb", lambda **kw: open_store(path, **kw))
    if request.param == "clickhouse":
        from censorwatch.store.clickhouse_transport import HTTPTransport

        url = request.getfixturevalue("clickhouse_url")
        server, database = url.removeprefix("clickhouse://").split("/")

        def at_version(migrations: Any, **kw: Any) -> Store:
            transport = HTTPTransport(f"http://{server}/")
            return ClickHouseStore(transport, database, migrations=migrations, **kw)

        return Backend("clickhouse", lambda **kw: open_store(url, **kw), at_version)
    shared = _SharedTransport(request.getfixturevalue("chdb_transport"))
    database = f"contract_{next(_CHDB_NAMES)}"
    return Backend(
        "chdb",
        lambda **kw: ClickHouseStore(shared, database, **kw),
        lambda migrations, **kw: ClickHouseStore(shared, database, migrations=migrations, **kw),
    )


def make_rows() -> list[MeasurementRow]:
    """Rows that reach every corner: months and a year boundary, ties in time, microseconds,
    NULLs, quotes, backslashes, newlines and non-ASCII text, 64-bit offsets."""
    rows = []
    ccs = ["PK", "IR", "CN"]
    asns = ["AS17557", "AS9541", "AS45595", "AS38193"]
    start = datetime(2023, 12, 30, 22, 15)
    for i in range(60):
        when = start + timedelta(hours=7 * (i // 2))  # pairs share a time: UID breaks the tie
        if i % 7 == 3:
            when = when.replace(microsecond=250_000 + i)
        verdict = VERDICTS[i % 4]
        rows.append(
            MeasurementRow(
                measurement_uid=f"2024T{i * 37 % 61:02d}_{ccs[i % 3]}_{i:03d}",
                report_id=f"report-{i % 5}",
                test_name="web_connectivity" if i % 6 else "signal",
                probe_cc=ccs[i % 3],
                probe_asn=asns[i % 4],
                input=None if i % 9 == 0 else f"https://{['x.com', 'twitter.com'][i % 2]}/{i}",
                domain=None if i % 11 == 0 else ["x.com", "twitter.com", "t.co"][i % 3],
                target="x" if i % 3 else None,
                measurement_start_time=when,
                received_at=when + timedelta(minutes=3, microseconds=123_456 + i),
                verdict=verdict,
                method=METHODS[i % len(METHODS)] if verdict == "blocked" else None,
                confidence=0.25 + (i % 4) / 8,
                confirmed=verdict == "blocked" and i % 3 == 1,
                fingerprint="blockpage 'PTA' \\ gov.pk" if i % 10 == 1 else None,
                evidence=[f"line {i}", 'quote "x" \\ back', "new\nline", "Ünïcödé ✓"],
                layers={"dns": "ok", "tcp": None, "tls": "blocked" if i % 2 else "ok"},
                signature=SIGNATURE_STATES[i % 3],
                source="collector" if i % 4 else "ooni",
                archive_segment=f"seg-{1 + i // 20:08d}.jsonl.gz",
                archive_offset=2**40 + i * 1000,
                workarounds=(
                    {
                        "doh:dns.google": {"status": "works", "reason": f"HTTP 200 'X' {i}"},
                        "no_sni": {"status": "fails", "reason": 'reset \\ "q" Ünï'},
                        "ech": {"status": "not tried", "reason": "no TLS library\noffers it"},
                    }
                    if verdict == "blocked"
                    else None
                ),
                locate=(
                    {
                        "trigger": "tls",
                        "placement": "national_gateway",
                        "hop": 3,
                        "address": "198.19.1.1",
                        "asn": "AS65537",
                        "as_org_name": 'Carrier "PK" \\ Ünï',
                        "confirmed": True,
                    }
                    if verdict == "blocked" and i % 2
                    else None
                ),
            )
        )
    rows.append(
        MeasurementRow(
            **{
                **{f: getattr(rows[0], f) for f in rows[0].__struct_fields__},
                "measurement_uid": "uid with 'quotes' and \\ backslash",
                "input": "https://example.org/?q=' OR 1=1 --",
                "report_id": "r'1",
            }
        )
    )
    return rows


ROWS = make_rows()


def _among(value: Any, wanted: Any) -> bool:
    return value in wanted if isinstance(wanted, tuple) else value == wanted


def matches(f: Filters, r: MeasurementRow) -> bool:
    """The filters as plain Python, the specification the SQL of every backend must meet."""
    for name in ("report_id", "probe_cc", "probe_asn", "input", "domain", "test_name"):
        wanted = getattr(f, name)
        if wanted is not None and not _among(getattr(r, name), wanted):
            return False
    for name in ("verdict", "method", "confirmed", "signature"):
        wanted = getattr(f, name)
        if wanted is not None and getattr(r, name) != wanted:
            return False
    if f.anomaly is not None and (r.verdict == "blocked") != f.anomaly:
        return False
    if f.failure is not None and (r.verdict == "unknown") != f.failure:
        return False
    if f.since is not None and r.measurement_start_time < f.since:
        return False
    return f.until is None or r.measurement_start_time < f.until


FILTERS = [
    Filters(),
    Filters(probe_cc="PK"),
    Filters(probe_cc=("PK", "CN"), probe_asn="AS9541"),
    Filters(probe_asn=("AS9541", "AS17557"), verdict="blocked"),
    Filters(domain="x.com", test_name="web_connectivity"),
    Filters(domain=("t.co", "twitter.com"), confirmed=False),
    Filters(input="https://x.com/1"),
    Filters(input="https://example.org/?q=' OR 1=1 --"),
    Filters(report_id="r'1"),
    Filters(method="dns.nxdomain"),
    Filters(anomaly=True),
    Filters(anomaly=False, failure=False),
    Filters(failure=True, signature="verified"),
    Filters(since=datetime(2024, 1, 1), until=datetime(2024, 1, 8)),
    # A bound inside a second: the microseconds decide.
    Filters(since=ROWS[3].measurement_start_time),
    Filters(since=ROWS[3].measurement_start_time + timedelta(microseconds=1)),
    Filters(until=ROWS[3].measurement_start_time),
    Filters(until=ROWS[3].measurement_start_time + timedelta(microseconds=1)),
    Filters(probe_cc="ZZ"),
]


def _asn_number(r: MeasurementRow) -> int:
    return int(r.probe_asn[2:])


def expected_page_order(order_by: str, order: str) -> list[str]:
    """UIDs sorted as ``rows`` promises: by ``order_by`` (NULLs last either way, as both
    engines put them), then time, then UID, all in one direction."""
    value = _asn_number if order_by == "probe_asn" else (lambda r: getattr(r, order_by))
    with_value = [r for r in ROWS if value(r) is not None]
    without = [r for r in ROWS if value(r) is None]
    reverse = order == "desc"

    def key(r: MeasurementRow) -> tuple[Any, ...]:
        return (value(r), r.measurement_start_time, r.measurement_uid)

    def tail(r: MeasurementRow) -> tuple[Any, ...]:
        return (r.measurement_start_time, r.measurement_uid)

    ordered = sorted(with_value, key=key, reverse=reverse)
    ordered += sorted(without, key=tail, reverse=reverse)
    return [r.measurement_uid for r in ordered]


def oldest_first(rows: list[MeasurementRow]) -> list[str]:
    return [
        r.measurement_uid
        for r in sorted(rows, key=lambda r: (r.measurement_start_time, r.measurement_uid))
    ]


@pytest.fixture
def filled(backend: Backend) -> Iterator[Store]:
    store = backend.open()
    store.add(ROWS[:30], ArchiveLocation("seg-00000001.jsonl.gz", 10))
    store.add(ROWS[30:], ArchiveLocation("seg-00000002.jsonl.gz", 20))
    try:
        yield store
    finally:
        store.close()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """The DuckDB backend holding the same rows: what every backend's answers must equal."""
    store = open_store(tmp_path_factory.mktemp("reference") / "ref.duckdb")
    store.add(ROWS)
    try:
        yield store
    finally:
        store.close()


def test_add_stores_each_uid_once_and_returns_the_new_ones(backend: Backend) -> None:
    with backend.open() as store:
        assert store.checkpoint() is None
        first = store.add([ROWS[0], ROWS[1], ROWS[0]], ArchiveLocation("seg-00000001.jsonl.gz", 7))
        assert first == [ROWS[0].measurement_uid, ROWS[1].measurement_uid]
        assert store.add(ROWS[:3]) == [ROWS[2].measurement_uid]  # no checkpoint given
        assert store.checkpoint() == ArchiveLocation("seg-00000001.jsonl.gz", 7)
        assert store.add(ROWS[:3], ArchiveLocation("seg-00000002.jsonl.gz", 0)) == []
        assert store.existing([r.measurement_uid for r in ROWS[:5]]) == {
            r.measurement_uid for r in ROWS[:3]
        }
        assert store.existing([]) == set()
        assert sorted(store.uids()) == sorted(r.measurement_uid for r in ROWS[:3])
        assert store.count() == 3
    # A later open sees what the first one wrote, the checkpoint included.
    with backend.open(read_only=True) as store:
        assert store.count() == 3
        assert store.checkpoint() == ArchiveLocation("seg-00000002.jsonl.gz", 0)


def test_rows_come_back_exactly_as_they_went_in(filled: Store) -> None:
    for original in ROWS:
        back = filled.row(original.measurement_uid)
        assert back == original, original.measurement_uid
        assert filled.location(original.measurement_uid) == original.location
        assert filled.get(original.measurement_uid) == original.public()
    assert filled.row("no-such-uid") is None and filled.location("no-such-uid") is None


@pytest.mark.parametrize("filters", FILTERS, ids=range(len(FILTERS)))
def test_filters_select_exactly_the_matching_rows(filled: Store, filters: Filters) -> None:
    wanted = [r for r in ROWS if matches(filters, r)]
    assert filled.count(filters) == len(wanted)
    assert [r.measurement_uid for r in filled.scan(filters)] == oldest_first(wanted)
    page = filled.rows(filters, limit=5, offset=0, order="asc")
    assert [r.measurement_uid for r in page] == oldest_first(wanted)[:5]


@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("order_by", ORDER_COLUMNS)
def test_pages_follow_every_order(filled: Store, order_by: str, order: str) -> None:
    pages = []
    for offset in range(0, len(ROWS) + 7, 7):
        page = filled.rows(Filters(), limit=7, offset=offset, order=order, order_by=order_by)
        pages += [r.measurement_uid for r in page]
    assert pages == expected_page_order(order_by, order)
    with pytest.raises(ValueError, match="order_by"):
        filled.rows(Filters(), limit=1, offset=0, order_by="evidence")


def test_scan_streams_in_pages_without_losing_ties(filled: Store, monkeypatch) -> None:
    # Pages of 3 cut through rows that share a time: the next page must start after the UID.
    import censorwatch.store.clickhouse_store as clickhouse_store

    monkeypatch.setattr(clickhouse_store, "SCAN_PAGE", 3)
    assert [r.measurement_uid for r in filled.scan(Filters())] == oldest_first(ROWS)
    records = list(filled.iter_verdicts(probe_cc="IR"))
    assert records == [
        r.verdict_record()
        for r in sorted(ROWS, key=lambda r: (r.measurement_start_time, r.measurement_uid))
        if r.probe_cc == "IR"
    ]


AXIS_PAIRS = (
    [(None, None)]
    + [(a, None) for a in AXES]
    + [
        ("measurement_start_day", "probe_cc"),
        ("probe_asn", "blocking_type"),
        ("domain", "input"),
        ("test_name", "method"),
    ]
)


@pytest.mark.parametrize(("axis_x", "axis_y"), AXIS_PAIRS)
def test_aggregates_equal_the_reference_backend(
    filled: Store, reference: Store, axis_x: str | None, axis_y: str | None
) -> None:
    for filters in (Filters(), Filters(probe_cc=("PK", "IR"), anomaly=False)):
        got = filled.aggregate(filters, axis_x, axis_y)
        assert got == reference.aggregate(filters, axis_x, axis_y)
        wanted = [r for r in ROWS if matches(filters, r)]
        assert sum(b["measurement_count"] for b in got) == len(wanted)
        assert sum(b["blocked_count"] for b in got) == sum(r.verdict == "blocked" for r in wanted)
        assert sum(b["confirmed_count"] for b in got) == sum(r.confirmed for r in wanted)
        method_total = sum(sum(b["method_counts"].values()) for b in got)
        assert method_total == sum(r.method is not None for r in wanted)


@pytest.mark.parametrize("grain", TIME_GRAINS)
def test_time_grains_bucket_like_the_reference(filled: Store, reference: Store, grain: str) -> None:
    got = filled.aggregate(Filters(), "measurement_start_day", "probe_cc", grain)
    assert got == reference.aggregate(Filters(), "measurement_start_day", "probe_cc", grain)
    labels = {b["measurement_start_day"] for b in got}
    assert len(labels) > 1
    if grain == "week":  # ISO weeks start on Monday
        assert all(datetime.fromisoformat(label).weekday() == 0 for label in labels)
    if grain == "hour":
        assert all(label.endswith(":00:00Z") for label in labels)
    assert filled.aggregate(Filters(probe_cc="ZZ"), None, None, grain) == []
    with pytest.raises(ValueError):
        filled.aggregate(Filters(), "measurement_start_day", None, "fortnight")
    with pytest.raises(ValueError):
        filled.aggregate(Filters(), "colour", None)
    with pytest.raises(ValueError):
        filled.aggregate(Filters(), "probe_cc", "probe_cc")


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_exports_equal_the_reference_files(
    filled: Store, reference: Store, tmp_path: Path, fmt: str
) -> None:
    filters = Filters(probe_cc=("PK", "IR"))
    ours, theirs = tmp_path / f"o'urs.{fmt}", tmp_path / f"theirs.{fmt}"
    wanted = [r for r in ROWS if matches(filters, r)]
    assert filled.export(str(ours), fmt, filters) == len(wanted)
    assert reference.export(str(theirs), fmt, filters) == len(wanted)
    if fmt == "csv":
        assert ours.read_bytes() == theirs.read_bytes()
        with open(ours, newline="") as fh:
            read = list(csv.DictReader(fh))
        assert [r["measurement_uid"] for r in read] == oldest_first(wanted)
        assert json.loads(read[0]["evidence"]) == wanted[0].evidence
    else:
        con = duckdb.connect()
        rows_mine = con.execute("SELECT * FROM read_parquet(?)", [str(ours)]).fetchall()
        rows_theirs = con.execute("SELECT * FROM read_parquet(?)", [str(theirs)]).fetchall()
        assert rows_mine == rows_theirs and len(rows_mine) == len(wanted)
    assert list(tmp_path.glob(".export-*")) == []  # the scratch space is gone
    with pytest.raises(ValueError):
        filled.export(str(tmp_path / "x.json"), "json", filters)


def test_ingested_files_and_their_errors(backend: Backend) -> None:
    with backend.open() as store:
        assert not store.ingested("raw/a.jsonl.gz")
        assert store.ingest_errors("raw/a.jsonl.gz") is None
        store.mark_ingested("raw/a.jsonl.gz", 100, 0, errors="truncated gzip")
        assert store.ingested("raw/a.jsonl.gz")
        assert store.ingest_errors("raw/a.jsonl.gz") == "truncated gzip"
        store.mark_ingested("raw/a.jsonl.gz", 100, 3, errors="still truncated")  # a retry
        assert store.ingest_errors("raw/a.jsonl.gz") == "still truncated"
        store.mark_ingested("raw/a.jsonl.gz", 200, 5)  # read to its end at last
        assert store.ingest_errors("raw/a.jsonl.gz") is None
        store.mark_ingested("raw/a.jsonl.gz", 200, 5, errors="late failure")  # done stays done
        assert store.ingested("raw/a.jsonl.gz") and store.ingest_errors("raw/a.jsonl.gz") is None
        store.mark_ingested("raw/b'.jsonl.gz", 1, 1)
        assert store.ingested("raw/b'.jsonl.gz") and not store.ingested("raw/c.jsonl.gz")


def test_aliases_keep_their_first_uid(backend: Backend) -> None:
    with backend.open() as store:
        assert store.aliased([]) == {}
        store.add_aliases({})
        store.add_aliases({"sha:1": "uid-1", "sha:'2": "uid-2"})
        store.add_aliases({"sha:1": "uid-other", "sha:3": "uid-3"})
        assert store.aliased(["sha:1", "sha:'2", "sha:3", "sha:4"]) == {
            "sha:1": "uid-1",
            "sha:'2": "uid-2",
            "sha:3": "uid-3",
        }


def test_optimize_keeps_every_answer(filled: Store) -> None:
    before = (filled.count(), filled.aggregate(Filters(), "probe_cc", "method"))
    assert filled.optimize() == len(ROWS)
    assert (filled.count(), filled.aggregate(Filters(), "probe_cc", "method")) == before
    assert filled.row(ROWS[5].measurement_uid) == ROWS[5]


def test_rows_keep_their_circumvention_summary(filled: Store) -> None:
    """The summary round-trips as the mapping it was, and is in the verdict record only when
    the row has one (as ``Verdict.to_record`` leaves it out)."""
    with_summary = [r for r in ROWS if r.workarounds]
    assert with_summary and len(with_summary) < len(ROWS)
    for original in ROWS:
        record = filled.row(original.measurement_uid).verdict_record()  # type: ignore[union-attr]
        assert record.get("workarounds") == original.workarounds
    published = filled.get(with_summary[0].measurement_uid)
    assert published is not None and json.loads(published["workarounds"]) == (
        with_summary[0].workarounds
    )
    assert published["source"] == with_summary[0].source  # the columns still line up


def test_rows_keep_where_the_censor_sits(filled: Store) -> None:
    located = [r for r in ROWS if r.locate]
    assert located and len(located) < len(ROWS)
    for original in ROWS:
        record = filled.row(original.measurement_uid).verdict_record()  # type: ignore[union-attr]
        assert record.get("locate") == original.locate
    published = filled.get(located[0].measurement_uid)
    assert published is not None and json.loads(published["locate"]) == located[0].locate


def test_a_store_made_before_the_summary_column_gains_it(backend: Backend, tmp_path: Path) -> None:
    """An old store keeps its rows (their summary and localization NULL) and takes new ones
    with both; opening it again (the columns' migrations met a second time) changes nothing."""
    blocked = next(r for r in ROWS if r.workarounds and r.locate)
    plain = next(r for r in ROWS if not r.workarounds)
    if backend.name == "duckdb":
        from censorwatch.store import schema

        path = tmp_path / "old.duckdb"
        ddl = schema.MEASUREMENTS.replace(",\n    workarounds            VARCHAR", "")
        ddl = ddl.replace(",\n    locate                 VARCHAR", "")
        assert "workarounds" not in ddl and "locate" not in ddl
        with duckdb.connect(str(path)) as con:  # the table as a store before the column made it
            con.execute(ddl)
            old = plain.as_tuple()[:-2]
            con.execute(f"INSERT INTO measurements VALUES ({', '.join('?' * len(old))})", old)
        with open_store(path, read_only=True) as store:  # read-only: never migrated, reads NULL
            assert store.row(plain.measurement_uid) == plain

        def reopen() -> Store:
            return open_store(path)
    else:
        from censorwatch.store import clickhouse_schema

        assert [m.version for m in clickhouse_schema.MIGRATIONS] == [1, 2, 3, 4]
        from censorwatch.store.clickhouse_store import encode_row

        with backend.open_at(clickhouse_schema.MIGRATIONS[:1]) as store:
            assert store.schema_version == 1  # type: ignore[attr-defined]
            record = json.loads(encode_row(plain))  # the row as the code of version 1 wrote it
            assert record.pop("workarounds") is None and record.pop("locate") is None
            store.transport.execute(  # type: ignore[attr-defined]
                f"INSERT INTO {store.db}.measurements ({', '.join(record)}) "  # type: ignore[attr-defined]
                "FORMAT JSONEachRow",
                json.dumps(record).encode(),
            )

        def reopen() -> Store:
            return backend.open_at(clickhouse_schema.MIGRATIONS)

    with reopen() as store:
        assert store.row(plain.measurement_uid) == plain
        store.add([blocked])
        assert store.row(blocked.measurement_uid) == blocked
    with reopen() as store:
        assert sorted(store.uids()) == sorted([plain.measurement_uid, blocked.measurement_uid])
        found = store.row(blocked.measurement_uid)
        assert found is not None and found.workarounds == blocked.workarounds
        assert found.locate == blocked.locate


def test_reading_a_missing_store_says_so_and_creates_nothing(backend: Backend) -> None:
    with pytest.raises(StoreNotFoundError, match="no store at"):
        backend.open(read_only=True)
    with pytest.raises(StoreNotFoundError, match="no store at"):
        backend.open(create=False)
    with backend.open() as store:  # still creatable: the refusals left nothing behind
        assert store.count() == 0


def make_event(n: int, **over: Any) -> Event:
    fields: dict[str, Any] = dict(
        event_id=f"ev-{n}",
        scope="network" if n % 3 else "national",
        cc=["PK", "IR"][n % 2],
        asns=[["AS17557"], ["AS9541", "AS17557"], ["AS45595"]][n % 3],
        target=["x", "youtube"][n % 2],
        methods=["dns.nxdomain"],
        onset=Bracket(
            None if n % 4 == 0 else "2024-02-16T00:00:00Z", f"2024-02-{10 + n}T06:00:00Z"
        ),
        end=None if n % 2 else Bracket("2024-03-01T00:00:00Z", f"2024-03-0{1 + n % 5}T00:00:00Z"),
        status="ongoing" if n % 2 else "ended",
        confidence=0.5 + n / 100,
        measurements={"blocked": n, "ok": 1},
        evidence=[f"event {n} 'quoted'"],
    )
    fields.update(over)
    return Event(**fields)


EVENT_QUERIES = [
    EventFilters(),
    EventFilters(cc="PK"),
    EventFilters(asn="AS17557"),
    EventFilters(target="youtube", scope="network"),
    EventFilters(status="ended"),
    EventFilters(since="2024-03-03T00:00:00Z"),
    EventFilters(until="2024-02-14T00:00:00Z"),
]


def test_stored_events_keep_the_newest_version_of_each(backend: Backend, tmp_path: Path) -> None:
    events = [make_event(n) for n in range(8)]
    with backend.open() as store, open_store(tmp_path / "reference.duckdb") as reference:
        for target in (store, reference):
            assert target.stored_events() == []
            target.save_events(events, [])
            target.save_events([make_event(2, status="ended", target="x")], ["ev-5", "ev-7"])
            target.save_events([], [])
            target.save_events([make_event(7)], ["ev-7"])  # changed and removed: it stays
        got = store.stored_events()
        assert {e.event_id for e in got} == {f"ev-{n}" for n in range(8)} - {"ev-5"}
        assert next(e for e in got if e.event_id == "ev-2").status == "ended"
        for query in EVENT_QUERIES:
            assert store.stored_events(query) == reference.stored_events(query), query
        assert [e.scope for e in got] == sorted(e.scope for e in got)  # national first


def test_event_state_is_the_newest_blob(backend: Backend) -> None:
    with backend.open() as store:
        assert not store.has_event_state() and store.load_event_state() is None
        blobs = [bytes(range(256)) * 40 + b"\n\t\\'\x00", b"second"]
        for blob in blobs:
            store.save_event_state(blob)
            assert store.has_event_state() and store.load_event_state() == blob
    with backend.open(read_only=True) as store:
        assert store.load_event_state() == blobs[1]


def test_scan_from_streams_in_archive_order(filled: Store, monkeypatch) -> None:
    import censorwatch.store.clickhouse_store as clickhouse_store

    monkeypatch.setattr(clickhouse_store, "SCAN_PAGE", 4)
    start = ArchiveLocation(ROWS[25].archive_segment, ROWS[25].archive_offset)
    wanted = sorted(
        (r for r in ROWS if (r.archive_segment, r.archive_offset) >= (start.segment, start.offset)),
        key=lambda r: (r.archive_segment, r.archive_offset, r.measurement_uid),
    )
    assert [r.measurement_uid for r in filled.scan_from(start)] == [
        r.measurement_uid for r in wanted
    ]
    assert list(filled.scan_from(ArchiveLocation("seg-99999999.jsonl.gz", 0))) == []


# -- people's reports ---------------------------------------------------------------------------


def make_people_reports() -> list[Any]:
    """Reports over hours, networks and targets, with quotes, markup and non-ASCII notes."""
    from censorwatch.store.base import REPORT_FAILURES, PeopleReport

    start = datetime(2024, 2, 16, 22)
    out = []
    for i in range(40):
        out.append(
            PeopleReport(
                hour=start + timedelta(hours=i % 7),
                probe_cc=["PK", "IR"][i % 2],
                probe_asn=["AS17557", "AS9541", "AS45595"][i % 3],
                target=["x", "https://x.com/", "telegram", "https://q.example/?a='1'"][i % 4],
                failure=REPORT_FAILURES[i % len(REPORT_FAILURES)],
                note=None if i % 3 else f"<b>note {i}</b> 'quoted' \\ Ünïcödé\nline",
            )
        )
    return out


def _report_matches(q: Any, r: Any) -> bool:
    """A plain-Python reading of ``ReportFilters``."""
    for name in ("probe_cc", "probe_asn", "target"):
        wanted, value = getattr(q, name), getattr(r, name)
        if wanted is not None and not (
            value in wanted if isinstance(wanted, tuple) else value == wanted
        ):
            return False
    return (q.since is None or r.hour >= q.since) and (q.until is None or r.hour < q.until)


def test_people_reports_are_counted_per_network_target_and_hour(backend: Backend) -> None:
    from collections import Counter

    from censorwatch.store.base import ReportCount, ReportFilters

    reports = make_people_reports()
    with backend.open() as store:
        assert store.people_report_counts() == [] and store.people_reports() == []
        store.add_people_reports([])
        store.add_people_reports(reports[:25])
        store.add_people_reports(reports[25:])
        queries = [
            ReportFilters(),
            ReportFilters(probe_cc="PK"),
            ReportFilters(probe_asn=("AS9541", "AS45595"), target="x"),
            ReportFilters(target=("https://q.example/?a='1'",), since=datetime(2024, 2, 17, 1)),
            ReportFilters(until=datetime(2024, 2, 17), probe_asn="AS17557"),
            ReportFilters(target=()),
        ]
        for q in queries:

            def wanted(r: Any, q: Any = q) -> bool:
                return _report_matches(q, r)

            tally = Counter(
                (r.probe_cc, r.probe_asn, r.target, r.hour) for r in reports if wanted(r)
            )
            expected = [
                ReportCount(cc, asn, target, hour, n)
                for (cc, asn, target, hour), n in sorted(
                    tally.items(), key=lambda kv: (kv[0][3], kv[0][0], kv[0][1], kv[0][2])
                )
            ]
            assert store.people_report_counts(q) == expected, q
            got = store.people_reports(q, limit=1000)
            assert sorted(got, key=repr) == sorted(
                [r for r in reports if wanted(r)], key=repr
            )  # every field back exactly
            assert [r.hour for r in got] == sorted((r.hour for r in got), reverse=True)
        assert len(store.people_reports(limit=3)) == 3


def test_people_reports_come_back_in_an_order_that_hides_arrival(backend: Backend) -> None:
    """Within an hour a read orders by content, so which report came first is not told."""
    reports = make_people_reports()
    with backend.open() as store:
        store.add_people_reports(list(reversed(reports)))
        got = store.people_reports(limit=1000)
    by_content = sorted(
        reports,
        key=lambda r: (-r.hour.timestamp(), r.target, r.failure, r.note is not None,
                       r.note or "", r.probe_cc, r.probe_asn),
    )  # fmt: skip
    assert got == by_content


def test_people_reports_table_is_added_to_an_older_store(backend: Backend, tmp_path: Path) -> None:
    from censorwatch.store.base import ReportFilters

    reports = make_people_reports()
    if backend.name == "duckdb":
        path = tmp_path / "cw.duckdb"
        with open_store(path) as store:
            store.add(ROWS[:2])
        with duckdb.connect(str(path)) as con:  # a store from before the table
            con.execute("DROP TABLE people_reports")
        with open_store(path, read_only=True) as store:  # never migrated: reads none
            assert store.people_report_counts() == [] and store.people_reports() == []

        def reopen() -> Store:
            return open_store(path)
    else:
        from censorwatch.store import clickhouse_schema

        assert [m.version for m in clickhouse_schema.MIGRATIONS][:3] == [1, 2, 3]
        assert backend.open_at is not None
        from censorwatch.store.clickhouse_store import encode_row

        with backend.open_at(clickhouse_schema.MIGRATIONS[:2]) as store:
            for row in [r for r in ROWS if not r.locate][:2]:  # as version 2's code wrote them
                record = json.loads(encode_row(row))
                assert record.pop("locate") is None
                store.transport.execute(  # type: ignore[attr-defined]
                    f"INSERT INTO {store.db}.measurements ({', '.join(record)}) "  # type: ignore[attr-defined]
                    "FORMAT JSONEachRow",
                    json.dumps(record).encode(),
                )
            tables = store.transport.execute(  # type: ignore[attr-defined]
                f"EXISTS TABLE {store.db}.people_reports"  # type: ignore[attr-defined]
            )
            assert tables.strip() == b"0"
        # The versions listed out of order still apply in order.
        shuffled = tuple(reversed(clickhouse_schema.MIGRATIONS))

        def reopen() -> Store:
            return backend.open_at(shuffled)  # type: ignore[misc]

    with reopen() as store:
        store.add_people_reports(reports)
        assert store.count() == 2
        assert sum(c.reports for c in store.people_report_counts(ReportFilters())) == len(reports)
