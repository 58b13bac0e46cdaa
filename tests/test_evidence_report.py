"""The bundle's report.html on real OONI measurements: escaped whatever a measurement carries,
reading each measurement as the explorer's step tables read it, drawn with the explorer's
timeline, and the same bytes whatever the key order or time zone.

Expectations come from the OONI files, the explorer's step tables (``web.steps``) and the
analysis, never from the report itself.
"""

from __future__ import annotations

import copy
import html
import ipaddress
import itertools
import json
import re
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import markupsafe
import pytest

from censorwatch.analysis import analyze
from censorwatch.evidence.bundle import export_bundle, verify_bundle
from censorwatch.evidence.log import TransparencyLog
from censorwatch.evidence.report import render_report
from censorwatch.model import derive_measurement_uid
from censorwatch.web import steps

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
QA = SHARED / "ooni" / "wc05_qa"
SVG = "{http://www.w3.org/2000/svg}"
HEAD = {"root_hash": "ab" * 32, "timestamp": 1708156800000, "tree_size": 40}
MANIFEST = {"created_at": "2024-04-01T00:00:00Z", "format": "test", "log_id": "cd" * 32}
#: Every tag the report is made of: anything else came from a measurement.
REPORT_TAGS = {
    "html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "div", "strong", "code",
    "br", "table", "thead", "tbody", "tr", "th", "td", "span", "dl", "dt", "dd", "a", "svg",
    "rect", "line", "text", "circle",
}  # fmt: skip


def load(name: str) -> dict[str, Any]:
    m = json.loads((QA / f"{name}.json").read_text())
    m["measurement_uid"] = derive_measurement_uid(m)
    return m


def render(measurements: list[dict[str, Any]], event: dict[str, Any] | None = None) -> str:
    verdicts = [analyze(m).to_record() for m in measurements]
    return render_report(
        manifest=MANIFEST, event=event, measurements=measurements, verdicts=verdicts, tree_head=HEAD
    )


def sample_fields(page: str) -> list[dict[str, str]]:
    """Each sample's facts (label -> text) as a reader sees them."""
    out = []
    for block in re.findall(r'<div class="sample">(.*?)</div>', page, re.S):
        pairs = re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", block, re.S)
        out.append(
            {k: html.unescape(re.sub(r"<br>", "\n", re.sub(r"<(?!br)[^>]+>", "", v)))
             for k, v in pairs}
        )  # fmt: skip
    return out


def ips(text: str) -> set[str]:
    found = set()
    for token in re.split(r"[\s,;→\[\]]+", text):
        try:
            found.add(str(ipaddress.ip_address(token)))
        except ValueError:
            continue
    return found


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attrs: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attrs |= {name for name, _ in attrs}


HOSTILE = "<script>alert('cw')</script>"


def hostile_measurement() -> dict[str, Any]:
    m = load("tcpBlockingConnectTimeout")
    m["input"] = f"https://www.example.com/{HOSTILE}"
    m["probe_asn"] = 'AS1"><img src=x onerror=alert(1)>'
    tk = m["test_keys"]
    tk["queries"][0]["hostname"] = f"www.example.com{HOSTILE}"
    tk["queries"][0]["failure"] = f"dns_{HOSTILE}"
    tk["control"]["http_request"]["title"] = f"</title>{HOSTILE}"
    tk["tcp_connect"][0]["status"]["failure"] = f"generic_timeout_error{HOSTILE}"
    m["measurement_uid"] = derive_measurement_uid(m)
    return m


HOSTILE_EVENT = {
    "event_id": "evt_'quoted\"<b>",
    "scope": "network",
    "cc": "PK<i>",
    "asns": ["AS1<u>"],
    "target": HOSTILE,
    "methods": [HOSTILE],
    "onset": {"after": None, "before": "2024-02-17T08:00:00Z"},
    "end": None,
    "status": "ongoing",
    "confidence": 0.5,
    "measurements": {"blocked": 1},
    "evidence": [],
}


def test_hostile_content_comes_out_escaped(shared_data) -> None:
    page = render([hostile_measurement(), load("successWithHTTPS")], HOSTILE_EVENT)
    parsed = Tags()
    parsed.feed(page)
    assert parsed.tags <= REPORT_TAGS, parsed.tags - REPORT_TAGS
    assert not any(a.startswith("on") for a in parsed.attrs)
    assert "<script" not in page and "<img" not in page and "<b>" not in page
    # Escaped, not dropped: the reader sees exactly what the measurement carried.
    escaped = str(markupsafe.escape(HOSTILE))
    assert page.count(escaped) >= 5
    facts = sample_fields(page)[0]
    assert f"dns_{HOSTILE}" in facts["Step that failed"]
    assert f"generic_timeout_error{HOSTILE}" in facts["Step that failed"]
    assert f"“</title>{HOSTILE}”" in facts["What the control saw"]
    # The timeline inside is well-formed XML whatever its labels and tooltips say.
    svg = page[page.index("<svg") : page.index("</svg>") + 6]
    root = ElementTree.fromstring(svg)
    labels = [t.find(f"{SVG}title").text for t in root.iter(f"{SVG}text") if t.get("class")
              == "row-label"]  # fmt: skip
    assert 'AS1"><img src=x onerror=alert(1)>' in labels


def test_a_hostile_bundle_verifies_and_its_report_rerenders(tmp_path: Path, shared_data) -> None:
    measurements = [hostile_measurement(), load("dnsBlockingNXDOMAIN")]
    event = {**HOSTILE_EVENT, "evidence": [measurements[0]["measurement_uid"]]}
    with TransparencyLog(tmp_path / "log") as log:
        for m in measurements:
            log.append(m["measurement_uid"], m)
        export_bundle(tmp_path / "b.zip", log=log, measurements=measurements, event=event)
    result = verify_bundle(tmp_path / "b.zip")
    assert result.ok, result.problems
    assert result.report_rerendered


FAILING_SCENARIOS = [
    "dnsBlockingNXDOMAIN",
    "dnsBlockingBOGON",
    "tcpBlockingConnectTimeout",
    "tlsBlockingConnectionResetWithConsistentDNS",
    "httpBlockingConnectionReset",
    "redirectWithConsistentDNSAndThenConnectionRefusedForHTTPS",
    "redirectWithConsistentDNSAndThenNXDOMAIN",
    "dnsHijackingToProxyWithHTTPSURL",
    "controlFailureWithSuccessfulHTTPSWebsite",
    "idnaWithoutCensorshipWithFirstLetterUppercase",
]


@pytest.mark.parametrize("name", FAILING_SCENARIOS)
def test_the_report_names_the_steps_and_addresses_the_explorer_shows(shared_data, name) -> None:
    m = load(name)
    table = steps.steps(m)
    facts = sample_fields(render([m]))
    assert len(facts) == 1
    failed, dns, control = (
        facts[0]["Step that failed"],
        facts[0]["What DNS answered"],
        facts[0]["What the control saw"],
    )
    for row in table.tcp:
        if row["failure"]:
            ip, port = row["ip"], row["port"]
            where = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
            assert f"TCP connect to {where}" in failed and row["failure"] in failed
    for row in table.tls:
        if row["failure"] and not row["probe"]:
            assert f"TLS handshake with {row['address']}" in failed and row["failure"] in failed
    for row in table.http:
        if row["failure"]:
            assert f"HTTP request {row['url']}: {row['failure']}" in failed
    answered_somewhere = {q["hostname"].lower() for q in table.dns if q["answers"]}
    for row in table.dns:
        if row["failure"] and not row["failure"].startswith("dns_no_answer"):
            assert f"DNS lookup of {row['hostname'].lower()} via" in failed
            assert row["failure"] in failed
        elif row["failure"] and row["hostname"].lower() in answered_somewhere:
            assert row["failure"] not in failed  # "no AAAA record" beside an A answer
    # The same addresses as the explorer's comparison row, for the probe and for the control.
    what, probe_side, control_side = table.compare[0] if table.compare else ("", "", "")
    if what == "DNS addresses":
        assert ips(dns) == ips(probe_side)
        assert ips(control) == ips(control_side)
    if table.control_failure:
        assert table.control_failure in control
    if not any(r["failure"] for r in table.tcp + table.tls + table.http + table.dns):
        assert failed != "no step failed" or analyze(m).verdict == "ok"


def test_no_answer_is_a_failed_step_only_when_nothing_else_answered(shared_data) -> None:
    m = load("dnsBlockingNXDOMAIN")
    for q in m["test_keys"]["queries"]:
        q["answers"], q["failure"] = None, "dns_no_answer"
    m["measurement_uid"] = derive_measurement_uid(m)
    failed = sample_fields(render([m]))[0]["Step that failed"]
    engines = {q["engine"] for q in m["test_keys"]["queries"]}
    assert all(f"via {e}" in failed or f"via {e} (system)" in failed for e in engines)
    assert "dns_no_answer" in failed


def reverse_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: reverse_keys(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reverse_keys(v) for v in value]
    return value


def test_the_same_contents_give_the_same_bytes_in_any_key_order_and_time_zone(
    shared_data, monkeypatch: pytest.MonkeyPatch
) -> None:
    measurements = [load(n) for n in FAILING_SCENARIOS]
    for i, m in enumerate(measurements):
        m["probe_asn"] = ["AS9541", "AS17557", "AS135407"][i % 3]
        m["measurement_start_time"] = f"2024-02-17 {6 + i:02d}:{7 * i % 60:02d}:00"
    verdicts = [analyze(m).to_record() for m in measurements]
    event = {**HOSTILE_EVENT, "onset": {"after": "2024-02-17T07:00:00Z",
                                        "before": "2024-02-17T08:00:00Z"}}  # fmt: skip

    def page(ms: list[dict], vs: list[dict], ev: dict) -> str:
        return render_report(
            manifest=MANIFEST, event=ev, measurements=ms, verdicts=vs, tree_head=HEAD
        )

    first = page(measurements, verdicts, event)
    assert first == page(copy.deepcopy(measurements), copy.deepcopy(verdicts), dict(event))
    shuffled = page(reverse_keys(measurements), reverse_keys(verdicts), reverse_keys(event))
    assert shuffled == first
    with monkeypatch.context() as patch:
        patch.setenv("TZ", "Asia/Karachi")
        time.tzset()
        try:
            assert page(measurements, verdicts, event) == first
        finally:
            patch.undo()
            time.tzset()


def test_the_timeline_is_the_explorers_with_one_dot_per_measurement(shared_data) -> None:
    networks = ["AS9541", "AS17557", "AS135407"]
    measurements = []
    for i, name in enumerate(FAILING_SCENARIOS):
        m = load(name)
        m["probe_asn"] = networks[i % 3]
        m["measurement_start_time"] = f"2024-02-17 {6 + i:02d}:00:00"
        m["measurement_uid"] = derive_measurement_uid(m)
        measurements.append(m)
    verdicts = {m["measurement_uid"]: analyze(m).verdict for m in measurements}
    page = render(measurements)
    root = ElementTree.fromstring(page[page.index("<svg") : page.index("</svg>") + 6])
    assert root.get("class") == "timeline"  # the explorer's renderer and its classes
    labels = [
        t.find(f"{SVG}title").text for t in root.iter(f"{SVG}text") if t.get("class") == "row-label"
    ]
    assert labels == networks  # one row per network, in AS-number order
    rows = [
        float(line.get("y1")) for line in root.iter(f"{SVG}line") if line.get("class") == "row-rule"
    ]
    assert len(rows) == 3
    marks = [(a.get("href"), a.find(f"{SVG}circle")) for a in root.iter(f"{SVG}a")]
    assert len(marks) == len(measurements)
    xs = []
    in_rows = sorted(
        measurements, key=lambda m: (networks.index(m["probe_asn"]), m["measurement_start_time"])
    )
    for (href, circle), m in zip(marks, in_rows, strict=True):
        uid = m["measurement_uid"]
        assert href == f"#m-{uid}" and f'<tbody id="m-{uid}">' in page
        assert circle.get("class") == f"mark v-{verdicts[uid]}"
        assert float(circle.get("cy")) == rows[networks.index(m["probe_asn"])]
        xs.append((m["measurement_start_time"], float(circle.get("cx"))))
    # Left to right in time, evenly: the measurements are one hour apart.
    xs.sort()
    gaps = [b[1] - a[1] for a, b in itertools.pairwise(xs)]
    assert all(g > 0 for g in gaps) and max(gaps) - min(gaps) < 0.3


def test_the_report_states_what_still_gets_through_per_network(shared_data) -> None:
    """An event detected by the events stage from real analysed measurements that carry the
    probe's attempts: the report gives its sentence and, per network, each technique's count."""
    from censorwatch.events import EventTracker

    base = load("tlsBlockingConnectionResetWithConsistentDNS")
    title = base["test_keys"]["control"]["http_request"]["title"]
    page_ok = {"status_code": 200, "title": title, "certificate_valid": True}
    tried = {
        "AS9541": [{"technique": "no_sni", **page_ok, "certificate_valid": False},
                   {"technique": "udp:9.9.9.9:53", "failure": "connection_reset"}],
        "AS17557": [{"technique": "no_sni", "failure": "connection_reset"},
                    {"technique": "http3", **page_ok}],
    }  # fmt: skip
    measurements = []
    for rnd in range(3):
        for asn, steps_tried in tried.items():
            m = copy.deepcopy(base)
            m.update(probe_asn=asn, report_id=f"r-{asn}-{rnd}", probe_cc="PK")
            m["measurement_start_time"] = f"2024-02-17 {6 + rnd:02d}:00:00"
            m["test_keys"]["x_workarounds"] = steps_tried
            m["measurement_uid"] = derive_measurement_uid(m)
            measurements.append(m)
    verdicts = [analyze(m).to_record() for m in measurements]
    assert all(v["verdict"] == "blocked" and v["workarounds"] for v in verdicts)
    tracker = EventTracker(platforms=[])
    tracker.update(verdicts)
    (event,) = [e.to_record() for e in tracker.events() if e.scope == "national"]
    page = render_report(
        manifest=MANIFEST, event=event, measurements=measurements, verdicts=verdicts, tree_head=HEAD
    )
    section = page[page.index("<h2>What still gets through</h2>") :]
    section = section[: section.index("</table>")]
    assert html.escape(event["workarounds_summary"]) in section
    rows = {
        re.findall(r"<td>([^<]*)</td>", r)[0]: re.findall(r"<td>([^<]*)</td>", r)[1:]
        for r in re.findall(r"<tr><td>.*?</tr>", section)
    }
    columns = re.findall(r"<th>([^<]*)</th>", section)[1:]
    assert columns == ["another UDP resolver", "TLS without SNI", "HTTP/3 (QUIC)"]
    assert rows == {
        "AS9541": ["fails (3 of 3 measurements)", "works (3 of 3 measurements)", "not tried"],
        "AS17557": ["not tried", "fails (3 of 3 measurements)", "works (3 of 3 measurements)"],
    }
    # An event from before the counts existed has no such section.
    bare = {k: v for k, v in event.items() if not k.startswith("workarounds")}
    assert "What still gets through" not in render_report(
        manifest=MANIFEST, event=bare, measurements=measurements, verdicts=verdicts, tree_head=HEAD
    )
