"""The query API read the way OONI's clients read OONI's API: its parameter spellings, its
flags, its paging, ``measurement_meta`` and the aggregation's counts.

A real server (``censorwatch serve`` on loopback, DuckDB in a temporary folder, OONI's
blocking fingerprints loaded) receives the 69 real OONI measurements of ``../shared/data/ooni``
spread over four networks and four days, and measurements of our own: web-connectivity pages
carrying a real Nayatel block page that OONI's fingerprints confirm, and re-addressed OONI
successes. Every expectation is computed here, from the submitted files, with the analysis.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from censorwatch.analysis import analyze
from censorwatch.analysis.fingerprints import Fingerprints
from censorwatch.probe.submit import submit_or_queue
from censorwatch.store.filters import FilterError, measurement_matches, parse_filters
from collector_helpers import OONI, Server, make_measurement
from test_analysis_blockpage import page_measurement

pytestmark = pytest.mark.slow

FINGERPRINTS = OONI.parent / "fingerprints"
NETWORKS = [("PK", "AS17557"), ("PK", "AS9541"), ("IR", "AS197207"), ("PK", "AS23674")]
#: Nayatel's block page text, as OONI's fingerprint ``ooni.pk_2`` knows it.
NAYATEL = (
    "<html><head><title>Blocked</title></head><body>As per your subscription of Nayatel "
    "Safeweb service, the website you are trying to access is blocked for your viewing"
    "</body></html>"
)
MEASUREMENTS = "/api/v1/measurements"


def ooni_files() -> list[dict[str, Any]]:
    files = sorted((OONI / "wc05_qa").glob("*.json"))
    files += sorted((OONI / "examples").glob("*.json")) + sorted((OONI / "odd").glob("*.json"))
    start = datetime(2024, 2, 16, 6, tzinfo=UTC)
    out = []
    for i, path in enumerate(files):
        m = json.loads(path.read_text())
        m["probe_cc"], m["probe_asn"] = NETWORKS[i % len(NETWORKS)]
        when = (start + timedelta(hours=i, minutes=i % 7)).strftime("%Y-%m-%d %H:%M:%S")
        m["measurement_start_time"] = m["test_start_time"] = when
        m["report_id"] = ""
        out.append(m)
    return out


def our_measurements() -> list[dict[str, Any]]:
    """Confirmed block pages (a routable address, so the analysis reads the page) and
    successes, on 2024-02-19."""
    out = []
    for i in range(4):
        page = page_measurement(NAYATEL)
        m = json.loads(json.dumps(page).replace("198.51.100.10", "104.244.42.1"))
        when = datetime(2024, 2, 19, 3, 0, 17 * i)
        m.update(probe_cc="PK", probe_asn="AS23674", report_id="", x_origin="nayatel")
        m["measurement_start_time"] = when.strftime("%Y-%m-%d %H:%M:%S")
        out.append(m)
    base = json.loads((OONI / "wc05_qa" / "successWithHTTPS.json").read_text())
    for i in range(5):
        when = datetime(2024, 2, 19, 9, tzinfo=UTC) + timedelta(minutes=i)
        out.append(make_measurement(i, base=base, probe_cc="IR", probe_asn="AS197207", when=when))
    return out


def host(url: str | None) -> str | None:
    return (urlsplit(url).hostname or "").lower().rstrip(".") or None if url else None


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("ooni-compat")
    server = Server(
        tmp / "cw.duckdb", tmp / "archive", tmp / "server.log", "--fingerprints", str(FINGERPRINTS)
    )
    measurements = ooni_files() + our_measurements()
    fps = Fingerprints.load(FINGERPRINTS)
    try:
        sent = submit_or_queue(measurements, server.url, tmp / "queue")
        assert sent.error is None and sent.rejected == 0 and len(sent.sent) == len(measurements)
        expected = []
        for m, uid in zip(measurements, sent.sent, strict=True):
            v = analyze(m, fingerprints=fps)
            expected.append(
                {
                    "uid": uid,
                    "cc": m["probe_cc"],
                    "asn": m["probe_asn"],
                    "test_name": m["test_name"],
                    "input": m.get("input"),
                    "domain": host(m.get("input")),
                    "start": datetime.fromisoformat(m["measurement_start_time"]),
                    "verdict": v.verdict,
                    "method": v.method,
                    "confirmed": v.confirmed,
                    "origin": m.get("x_origin"),
                }
            )
        yield server, expected
    finally:
        server.stop()


def get(server: Server, path: str, **params: Any) -> httpx.Response:
    return httpx.get(server.url + path, params=params, timeout=30)


def uids(server: Server, **params: Any) -> list[str]:
    body = get(server, MEASUREMENTS, limit=1000, order="asc", **params).json()
    assert body["metadata"]["count"] == len(body["results"])
    return [r["measurement_uid"] for r in body["results"]]


def test_the_corpus_has_every_kind_of_answer(served) -> None:
    _, expected = served
    kinds = Counter(e["verdict"] for e in expected)
    assert {k for k, n in kinds.items() if n} == {"ok", "blocked", "down", "unknown"}
    nayatel = [e for e in expected if e["origin"] == "nayatel"]
    assert len(nayatel) == 4 and all(e["confirmed"] for e in nayatel)
    assert sum(e["confirmed"] for e in expected) > 4  # OONI's files confirmed too


@pytest.mark.parametrize(
    ("canonical", "spellings", "wanted"),
    [
        ({"probe_asn": "AS9541"}, [{"probe_asn": "9541"}, {"probe_asn": "as9541"}],
         lambda e: e["asn"] == "AS9541"),
        ({"probe_cc": "IR"}, [{"probe_cc": "ir"}], lambda e: e["cc"] == "IR"),
        ({"since": "2024-02-17", "until": "2024-02-18"},
         [{"since": "2024-02-17T00:00:00", "until": "2024-02-18T00:00:00"},
          {"since": "2024-02-17 00:00:00", "until": "2024-02-18 00:00:00"},
          {"since": "2024-02-17T00:00:00Z", "until": "2024-02-18T00:00:00.000Z"},
          {"since": "2024-02-17T05:00:00+05:00", "until": "2024-02-17T19:00:00-05:00"}],
         lambda e: e["start"].date().isoformat() == "2024-02-17"),
        ({"since": "2024-02-16T12:30:00Z"}, [{"since": "2024-02-16T12:30:00"}],
         lambda e: e["start"] >= datetime(2024, 2, 16, 12, 30)),
        ({"verdict": "blocked"}, [{"anomaly": "true"}, {"anomaly": "1"}],
         lambda e: e["verdict"] == "blocked"),
        ({"verdict": "unknown"}, [{"failure": "true"}], lambda e: e["verdict"] == "unknown"),
        ({"domain": "x.com"}, [{"domain": "X.com."}], lambda e: e["domain"] == "x.com"),
        ({"test_name": "signal"}, [{"test_name": "signal,"}], lambda e: e["test_name"] == "signal"),
        ({"probe_asn": "AS9541,AS17557"}, [{"probe_asn": "9541,17557"}],
         lambda e: e["asn"] in ("AS9541", "AS17557")),
        ({"test_name": "signal,telegram"}, [{"test_name": "telegram,signal"}],
         lambda e: e["test_name"] in ("signal", "telegram")),
        ({"probe_cc": "PK,IR"}, [{}], lambda e: True),
    ],
)  # fmt: skip
def test_every_spelling_gives_the_canonical_rows(served, canonical, spellings, wanted) -> None:
    server, expected = served
    rows = uids(server, **canonical)
    want = sorted((e for e in expected if wanted(e)), key=lambda e: (e["start"], e["uid"]))
    assert rows == [e["uid"] for e in want] and rows, canonical
    for spelling in spellings:
        assert uids(server, **spelling) == rows, spelling


def test_a_list_is_the_union_of_its_values(served) -> None:
    server, _ = served
    both = set(uids(server, probe_asn="AS9541,AS197207", test_name="web_connectivity"))
    one = set(uids(server, probe_asn="AS9541", test_name="web_connectivity"))
    other = set(uids(server, probe_asn="AS197207", test_name="web_connectivity"))
    assert one and other and both == one | other and not one & other


@pytest.mark.parametrize(
    ("flag", "holds"),
    [
        ("anomaly", lambda e: e["verdict"] == "blocked"),
        ("confirmed", lambda e: e["confirmed"]),
        ("failure", lambda e: e["verdict"] == "unknown"),
    ],
)
def test_flags_select_what_they_say(served, flag: str, holds) -> None:
    server, expected = served
    by_uid = {e["uid"]: e for e in expected}
    for value in (True, False):
        body = get(server, MEASUREMENTS, limit=1000, **{flag: str(value).lower()}).json()
        got = {r["measurement_uid"] for r in body["results"]}
        assert got == {e["uid"] for e in expected if holds(e) == value}, (flag, value)
        assert got and all(r[flag] is value for r in body["results"])
        for r in body["results"]:
            e = by_uid[r["measurement_uid"]]
            assert r["anomaly"] == (e["verdict"] == "blocked")
            assert r["failure"] == (e["verdict"] == "unknown")
            assert r["confirmed"] == e["confirmed"]
            assert r["scores"]["blocking_general"] == (1.0 if r["anomaly"] else 0.0)
            assert r["scores"].get("analysis", {}).get("blocking_type") == e["method"]
            assert r["scores"].get("confirmed", False) is e["confirmed"]
    confirmed_anomalies = uids(server, anomaly="true", confirmed="true")
    assert set(confirmed_anomalies) == {e["uid"] for e in expected if e["confirmed"]}


def test_results_carry_what_ooni_explorer_reads(served) -> None:
    server, expected = served
    body = get(server, MEASUREMENTS, limit=5, probe_cc="PK", order="asc").json()
    first = min((e for e in expected if e["cc"] == "PK"), key=lambda e: (e["start"], e["uid"]))
    r = body["results"][0]
    assert r["measurement_uid"] == first["uid"] and r["probe_asn"] == first["asn"]
    assert r["probe_asn"].startswith("AS") and r["probe_cc"] == "PK"
    assert r["measurement_start_time"] == first["start"].strftime("%Y-%m-%dT%H:%M:%SZ")
    assert r["test_name"] == first["test_name"] and r["input"] == first["input"]
    assert r["report_id"].count("_") == 5  # OONI's report ID shape
    raw = httpx.get(r["measurement_url"], timeout=30).json()
    assert raw["measurement_uid"] == first["uid"]
    metadata = body["metadata"]
    count = sum(e["cc"] == "PK" for e in expected)
    assert metadata["count"] == count and metadata["pages"] == -(-count // 5)
    assert (metadata["current_page"], metadata["limit"], metadata["offset"]) == (1, 5, 0)
    assert isinstance(metadata["query_time"], float) and metadata["next_url"]


def _asn(e: dict[str, Any]) -> int:
    return int(e["asn"][2:])


@pytest.mark.parametrize(
    ("order_by", "key"),
    [
        ("probe_asn", _asn),  # by number: AS9541 before AS17557
        ("probe_cc", lambda e: e["cc"]),
        ("test_name", lambda e: e["test_name"]),
        ("input", lambda e: e["input"]),
        ("measurement_start_time", lambda e: e["start"]),
    ],
)
@pytest.mark.parametrize("order", ["asc", "DESC"])
def test_order_by_sorts_as_asked_and_pages_follow(served, order_by, key, order) -> None:
    server, expected = served
    chosen = [e for e in expected if e["test_name"] == "web_connectivity"]
    assert all(e["input"] for e in chosen)  # no null ordering involved
    want = sorted(chosen, key=lambda e: (key(e), e["start"], e["uid"]))
    if order == "DESC":
        want.reverse()
    params = {"order_by": order_by, "order": order, "limit": 7, "test_name": "web_connectivity"}
    url = str(httpx.URL(server.url + MEASUREMENTS, params=params))
    pages = []
    while url:
        body = httpx.get(url, timeout=30).json()
        metadata = body["metadata"]
        assert metadata["offset"] == 7 * len(pages)
        assert metadata["current_page"] == len(pages) + 1 and metadata["count"] == len(want)
        pages.append([r["measurement_uid"] for r in body["results"]])
        url = metadata["next_url"]
    assert len(pages) == -(-len(want) // 7) == metadata["pages"]
    assert [uid for page in pages for uid in page] == [e["uid"] for e in want]


def test_order_by_what_is_not_stored_is_a_400(served) -> None:
    server, _ = served
    r = get(server, MEASUREMENTS, order_by="test_start_time")
    assert r.status_code == 400 and "test_start_time" in r.json()["detail"]
    assert get(server, MEASUREMENTS, order_by="probe_ip").status_code == 422


def test_measurement_meta_by_uid_with_and_without_the_body(served) -> None:
    server, expected = served
    for e in [x for x in expected if x["confirmed"]][:1] + expected[::9]:
        meta = get(server, "/api/v1/measurement_meta", measurement_uid=e["uid"]).json()
        assert meta["measurement_uid"] == e["uid"] and "raw_measurement" not in meta
        assert meta["probe_asn"] == _asn(e) and meta["probe_cc"] == e["cc"]
        assert meta["test_name"] == e["test_name"] and meta["input"] == e["input"]
        assert meta["measurement_start_time"] == e["start"].strftime("%Y-%m-%dT%H:%M:%SZ")
        assert meta["anomaly"] == (e["verdict"] == "blocked")
        assert meta["failure"] == (e["verdict"] == "unknown")
        assert meta["confirmed"] == e["confirmed"]
        scores = json.loads(meta["scores"])  # a JSON text, as OONI answers it
        assert scores["blocking_general"] == (1.0 if meta["anomaly"] else 0.0)
        full = get(server, "/api/v1/measurement_meta", measurement_uid=e["uid"], full="true")
        body = full.json()
        raw = get(server, "/api/v1/raw_measurement", measurement_uid=e["uid"])
        assert body["raw_measurement"] == raw.text  # the archive's bytes, as text
        assert json.loads(body["raw_measurement"])["measurement_uid"] == e["uid"]
        assert {k: v for k, v in body.items() if k != "raw_measurement"} == meta


def test_measurement_meta_by_report_and_input(served) -> None:
    server, expected = served
    by_uid = {e["uid"]: e for e in expected}
    listed = get(server, MEASUREMENTS, limit=1000).json()["results"]
    report_of = {r["measurement_uid"]: r["report_id"] for r in listed}
    path = "/api/v1/measurement_meta"
    e = next(x for x in expected if x["origin"] == "nayatel")
    report_id = report_of[e["uid"]]
    meta = get(server, path, report_id=report_id, input=e["input"]).json()
    assert meta["report_id"] == report_id and meta["input"] == e["input"]
    assert meta["measurement_uid"] in uids(server, report_id=report_id, input=e["input"])
    assert meta["confirmed"] is True  # every Nayatel page of the report is confirmed
    no_input = next(x for x in expected if x["input"] is None)
    report = report_of[no_input["uid"]]
    meta = get(server, path, report_id=report).json()
    assert meta["report_id"] == report and meta["input"] is None
    assert meta["measurement_uid"] in uids(server, report_id=report)
    assert by_uid[meta["measurement_uid"]]["input"] is None


def test_measurement_meta_answers_as_ooni_for_unknown_and_missing(served) -> None:
    server, _ = served
    path = "/api/v1/measurement_meta"
    unknown = get(server, path, measurement_uid="20240217000000.000000_PK_webconnectivity_0")
    assert unknown.status_code == 200 and unknown.json() == {}
    full = get(server, path, measurement_uid="nope", full="true")
    assert full.status_code == 200 and full.json() == {"raw_measurement": ""}
    missing = get(server, path)
    assert missing.status_code == 400 and "measurement_uid" in missing.json()["detail"]


def _ooni_bucket(members: list[dict[str, Any]]) -> dict[str, int]:
    """OONI's four disjoint counts (and ours for down) from the expected rows."""
    blocked = [e for e in members if e["verdict"] == "blocked"]
    return {
        "measurement_count": len(members),
        "anomaly_count": sum(not e["confirmed"] for e in blocked),
        "confirmed_count": sum(e["confirmed"] for e in blocked),
        "failure_count": sum(e["verdict"] == "unknown" for e in members),
        "ok_count": sum(e["verdict"] == "ok" for e in members),
        "down_count": sum(e["verdict"] == "down" for e in members),
    }


def test_aggregation_counts_are_oonis(served) -> None:
    server, expected = served
    body = get(server, "/api/v1/aggregation", axis_x="measurement_start_day", axis_y="probe_cc",
               time_grain="day").json()  # fmt: skip
    groups: dict[tuple[str, str], list] = {}
    for e in expected:
        groups.setdefault((e["start"].date().isoformat(), e["cc"]), []).append(e)
    got = {(b["measurement_start_day"], b["probe_cc"]): b for b in body["result"]}
    assert set(got) == set(groups)
    for key, members in groups.items():
        bucket = got[key]
        assert {k: bucket[k] for k in _ooni_bucket(members)} == _ooni_bucket(members), key
        parts = ("ok_count", "down_count", "anomaly_count", "confirmed_count", "failure_count")
        assert sum(bucket[p] for p in parts) == bucket["measurement_count"]
    assert sum(b["confirmed_count"] for b in body["result"]) == sum(
        e["confirmed"] for e in expected
    )


def test_aggregation_axes_input_and_blocking_type(served) -> None:
    server, expected = served
    by_type = get(server, "/api/v1/aggregation", axis_x="blocking_type", anomaly="true").json()
    assert {b["blocking_type"]: b["measurement_count"] for b in by_type["result"]} == dict(
        Counter(e["method"] for e in expected if e["verdict"] == "blocked")
    )
    by_input = get(server, "/api/v1/aggregation", axis_x="input", probe_cc="IR").json()
    assert {b["input"]: b["measurement_count"] for b in by_input["result"]} == dict(
        Counter(e["input"] for e in expected if e["cc"] == "IR")
    )
    total = get(server, "/api/v1/aggregation", probe_asn="23674,AS9541").json()
    members = [e for e in expected if e["asn"] in ("AS23674", "AS9541")]
    assert total["dimension_count"] == 0
    assert {k: total["result"][k] for k in _ooni_bucket(members)} == _ooni_bucket(members)


def test_time_grains(served) -> None:
    server, expected = served
    week = {"since": "2024-02-16", "until": "2024-02-20", "axis_x": "measurement_start_day"}
    auto = get(server, "/api/v1/aggregation", **week).json()["result"]
    hours = Counter(e["start"].strftime("%Y-%m-%dT%H:00:00Z") for e in expected)
    assert {b["measurement_start_day"]: b["measurement_count"] for b in auto} == dict(hours)
    long = {**week, "since": "2024-01-01"}  # more than a week: auto is by the day
    days = get(server, "/api/v1/aggregation", **long, time_grain="auto").json()["result"]
    assert {b["measurement_start_day"] for b in days} == {
        e["start"].date().isoformat() for e in expected
    }
    for grain, label in (("month", "2024-02-01"), ("year", "2024-01-01"), ("week", "2024-02-12")):
        result = get(server, "/api/v1/aggregation", **week, time_grain=grain).json()["result"]
        assert (result[0]["measurement_start_day"], result[0]["measurement_count"]) == (
            label,
            sum(e["start"] < datetime(2024, 2, 19) for e in expected)
            if grain == "week"
            else len(expected),
        ), grain


def test_aggregation_as_csv_says_what_json_says(served) -> None:
    server, _ = served
    params = {"axis_x": "probe_asn", "axis_y": "test_name"}
    json_rows = get(server, "/api/v1/aggregation", **params).json()["result"]
    r = get(server, "/api/v1/aggregation", **params, format="CSV", download="true")
    assert r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"] == "attachment; filename=censorwatch-aggregation.csv"
    rows = list(csv.DictReader(io.StringIO(r.text)))
    counts = ("measurement_count", "anomaly_count", "confirmed_count", "failure_count", "ok_count")
    assert len(rows) == len(json_rows) > 3
    for line, bucket in zip(rows, json_rows, strict=True):
        assert (line["probe_asn"], line["test_name"]) == (bucket["probe_asn"], bucket["test_name"])
        assert {c: int(line[c]) for c in counts} == {c: bucket[c] for c in counts}


@pytest.mark.parametrize(
    ("path", "params", "status", "says"),
    [
        (MEASUREMENTS, {"probe_asn": "ASX"}, 400, "probe_asn must look like AS1234"),
        (MEASUREMENTS, {"since": "yesterday"}, 400, "since must be YYYY-MM-DD"),
        (MEASUREMENTS, {"category_code": "NEWS"}, 400, "category_code is not supported"),
        (MEASUREMENTS, {"software_version": "3.19"}, 400, "software_version is not supported"),
        (MEASUREMENTS, {"probe_asn": ",".join(str(n) for n in range(60))}, 400, "at most 50"),
        (MEASUREMENTS, {"failure": "maybe"}, 422, "failure"),
        (MEASUREMENTS, {"order": "sideways"}, 422, "order"),
        ("/api/v1/aggregation", {"axis_x": "category_code"}, 400, "category_code"),
        ("/api/v1/aggregation", {"until": "2024-02-30"}, 400, "until must be"),
        ("/api/v1/aggregation", {"time_grain": "decade"}, 422, "time_grain"),
    ],
)
def test_bad_parameters_are_named(served, path, params, status, says) -> None:
    server, _ = served
    r = get(server, path, **params)
    assert r.status_code == status, r.text
    assert says in r.text


def test_lists_are_read_only_where_asked() -> None:
    """The API reads OONI's comma lists; the explorer's forms and the CLI keep one value."""
    values = {"probe_cc": "pk,IR", "probe_asn": "9541,AS9541,17557", "domain": "X.com,t.co"}
    with pytest.raises(FilterError, match="probe_cc must be a two-letter country code"):
        parse_filters(values)
    f = parse_filters(values, lists=True)
    assert (f.probe_cc, f.probe_asn, f.domain) == (
        ("PK", "IR"),
        ("AS9541", "AS17557"),
        ("x.com", "t.co"),
    )
    m = {"probe_cc": "IR", "probe_asn": "AS17557", "input": "https://t.co/x"}
    assert measurement_matches(f, m)
    assert not measurement_matches(f, {**m, "probe_asn": "AS1"})
