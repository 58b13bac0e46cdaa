"""The DuckDB store: idempotent inserts, filters, aggregation, verdict records, export."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from censorwatch.store import open_store
from censorwatch.store.base import ArchiveLocation, Filters, MeasurementRow


def row(i: int, **over) -> MeasurementRow:
    fields = dict(
        measurement_uid=f"uid-{i:05d}",
        report_id=f"report-{i % 3}",
        test_name="web_connectivity",
        probe_cc="PK" if i % 2 else "IR",
        probe_asn=f"AS{17557 if i % 4 < 2 else 9541}",
        input=f"https://{'x.com' if i % 5 else 'twitter.com'}/",
        domain="x.com" if i % 5 else "twitter.com",
        target="x",
        measurement_start_time=datetime(2024, 2, 16, 12) + timedelta(hours=i),
        received_at=datetime(2024, 2, 20),
        verdict=["ok", "blocked", "down", "unknown"][i % 4],
        method="dns.nxdomain" if i % 4 == 1 else None,
        confidence=0.9,
        confirmed=i % 8 == 1,
        fingerprint=None,
        evidence=json.dumps([f"e{i}"]),
        layers=json.dumps({"dns": "ok", "tcp": None, "tls": None, "http": None}),
        signature="unverified",
        source="collector",
        archive_segment="seg-00000001.jsonl.gz",
        archive_offset=i * 100,
    )
    fields.update(over)
    return MeasurementRow(**fields)


@pytest.fixture
def store(tmp_path: Path):
    s = open_store(tmp_path / "cw.duckdb")
    yield s
    s.close()


def test_add_is_idempotent_and_moves_the_checkpoint(store) -> None:
    assert store.checkpoint() is None
    new = store.add([row(i) for i in range(10)], ArchiveLocation("seg-00000001.jsonl.gz", 999))
    assert sorted(new) == [f"uid-{i:05d}" for i in range(10)]
    again = store.add([row(i) for i in range(5, 15)], ArchiveLocation("seg-00000002.jsonl.gz", 7))
    assert sorted(again) == [f"uid-{i:05d}" for i in range(10, 15)]
    assert store.count() == 15
    assert store.checkpoint() == ArchiveLocation("seg-00000002.jsonl.gz", 7)
    assert store.existing(["uid-00003", "nope", "uid-00014"]) == {"uid-00003", "uid-00014"}
    assert store.location("uid-00004") == ArchiveLocation("seg-00000001.jsonl.gz", 400)
    assert store.location("missing") is None


def test_filters_select_exactly_the_matching_rows(store) -> None:
    rows = [row(i) for i in range(40)]
    store.add(rows)
    checks = {
        "probe_cc": ("PK", lambda r: r.probe_cc == "PK"),
        "probe_asn": ("AS9541", lambda r: r.probe_asn == "AS9541"),
        "domain": ("twitter.com", lambda r: r.domain == "twitter.com"),
        "verdict": ("blocked", lambda r: r.verdict == "blocked"),
        "method": ("dns.nxdomain", lambda r: r.method == "dns.nxdomain"),
        "confirmed": (True, lambda r: r.confirmed),
        "report_id": ("report-1", lambda r: r.report_id == "report-1"),
    }
    for name, (value, pred) in checks.items():
        got = {
            r["measurement_uid"] for r in store.query(Filters(**{name: value}), limit=100, offset=0)
        }
        assert got == {r.measurement_uid for r in rows if pred(r)}, name
        assert store.count(Filters(**{name: value})) == len(got)
    since, until = datetime(2024, 2, 17), datetime(2024, 2, 17, 10)
    window = store.query(Filters(since=since, until=until), limit=100, offset=0, order="asc")
    assert [r["measurement_start_time"] for r in window] == sorted(
        r.measurement_start_time for r in rows if since <= r.measurement_start_time < until
    )


def test_paging_walks_every_row_once_in_order(store) -> None:
    store.add([row(i) for i in range(25)])
    seen = []
    for offset in range(0, 25, 7):
        seen += store.query(Filters(), limit=7, offset=offset)
    times = [r["measurement_start_time"] for r in seen]
    assert len({r["measurement_uid"] for r in seen}) == 25
    assert times == sorted(times, reverse=True)


def test_aggregation_counts_per_verdict_and_method(store) -> None:
    rows = [row(i) for i in range(48)]
    store.add(rows)
    result = store.aggregate(Filters(probe_cc="PK"), "measurement_start_day", "probe_asn", "day")
    pk = [r for r in rows if r.probe_cc == "PK"]
    assert sum(b["measurement_count"] for b in result) == len(pk)
    for bucket in result:
        members = [
            r
            for r in pk
            if r.measurement_start_time.strftime("%Y-%m-%d") == bucket["measurement_start_day"]
            and r.probe_asn == bucket["probe_asn"]
        ]
        assert bucket["measurement_count"] == len(members)
        for v in ("ok", "blocked", "down", "unknown"):
            assert bucket[f"{v}_count"] == sum(r.verdict == v for r in members)
        assert bucket["confirmed_count"] == sum(r.confirmed for r in members)
        assert bucket["method_counts"].get("dns.nxdomain", 0) == sum(
            r.method == "dns.nxdomain" for r in members
        )
    by_hour = store.aggregate(Filters(), "measurement_start_day", None, "hour")
    assert len(by_hour) == 48 and by_hour[0]["measurement_start_day"] == "2024-02-16T12:00:00Z"
    by_month = store.aggregate(Filters(), "measurement_start_day", None, "month")
    assert [b["measurement_start_day"] for b in by_month] == ["2024-02-01"]
    with pytest.raises(ValueError):
        store.aggregate(Filters(), "probe_cc; DROP TABLE measurements", None)


def test_iter_verdicts_yields_verdict_records_in_time_order(store) -> None:
    store.add([row(i) for i in reversed(range(12))])
    records = list(store.iter_verdicts(probe_cc="PK"))
    assert [r["measurement_start_time"] for r in records] == sorted(
        r["measurement_start_time"] for r in records
    )
    assert len(records) == 6
    first = records[0]
    assert set(first) == {
        "measurement_uid", "report_id", "input", "target", "probe_cc", "probe_asn",
        "measurement_start_time", "verdict", "method", "confidence", "confirmed",
        "fingerprint", "evidence", "layers",
    }  # fmt: skip
    assert first["measurement_start_time"].endswith("Z")
    assert isinstance(first["evidence"], list) and isinstance(first["layers"], dict)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_writes_the_filtered_rows(store, tmp_path: Path, fmt: str) -> None:
    store.add([row(i) for i in range(30)])
    out = tmp_path / f"out.{fmt}"
    n = store.export(str(out), fmt, Filters(verdict="blocked"))
    assert n == sum(1 for i in range(30) if i % 4 == 1)
    if fmt == "csv":
        with open(out, newline="") as fh:
            data = list(csv.DictReader(fh))
        assert {d["verdict"] for d in data} == {"blocked"} and len(data) == n
        assert "archive_segment" not in data[0]
    else:
        got = duckdb.connect().execute(f"SELECT count(*), min(verdict) FROM '{out}'").fetchone()
        assert got == (n, "blocked")


def test_quotes_in_values_and_paths_are_data_not_sql(store, tmp_path: Path) -> None:
    store.add([row(1, input="https://x.com/'; DROP TABLE measurements; --")])
    found = store.query(
        Filters(input="https://x.com/'; DROP TABLE measurements; --"), limit=5, offset=0
    )
    assert len(found) == 1
    out = tmp_path / "it's.csv"
    assert store.export(str(out), "csv", Filters()) == 1 and out.exists()


def test_optimize_keeps_every_row_and_the_constraints(store) -> None:
    store.add([row(i) for i in range(30)], ArchiveLocation("seg-00000001.jsonl.gz", 5))
    before = store.query(Filters(), limit=100, offset=0)
    assert store.optimize() == 30
    assert store.query(Filters(), limit=100, offset=0) == before
    assert store.add([row(3), row(31)]) == ["uid-00031"]  # the primary key still holds
    assert store.checkpoint() == ArchiveLocation("seg-00000001.jsonl.gz", 5)
