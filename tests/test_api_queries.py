"""The query API over a real server holding real OONI measurements (analysed on arrival).

Sixty-nine OONI measurements (OONI's QA set, the spec examples, the odd shapes) are submitted
through the probe-side client, spread over two countries, three networks and three days.
Every expectation is computed here from the same files with the analysis, independently of
the server.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from censorwatch.analysis import analyze
from censorwatch.probe.submit import submit_or_queue
from collector_helpers import OONI, Server

NETWORKS = [("PK", "AS17557"), ("PK", "AS9541"), ("IR", "AS197207")]


def corpus() -> list[dict[str, Any]]:
    files = sorted((OONI / "wc05_qa").glob("*.json"))
    files += sorted((OONI / "examples").glob("*.json")) + sorted((OONI / "odd").glob("*.json"))
    out = []
    start = datetime(2024, 2, 16, 6, tzinfo=UTC)
    for i, path in enumerate(files):
        m = json.loads(path.read_text())
        m["probe_cc"], m["probe_asn"] = NETWORKS[i % 3]
        when = (start + timedelta(hours=i)).strftime("%Y-%m-%d %H:%M:%S")
        m["measurement_start_time"] = m["test_start_time"] = when
        m["report_id"] = ""
        m["x_file"] = path.name
        out.append(m)
    return out


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("api")
    server = Server(tmp / "cw.duckdb", tmp / "archive", tmp / "server.log")
    measurements = corpus()
    try:
        result = submit_or_queue(measurements, server.url, tmp / "queue")
        assert result.error is None and result.rejected == 0 and result.queued == 0
        assert len(result.sent) == len(measurements)
        expected = []
        for m, uid in zip(measurements, result.sent, strict=True):
            v = analyze(m)
            expected.append({"uid": uid, "m": m, "verdict": v.verdict, "method": v.method})
        yield server, expected, tmp
    finally:
        server.stop()


def get(server: Server, path: str, **params: Any) -> httpx.Response:
    return httpx.get(server.url + path, params=params, timeout=30)


@pytest.mark.slow
def test_measurements_filters_match_the_analysis(served) -> None:
    server, expected, _ = served
    everything = get(server, "/api/v1/measurements", limit=1000).json()
    assert everything["metadata"]["count"] == len(expected) == 69
    by_uid = {r["measurement_uid"]: r for r in everything["results"]}
    assert set(by_uid) == {e["uid"] for e in expected}
    for e in expected:
        r = by_uid[e["uid"]]
        assert (r["verdict"], r["method"]) == (e["verdict"], e["method"]), e["m"]["x_file"]
        assert r["probe_cc"] == e["m"]["probe_cc"] and r["input"] == e["m"].get("input")
        assert r["measurement_start_time"].endswith("Z") and r["report_id"]
        assert r["anomaly"] == (e["verdict"] == "blocked")
    cases = [
        ({"probe_cc": "IR"}, lambda e: e["m"]["probe_cc"] == "IR"),
        ({"probe_asn": "9541"}, lambda e: e["m"]["probe_asn"] == "AS9541"),
        ({"verdict": "blocked"}, lambda e: e["verdict"] == "blocked"),
        ({"method": "dns.nxdomain"}, lambda e: e["method"] == "dns.nxdomain"),
        ({"test_name": "signal"}, lambda e: e["m"]["test_name"] == "signal"),
        ({"domain": "www.example.com"}, lambda e: "//www.example.com" in (e["m"].get("input") or "")),  # noqa: E501
        ({"since": "2024-02-17", "until": "2024-02-18"}, lambda e: "2024-02-17" in e["m"]["measurement_start_time"]),  # noqa: E501
    ]  # fmt: skip
    for params, pred in cases:
        body = get(server, "/api/v1/measurements", limit=1000, **params).json()
        want = {e["uid"] for e in expected if pred(e)}
        assert want, params
        assert {r["measurement_uid"] for r in body["results"]} == want, params
        assert body["metadata"]["count"] == len(want)


def test_paging_follows_next_url_through_every_result(served) -> None:
    server, expected, _ = served
    url = server.url + "/api/v1/measurements?limit=10&order=asc"
    seen: list[str] = []
    while url:
        body = httpx.get(url, timeout=30).json()
        seen += [r["measurement_uid"] for r in body["results"]]
        url = body["metadata"]["next_url"]
    assert len(seen) == len(set(seen)) == len(expected)


def test_raw_measurement_is_the_scrubbed_submission(served) -> None:
    server, expected, _ = served
    for e in expected[::10]:
        raw = get(server, "/api/v1/raw_measurement", measurement_uid=e["uid"]).json()
        assert raw["measurement_uid"] == e["uid"]
        assert raw["x_file"] == e["m"]["x_file"] and raw["probe_ip"] == "127.0.0.1"
    missing = get(server, "/api/v1/raw_measurement", measurement_uid="nope")
    assert missing.status_code == 404


def test_aggregation_country_day_network(served) -> None:
    server, expected, _ = served
    body = get(
        server, "/api/v1/aggregation",
        probe_cc="PK", axis_x="measurement_start_day", axis_y="probe_asn",
    ).json()  # fmt: skip
    assert body["dimension_count"] == 2
    want: Counter = Counter()
    for e in expected:
        if e["m"]["probe_cc"] == "PK":
            key = (e["m"]["measurement_start_time"][:10], e["m"]["probe_asn"])
            want[(*key, "all")] += 1
            want[(*key, e["verdict"])] += 1
    got: Counter = Counter()
    for b in body["result"]:
        key = (b["measurement_start_day"], b["probe_asn"])
        got[(*key, "all")] += b["measurement_count"]
        for v in ("ok", "blocked", "down", "unknown"):
            if b[f"{v}_count"]:
                got[(*key, v)] += b[f"{v}_count"]
    assert got == want


def test_aggregation_by_method_and_as_csv(served) -> None:
    server, expected, _ = served
    body = get(server, "/api/v1/aggregation", axis_x="method", verdict="blocked").json()
    counts = {b["method"]: b["measurement_count"] for b in body["result"]}
    assert counts == dict(Counter(e["method"] for e in expected if e["verdict"] == "blocked"))
    text = get(server, "/api/v1/aggregation", axis_x="probe_cc", format="CSV").text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["probe_cc"]: int(r["measurement_count"]) for r in rows} == dict(
        Counter(e["m"]["probe_cc"] for e in expected)
    )
    blocked = sum(int(r["blocked_count"]) for r in rows)
    assert blocked == sum(e["verdict"] == "blocked" for e in expected)
    assert sum(int(r["dns.nxdomain_count"]) for r in rows) == sum(
        e["method"] == "dns.nxdomain" for e in expected
    )
    total = get(server, "/api/v1/aggregation").json()["result"]
    assert total["measurement_count"] == len(expected)


@pytest.mark.parametrize(
    "params",
    [
        {"axis_x": "probe_ip"},
        {"axis_x": "probe_cc", "axis_y": "probe_cc"},
        {"since": "last tuesday"},
        {"probe_asn": "ASX"},
        {"time_grain": "fortnight"},
        {"verdict": "maybe"},
        {"limit": 0},
        {"offset": -1},
    ],
)
def test_bad_query_parameters_are_4xx(served, params: dict) -> None:
    server, _, _ = served
    path = (
        "/api/v1/measurements" if "limit" in params or "offset" in params else "/api/v1/aggregation"
    )
    r = get(server, path, **params)
    assert 400 <= r.status_code < 500, (params, r.status_code, r.text)


def test_health_metrics_and_openapi(served) -> None:
    server, expected, _ = served
    assert get(server, "/health").json() == {
        "status": "ok",
        "measurements": len(expected),
        "accepting_submissions": True,
    }
    metrics = get(server, "/metrics").text
    assert f'censorwatch_submissions_total{{outcome="stored"}} {float(len(expected))}' in metrics
    assert f"censorwatch_measurements_stored {float(len(expected))}" in metrics
    spec = get(server, "/openapi.json").json()
    for path in ("/report", "/report/{report_id}", "/api/v1/measurements", "/api/v1/aggregation",
                 "/api/v1/raw_measurement", "/health", "/metrics"):  # fmt: skip
        assert path in spec["paths"], path


@pytest.mark.slow
def test_export_cli_writes_csv_and_parquet_with_filters(served) -> None:
    server, expected, tmp = served
    server.stop()  # the database file is single-writer; export opens it once the server is gone
    want = sum(e["verdict"] == "blocked" and e["m"]["probe_cc"] == "PK" for e in expected)
    for fmt in ("csv", "parquet"):
        out = tmp / f"blocked.{fmt}"
        proc = subprocess.run(
            [sys.executable, "-m", "censorwatch", "export", str(out), "--format", fmt,
             "--db", str(tmp / "cw.duckdb"), "--verdict", "blocked", "--cc", "pk"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert f"wrote {want} measurements" in proc.stdout
        assert Path(out).stat().st_size > 0
    rows = list(csv.DictReader(io.StringIO((tmp / "blocked.csv").read_text())))
    assert len(rows) == want and {r["probe_cc"] for r in rows} == {"PK"}
