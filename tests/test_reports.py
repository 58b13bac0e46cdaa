"""People's reports: the API and the form, the limits, the surge that reorders check-in, the
counts beside the verdicts, the events' counts, and that nothing kept identifies a reporter.

The collector runs for real (a DuckDB store, its archive, the ASGI app; a ``censorwatch serve``
child process on loopback for the privacy scan), and looks connections up in a MaxMind-format
database written with mmdb-writer, as check-in does.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from starlette.testclient import TestClient

from censorwatch.app.asgi import create_app
from censorwatch.collector.client_address import trusted_proxies
from censorwatch.collector.people_reports import (
    MAX_NOTE_BYTES,
    MAX_REPORT_BYTES,
    PeopleReports,
    ReportPolicy,
)
from censorwatch.collector.ratelimit import Rate, SourceKeys, TokenBuckets
from censorwatch.collector.service import Collector
from censorwatch.events.records import with_reports
from censorwatch.events.stored import StoredEvents
from censorwatch.evidence.report import report_page
from censorwatch.geo import ip_database
from censorwatch.model import Bracket, Event
from censorwatch.store import open_store
from censorwatch.store.base import REPORT_FAILURES, Filters, PeopleReport
from censorwatch.targets import profiles
from censorwatch.testbed.geodb import write_mmdb
from collector_helpers import Server, make_measurement

NET_A, NET_B, NET_C = "198.51.100.0/25", "198.51.100.128/25", "203.0.113.0/24"
PLAN = {
    "networks": [
        {"prefix": NET_A, "asn": 64500, "as_org_name": "Net A", "cc": "PK"},
        {"prefix": NET_B, "asn": 64501, "as_org_name": "Net B", "cc": "PK"},
        {"prefix": NET_C, "asn": 64502, "as_org_name": "Net C", "cc": "IR"},
        # Loopback ranges for the server on loopback (the privacy scan).
        {"prefix": "127.20.0.0/16", "asn": 64510, "as_org_name": "Loop A", "cc": "PK"},
        {"prefix": "127.30.0.0/16", "asn": 64511, "as_org_name": "Loop B", "cc": "PK"},
    ]
}
X_URLS = [t.url for t in profiles.load("x")]


def on(prefix: str, host: int) -> str:
    return str(ipaddress.ip_network(prefix)[host])


@dataclass
class Collecting:
    app: Any
    store: Any
    collector: Collector

    def client(self, address: str, **kw: Any) -> TestClient:
        return TestClient(self.app, client=(address, 40000), **kw)

    def report(self, address: str, **fields: Any) -> httpx.Response:
        body = {"target": "x", "failure": "does not load", **fields}
        return self.client(address).post("/api/v1/reports", json=body)

    def check_in(self, address: str) -> list[str]:
        answer = self.client(address).post("/api/v1/check-in", json={"software_name": "t"})
        assert answer.status_code == 200, answer.text
        return [u["url"] for u in answer.json()["tests"]["web_connectivity"]["urls"]]


@pytest.fixture(scope="module")
def geo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mmdb(PLAN, tmp_path_factory.mktemp("geo") / "plan-ip2country_as.mmdb")


def collecting(tmp: Path, geo_db: Path, policy: ReportPolicy | None = None) -> Collecting:
    store = open_store(tmp / "cw.duckdb")
    collector = Collector.open(tmp / "archive", store)
    app = create_app(collector.pipeline, collector, report_policy=policy)
    app.state.ip_database = ip_database(geo_db)
    return Collecting(app, store, collector)


@pytest.fixture
def served(tmp_path: Path, geo_db: Path) -> Iterator[Collecting]:
    c = collecting(
        tmp_path, geo_db, ReportPolicy(per_source=Rate(50, 60), per_network=Rate(500, 1))
    )
    try:
        yield c
    finally:
        c.store.close()


# -- the surge reorders one network's check-in list --------------------------------------------


def test_a_burst_from_one_network_reorders_that_networks_checkin_list_only(
    served: Collecting,
) -> None:
    a, b = on(NET_A, 10), on(NET_B, 10)
    before_a, before_b = served.check_in(a), served.check_in(b)
    assert before_a == before_b and before_a[: len(X_URLS)] != X_URLS  # x is not first today
    for host in range(1, 5):  # 4 reports from 4 sources: below the 5 reports of a surge
        assert served.report(on(NET_A, host)).status_code == 201
    assert served.check_in(a) == before_a
    assert served.report(on(NET_A, 5)).status_code == 201  # the fifth: a surge
    after_a = served.check_in(a)
    assert after_a[: len(X_URLS)] == X_URLS
    assert sorted(after_a) == sorted(before_a)  # reordered, nothing added or lost
    assert served.check_in(b) == before_b  # the other network is untouched
    assert served.check_in(on(NET_C, 3)) == [u for u in before_b]  # nor another country's

    # A URL no list holds goes to the head too, before x once it is reported more.
    for host in range(20, 27):
        served.report(on(NET_A, host), target="https://News.Example/front#top")
    head = served.check_in(a)
    assert head[0] == "https://news.example/front" and head[1 : 1 + len(X_URLS)] == X_URLS


def test_many_reports_from_one_source_are_no_surge(served: Collecting) -> None:
    for _ in range(12):
        assert served.report(on(NET_A, 7)).status_code == 201
    assert served.check_in(on(NET_A, 8))[: len(X_URLS)] != X_URLS
    for host in (1, 2):  # two more sources make three
        served.report(on(NET_A, host))
    assert served.check_in(on(NET_A, 8))[: len(X_URLS)] == X_URLS


def test_a_surge_must_rise_above_the_networks_baseline(served: Collecting) -> None:
    now = datetime.now(UTC).replace(tzinfo=None, minute=0, second=0, microsecond=0)
    # Two reports an hour for the 7 days before: a baseline of 2/h, so a surge needs 3 × 2.
    history = [
        PeopleReport(now - timedelta(hours=h), "PK", "AS64500", "x", "does not load")
        for h in range(2, 7 * 24)
        for _ in range(2)
    ]
    served.store.add_people_reports(history)
    for host in range(1, 6):
        served.report(on(NET_A, host))
    assert served.check_in(on(NET_A, 9))[: len(X_URLS)] != X_URLS  # 5 < 6: the usual level
    served.report(on(NET_A, 6))
    assert served.check_in(on(NET_A, 9))[: len(X_URLS)] == X_URLS


# -- limits -------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_rate_limit_holds_per_source_and_per_network(tmp_path: Path, geo_db: Path) -> None:
    policy = ReportPolicy(per_source=Rate(3, 600), per_network=Rate(5, 120))
    c = collecting(tmp_path, geo_db, policy)
    clock = Clock()
    c.app.state.people_reports = PeopleReports(c.store, policy, clock=clock)
    try:
        codes = [c.report(on(NET_A, 1)).status_code for _ in range(3)]
        refused = c.report(on(NET_A, 1))
        assert codes == [201] * 3 and refused.status_code == 429
        assert refused.json()["error"] == "too many reports from this source; try again later"
        assert 1 <= int(refused.headers["retry-after"]) <= 600
        assert c.report(on(NET_A, 2)).status_code == 201
        assert c.report(on(NET_A, 3)).status_code == 201  # the network's fifth
        by_network = c.report(on(NET_A, 4))  # a fresh source, but its network has none left
        assert by_network.status_code == 429 and "network" in by_network.json()["error"]
        assert c.report(on(NET_B, 4)).status_code == 201  # another network is not held up
        form = c.client(on(NET_A, 5)).post(
            "/api/v1/reports", data={"target": "x", "failure": "other"}, follow_redirects=False
        )
        assert form.status_code == 429 and "text/html" in form.headers["content-type"]
        assert len(c.store.people_reports(limit=100)) == 6  # what was accepted, no more
        clock.now += 120  # one of the network's tokens back
        assert c.report(on(NET_A, 4)).status_code == 201
        assert c.report(on(NET_A, 5)).status_code == 429
    finally:
        c.store.close()


def test_buckets_are_bounded_and_forgotten_once_full() -> None:
    buckets = TokenBuckets(Rate(2, 10), max_keys=100)
    for i in range(1000):
        assert buckets.wait(f"k{i}", 0.0) == 0.0
        buckets.take(f"k{i}", 0.0)
    assert len(buckets) == 100
    buckets.take("k999", 0.0)
    assert buckets.wait("k999", 0.0) == pytest.approx(10.0)  # empty: one token in 10 s
    buckets.take("fresh", 20.0)  # everything older than a full refill (20 s) is dropped
    assert len(buckets) == 1
    keys = SourceKeys()
    assert keys.of("2001:db8:1:2::5") == keys.of("2001:db8:1:2:ffff::9")  # one /64
    assert keys.of("2001:db8:1:3::5") != keys.of("2001:db8:1:2::5")
    assert keys.of("::ffff:198.51.100.7") == keys.of("198.51.100.7")
    assert SourceKeys().of("198.51.100.7") != keys.of("198.51.100.7")  # a key per process


# -- bad input -----------------------------------------------------------------------------------

BAD = [
    ({"json": {"target": "x", "failure": "broken"}}, 400, "failure must be one of"),
    ({"json": {"target": 5, "failure": "other"}}, 400, "target must be"),
    ({"json": {"target": "x", "failure": ["other"]}}, 400, "failure must be one of"),
    ({"json": {"target": "x", "failure": "other", "note": {"a": 1}}}, 400, "note must be text"),
    ({"json": {"target": "myspace", "failure": "other"}}, 400, "platform name"),
    ({"json": {"target": "ftp://x.com/", "failure": "other"}}, 400, "http"),
    ({"json": {"target": "https://u:p@x.com/", "failure": "other"}}, 400, "user name"),
    ({"json": {"target": "x", "failure": "other", "email": "a@b"}}, 400, "unknown fields"),
    ({"json": {"target": "x", "failure": "other", "note": "é" * 501}}, 400, "1000 bytes"),
    ({"json": {"target": "x", "failure": "other", "note": "a\x00b"}}, 400, "control"),
    ({"json": ["x", "other"]}, 400, "JSON object"),
    ({"content": b'{"target": "x",', "headers": {"content-type": "application/json"}}, 400,
     "not valid JSON"),
    ({"content": b'{"target": "\xff"}', "headers": {"content-type": "application/json"}}, 400,
     "not UTF-8"),
    ({"content": b"target=x", "headers": {"content-type": "text/plain"}}, 415, "send JSON"),
    ({"content": b"[" * 4000 + b"]" * 4000, "headers": {"content-type": "application/json"}},
     400, "nests too deep"),
    ({"json": {"target": "https://x.com/a b", "failure": "other"}}, 400, "control characters"),
    ({"data": {"target": "x", "failure": "nope"}}, 400, "failure must be one of"),
    ({"content": b"target=x&target=y&failure=other",
      "headers": {"content-type": "application/x-www-form-urlencoded"}}, 400, "once"),
    ({"json": {"target": "x", "failure": "other", "note": "n" * MAX_REPORT_BYTES}}, 413,
     "larger than"),
]  # fmt: skip


@pytest.mark.parametrize(("request_kw", "status", "message"), BAD)
def test_bad_input_gets_a_clear_4xx_and_stores_nothing(
    served: Collecting, request_kw: dict[str, Any], status: int, message: str
) -> None:
    answer = served.client(on(NET_A, 1)).post("/api/v1/reports", **request_kw)
    assert answer.status_code == status
    assert message in answer.text
    assert served.store.people_reports() == [] and served.store.people_report_counts() == []


def test_a_note_of_exactly_the_limit_is_kept(served: Collecting) -> None:
    note = "é" * (MAX_NOTE_BYTES // 2)
    assert served.report(on(NET_A, 1), note=note, failure=REPORT_FAILURES[2]).status_code == 201
    assert served.store.people_reports()[0].note == note


def test_a_read_only_server_takes_no_reports(tmp_path: Path) -> None:
    from censorwatch.collector.archive import Archive
    from censorwatch.collector.pipeline import Pipeline

    store = open_store(tmp_path / "cw.duckdb")
    try:
        app = create_app(Pipeline(Archive(tmp_path / "archive"), store))
        answer = TestClient(app).post("/api/v1/reports", json={"target": "x", "failure": "other"})
        assert answer.status_code == 503 and store.people_reports() == []
    finally:
        store.close()


# -- the form and the explorer --------------------------------------------------------------------


def commit(c: Collecting, measurements: list[dict[str, Any]]) -> list[Any]:
    pipeline = c.collector.pipeline
    return pipeline.commit([pipeline.prepare(m) for m in measurements])


def x_measurement(i: int, asn: str = "AS64500") -> dict[str, Any]:
    m = make_measurement(i, probe_asn=asn, when=datetime.now(UTC) - timedelta(minutes=30 - i))
    m["input"] = "https://x.com/"
    return m


def test_the_form_posts_without_script_or_cookie_and_markup_is_shown_as_text(
    served: Collecting,
) -> None:
    commit(served, [x_measurement(1)])
    browser = served.client(on(NET_A, 40))
    page = browser.get("/explorer/report")
    assert page.status_code == 200 and "set-cookie" not in page.headers
    html = page.text
    assert '<form class="report" method="post" action="/api/v1/reports"' in html
    for word in REPORT_FAILURES:
        assert f'value="{word}"' in html
    sent = browser.post(
        "/api/v1/reports",
        data={"target": "x", "failure": "loads a warning page",
              "note": "<script>alert('hi')</script><b>bold</b>\r\nline two"},
        follow_redirects=False,
    )  # fmt: skip
    assert sent.status_code == 303 and sent.headers["location"] == "/explorer/report?sent=1"
    assert "set-cookie" not in sent.headers
    assert "Thank you" in browser.get(sent.headers["location"]).text
    served.report(on(NET_A, 41), target="https://x.com/<img/src=x/onerror=alert(1)>")

    network = browser.get("/explorer/networks/AS64500").text
    assert "People's reports from this network" in network
    assert "&lt;script&gt;alert(&#39;hi&#39;)&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt;" in network
    assert "<script>alert" not in network and "<b>bold" not in network
    assert "&lt;img/src=x/onerror=alert(1)&gt;" in network and "<img/src" not in network
    assert "loads a warning page 1" in network
    row = network.split("X (Twitter)", 1)[1].split("</tr>", 1)[0]
    verdict = served.store.rows(Filters(), limit=1, offset=0)[0].verdict
    assert f"latest {verdict} (1 host)" in row or "blocked on" in row


# -- beside the verdicts, and never a verdict ------------------------------------------------------


def test_reports_are_counted_beside_verdicts_and_never_make_one_blocked(
    served: Collecting,
) -> None:
    served.collector.pipeline.events = StoredEvents.open(served.store)
    commit(served, [x_measurement(i) for i in range(3)] + [x_measurement(9, "AS64501")])
    verdicts = [r.verdict for r in served.store.scan(Filters())]
    assert verdicts and "blocked" not in verdicts  # the guard: the measurements say reachable
    for host in range(1, 9):
        served.report(on(NET_A, host), failure="does not load")
    served.report(on(NET_A, 30), target="https://x.com/i/flow")
    served.report(on(NET_B, 30), target="telegram")
    api = served.client(on(NET_C, 1))
    buckets = api.get("/api/v1/aggregation", params={"axis_x": "probe_asn"}).json()["result"]
    by_asn = {b["probe_asn"]: b for b in buckets}
    assert by_asn["AS64500"]["report_count"] == 9 and by_asn["AS64501"]["report_count"] == 1
    assert all(b["blocked_count"] == 0 for b in buckets)
    by_domain = api.get(
        "/api/v1/aggregation", params={"axis_x": "probe_asn", "axis_y": "domain"}
    ).json()["result"]
    assert {(b["probe_asn"], b["domain"]): b["report_count"] for b in by_domain} == {
        ("AS64500", "x.com"): 9,  # x's platform reports and the x.com URL report
        ("AS64501", "x.com"): 0,  # telegram's report is not about x.com
    }
    by_method = api.get("/api/v1/aggregation", params={"axis_x": "method"}).json()["result"]
    assert all("report_count" not in b for b in by_method)  # reports have no method
    as_csv = api.get("/api/v1/aggregation", params={"axis_x": "probe_asn", "format": "CSV"})
    table = {r["probe_asn"]: r for r in csv.DictReader(io.StringIO(as_csv.text))}
    assert {asn: row["report_count"] for asn, row in table.items()} == {
        "AS64500": "9",
        "AS64501": "1",
    }
    method_csv = api.get("/api/v1/aggregation", params={"axis_x": "method", "format": "CSV"})
    assert "report_count" not in method_csv.text.splitlines()[0]
    counts = api.get("/api/v1/reports", params={"probe_asn": "AS64500"}).json()["results"]
    assert sum(c["reports"] for c in counts) == 9 and {c["probe_cc"] for c in counts} == {"PK"}
    events = api.get("/api/v1/events").json()["results"]
    assert events == []  # reports alone never open an event
    after = [r.verdict for r in served.store.scan(Filters())]
    assert after == verdicts


def _event(**over: Any) -> Event:
    fields: dict[str, Any] = dict(
        event_id="evt_test",
        scope="network",
        cc="PK",
        asns=["AS64500"],
        target="x.com",
        methods=["tls.reset"],
        onset=Bracket("2024-02-17T06:20:00Z", "2024-02-17T09:10:00Z"),
        end=None,
        status="ongoing",
        confidence=0.9,
        measurements={"blocked": 4},
        evidence=["u1"],
    )
    fields.update(over)
    return Event(**fields)


def test_events_say_how_many_reports_preceded_and_accompanied_the_onset(tmp_path: Path) -> None:
    store = open_store(tmp_path / "cw.duckdb")

    def at(hour: str, asn: str = "AS64500", target: str = "x") -> PeopleReport:
        return PeopleReport(datetime.fromisoformat(hour), "PK", asn, target, "does not load")

    store.add_people_reports(
        [
            at("2024-02-16T05:00"),  # more than 24 h before the bracket opens: not counted
            at("2024-02-16T06:00"),  # 24 h before: preceded
            at("2024-02-17T05:00", target="https://x.com/home"),  # a URL of x.com: preceded
            at("2024-02-17T06:00"),  # the hour the bracket opens in: accompanied
            at("2024-02-17T09:00", target="https://x.com/"),  # accompanied
            at("2024-02-17T10:00"),  # after the onset: not counted
            at("2024-02-17T07:00", asn="AS64501"),  # another network
            at("2024-02-17T07:00", target="telegram"),  # another platform
            at("2024-02-17T07:00", target="https://twitter.example/"),  # another host
        ]
    )
    try:
        host_event, platform_event, quiet = with_reports(
            [
                _event(),
                _event(event_id="evt_p", target="x"),
                _event(event_id="evt_q", cc="IR", onset=Bracket(None, "2024-02-17T09:10:00Z")),
            ],
            store,
        )
    finally:
        store.close()
    assert host_event.reports == {"before_onset_24h": 2, "during_onset": 2}
    assert platform_event.reports == {"before_onset_24h": 2, "during_onset": 2}
    assert "reports" not in quiet.to_record()  # none: absent, never a zero
    page = report_page(
        manifest={}, event=host_event.to_record(), measurements=[], verdicts=[], tree_head={}
    )
    extra = next(x for x in page.extras if x.heading == "People's reports")
    assert extra.lines[0].startswith("2 reports from people on these networks in the 24 hours")
    assert "2 while it was measured" in extra.lines[0] and "never evidence" in extra.lines[1]


# -- where the address comes from, and where it goes (nowhere) ------------------------------------


def test_forwarded_for_is_believed_only_from_a_named_proxy(served: Collecting) -> None:
    proxy = "10.1.2.3"
    told = {"x-forwarded-for": f"{on(NET_C, 9)}, {proxy}"}
    sent = served.client(proxy).post(
        "/api/v1/reports", json={"target": "x", "failure": "other"}, headers=told
    )
    assert sent.json()["probe_asn"] == "AS0"  # not a named proxy: the header is ignored
    served.app.state.trusted_proxies = trusted_proxies("10.0.0.0/8")
    sent = served.client(proxy).post(
        "/api/v1/reports", json={"target": "x", "failure": "other"}, headers=told
    )
    assert (sent.json()["probe_asn"], sent.json()["probe_cc"]) == ("AS64502", "IR")
    with pytest.raises(ValueError, match="CENSORWATCH_TRUSTED_PROXIES"):
        trusted_proxies("10.0.0.0/8, not-a-range")


def _address_forms(address: str) -> list[bytes]:
    packed = socket.inet_aton(address)
    return [address.encode(), packed, packed[::-1], str(int.from_bytes(packed, "big")).encode()]


def _scan(root: Path, needles: list[bytes]) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path}: {n!r}" for n in needles if n in data]
    return found


@pytest.mark.slow
def test_nothing_kept_or_logged_identifies_the_reporter(tmp_path: Path, geo_db: Path) -> None:
    """A real ``censorwatch serve`` on loopback; reports from 127.20.5.77 (and a spoofed
    X-Forwarded-For); then every byte the server wrote and logged is searched for them."""
    reporter, spoofed, agent = "127.20.5.77", on(NET_C, 77), "cw-reporter-agent/9.9"
    data = tmp_path / "data"
    data.mkdir()
    os.environ["CENSORWATCH_ASN_DB"] = str(geo_db)
    try:
        server = Server(data / "cw.duckdb", data / "archive", tmp_path / "server.log",
                        "--asn-db", str(geo_db))  # fmt: skip
    finally:
        del os.environ["CENSORWATCH_ASN_DB"]
    try:
        transport = httpx.HTTPTransport(local_address=reporter)
        with httpx.Client(base_url=server.url, transport=transport, timeout=10) as client:
            headers = {"user-agent": agent, "x-forwarded-for": spoofed}
            answers = [
                client.post("/api/v1/reports", headers=headers,
                            json={"target": "x", "failure": "does not load", "note": "gone"}),
                client.post("/api/v1/reports", headers=headers,
                            data={"target": "https://x.com/", "failure": "very slow"}),
                client.post("/api/v1/reports", headers=headers, json={"target": 1}),
                client.post("/api/v1/check-in", headers=headers, json={}),
                client.get("/explorer/report", headers=headers),
                client.get("/api/v1/reports", headers=headers),
            ]  # fmt: skip
    finally:
        server.stop()
    assert [a.status_code for a in answers] == [201, 303, 400, 200, 200, 200]
    assert answers[0].json()["probe_asn"] == "AS64510"  # the connection's, not the header's
    assert answers[3].json()["probe_asn"] == "AS64510"
    for answer in answers:
        assert reporter not in answer.text and spoofed not in answer.text
    con = duckdb.connect(str(data / "cw.duckdb"), read_only=True)
    try:
        rows = con.execute("SELECT * FROM people_reports ORDER BY target").fetchall()
        listed = con.execute("SELECT table_name FROM information_schema.tables").fetchall()
        tables = [r[0] for r in listed]
        dump = repr([con.execute(f'SELECT * FROM "{t}"').fetchall() for t in tables])
    finally:
        con.close()
    assert [(r[1], r[2], r[3], r[4], r[5]) for r in rows] == [
        ("PK", "AS64510", "https://x.com/", "very slow", None),
        ("PK", "AS64510", "x", "does not load", "gone"),
    ]
    assert all(r[0].minute == 0 and r[0].second == 0 for r in rows)  # the hour, no more
    assert reporter not in dump and spoofed not in dump and agent not in dump
    needles = [*_address_forms(reporter), *_address_forms(spoofed), agent.encode()]
    assert _scan(data, needles) == []
    log = (tmp_path / "server.log").read_bytes()
    assert log and all(n not in log for n in needles), log[-2000:]
