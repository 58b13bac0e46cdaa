"""The explorer's pages over a real store, fetched from a real server on loopback.

Expectations come from the JSON API of the same server, from the OONI files and from the
synthetic block's schedule (``web_helpers.blocked_at``), never from the pages themselves.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from censorwatch.web.views import show_time
from web_helpers import (
    CC,
    HOSTS,
    NETWORKS,
    OONI,
    ROUNDS,
    SCRIPT_INPUT,
    Served,
    blocked_at,
    check_series_analysis,
    serve_store,
)

pytestmark = pytest.mark.skipif(not OONI.is_dir(), reason=f"OONI data not found at {OONI}")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    check_series_analysis()
    yield from serve_store(tmp_path_factory.mktemp("web"))


def get(served: Served, path: str, **params: Any) -> httpx.Response:
    # httpx replaces a query already in ``path`` with ``params``: pass them only when given.
    return httpx.get(served.url + path, params=params or None, timeout=30)


def api_events(served: Served, **params: Any) -> list[dict[str, Any]]:
    return get(served, "/api/v1/events", **params).json()["results"]


def x_national(served: Served) -> dict[str, Any]:
    found = [e for e in api_events(served, scope="national") if e["target"] == "x"]
    assert len(found) == 1
    return found[0]


def marks(page: str) -> list[tuple[str, str]]:
    """(measurement_uid, verdict) of every mark of a timeline."""
    return re.findall(r'<a href="/explorer/measurements/([^"]+)"><rect class="mark v-(\w+)"', page)


def test_root_redirects_and_overview_leads_with_the_national_block(served: Served) -> None:
    r = get(served, "/")
    assert r.status_code in (302, 307) and r.headers["location"] == "/explorer"
    page = get(served, "/explorer")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    text = page.text
    event = x_national(served)
    blocking = sum(blocked_at(a, 8) for a in NETWORKS)
    headline = f"X (Twitter) blocked in PK on {blocking} of {len(NETWORKS)} networks measured"
    assert headline in text
    # Every event is reachable from the overview: on its own line or as a detail of one.
    assert all(f"/explorer/events/{e['event_id']}" in text for e in api_events(served))
    assert "methods http.reset" in text
    assert f"since {show_time(event['onset']['before'], seconds=False)}, ongoing" in text
    # Nothing is fetched from another site.
    assert not re.search(r'(src|href)="(https?:)?//', text)


def test_overview_matrix_shows_latest_verdict_per_network(served: Served) -> None:
    text = get(served, "/explorer").text
    table = text[text.index('<table class="matrix">') :]
    for asn in NETWORKS:
        row = re.search(rf">{asn}</a></td>(.*?)</tr>", table, re.S)
        assert row, asn
        first_cell = re.search(
            r'<td class="cell v-(\w+)"[^>]*>\s*<a href="[^"]+">([^<]+)</a>', row[1]
        )
        assert first_cell, asn
        last = ROUNDS - 1
        if blocked_at(asn, last):
            assert first_cell.groups() == ("blocked", f"{len(HOSTS)}/{len(HOSTS)} blocked")
        else:
            assert first_cell.groups() == ("ok", f"ok ({len(HOSTS)})")
    assert ">AS197207</a>" in table  # the QA measurements' second country


def test_overview_of_one_country_keeps_its_networks_and_events_only(served: Served) -> None:
    text = get(served, "/explorer?probe_cc=pk").text
    table = text[text.index('<table class="matrix">') :]
    assert all(f">{asn}</a></td>" in table for asn in NETWORKS)
    assert ">AS197207</a>" not in table
    assert all(
        f"/explorer/events/{e['event_id']}" in text for e in api_events(served) if e["cc"] == "PK"
    )
    assert 'href="/explorer?probe_cc=PK"' in get(served, "/explorer").text
    bad = get(served, "/explorer?probe_cc=Pakistan")
    assert bad.status_code == 400 and "two-letter country code" in bad.text


def test_event_page_brackets_timeline_and_evidence(served: Served) -> None:
    event = x_national(served)
    page = get(served, f"/explorer/events/{event['event_id']}")
    assert page.status_code == 200
    text = page.text
    assert (
        show_time(event["onset"]["before"]) in text and show_time(event["onset"]["after"]) in text
    )
    for uid in event["evidence"]:
        assert f'href="/explorer/measurements/{uid}"' in text
    for asn in NETWORKS:
        assert f'href="/explorer/networks/{asn}"' in text
    assert "AS23674 (not blocked)" in text
    # Every mark is an X measurement in PK, coloured by its stored verdict.
    drawn = marks(text)
    assert len(drawn) > 2 * ROUNDS
    stored = {
        r["measurement_uid"]: r
        for r in get(served, "/api/v1/measurements", probe_cc=CC, limit=1000).json()["results"]
    }
    for uid, verdict in drawn:
        assert stored[uid]["domain"] in HOSTS and stored[uid]["verdict"] == verdict
    # Measurements closer than a mark's width share one mark (here both hosts of a round):
    # every blocked round of the ongoing network is drawn once, as blocked.
    on_17557 = [v for u, v in drawn if stored[u]["probe_asn"] == "AS17557"]
    assert on_17557.count("blocked") == sum(blocked_at("AS17557", r) for r in range(ROUNDS))
    assert f"{len(HOSTS)} measurements 2024-02-17" in text
    # The national block is ongoing, but AS9541's part ended: its end bracket is on its row.
    assert 'class="band end"' in text and "end on AS9541: after" in text
    # Its network events are listed as its parts.
    parts = [e for e in api_events(served, probe_cc=CC, scope="network") if e["target"] == "x"]
    assert parts and all(f"/explorer/events/{e['event_id']}" in text for e in parts)


def test_ended_network_event_shows_its_end_bracket(served: Served) -> None:
    ended = [e for e in api_events(served, probe_asn="AS9541", status="ended")]
    event = next(e for e in ended if e["target"] == "x.com")
    text = get(served, f"/explorer/events/{event['event_id']}").text
    assert "x.com blocked on AS9541 (PK)" in text
    assert show_time(event["end"]["before"]) in text and 'class="band end"' in text
    assert "Part of" in text  # the national event of X


def test_measurement_page_shows_verdict_steps_and_raw_link(served: Served) -> None:
    name = "tlsBlockingConnectionResetWithConsistentDNS.json"
    raw = json.loads((OONI / "wc05_qa" / name).read_text())
    uid = served.uid_of(lambda m: m["input"] == raw["input"] and m["test_keys"] == raw["test_keys"])
    api = get(served, "/api/v1/measurements", limit=1000).json()["results"]
    row = next(r for r in api if r["measurement_uid"] == uid)
    text = get(served, f"/explorer/measurements/{uid}").text
    assert f"badge v-{row['verdict']}" in text and f"<code>{row['method']}</code>" in text
    for line in row["evidence"]:
        assert html.escape(line) in text
    for q in raw["test_keys"]["queries"]:
        for a in q.get("answers") or []:
            if a.get("ipv4"):
                assert a["ipv4"] in text
    for h in raw["test_keys"]["tls_handshakes"]:
        assert h["address"] in text
        if h["failure"]:
            assert h["failure"] in text
    assert "Control (uncensored)" in text
    link = f"/api/v1/raw_measurement?measurement_uid={uid}"
    assert f'href="{link}"' in text
    assert get(served, link).json()["test_keys"] == raw["test_keys"]


def test_hostile_input_is_escaped_everywhere(served: Served) -> None:
    uid = served.uid_of(lambda m: m["input"] == SCRIPT_INPUT)
    escaped = html.escape(SCRIPT_INPUT, quote=False)
    pages = [
        get(served, f"/explorer/measurements/{uid}").text,
        get(served, "/explorer/measurements", probe_asn="AS197207").text,
        get(served, "/explorer/measurements", domain="<script>").text,
    ]
    for text in pages[:2]:
        assert escaped.replace("'", "&#39;") in text
    for text in pages:
        assert "<script>alert" not in text
    assert 'value="&lt;script&gt;"' in pages[2]


def test_list_filters_and_paging_match_the_api(served: Served) -> None:
    params = {"probe_cc": "PK", "verdict": "blocked"}
    api = get(served, "/api/v1/measurements", limit=50, **params).json()
    page = get(served, "/explorer/measurements", **params).text
    count = api["metadata"]["count"]
    assert count > 50
    assert f"{count} measurements · page 1 of {api['metadata']['pages']}" in page
    shown = re.findall(r'class="open" href="/explorer/measurements/([^"]+)"', page)
    assert shown == [r["measurement_uid"] for r in api["results"]]
    assert (
        'rel="next" href="/explorer/measurements?probe_cc=PK&amp;verdict=blocked&amp;page=2"'
        in page
    )
    page2 = get(served, "/explorer/measurements", page=2, **params).text
    api2 = get(served, "/api/v1/measurements", limit=50, offset=50, **params).json()
    assert re.findall(r'class="open" href="/explorer/measurements/([^"]+)"', page2) == [
        r["measurement_uid"] for r in api2["results"]
    ]
    narrow = {"probe_asn": "9541", "domain": "x.com", "method": "http.reset",
              "since": "2024-02-17", "until": "2024-02-18T00:00:00Z"}  # fmt: skip
    want = sum(blocked_at("AS9541", r) for r in range(ROUNDS))
    assert (
        f"{want} measurements · page 1 of 1" in get(served, "/explorer/measurements", **narrow).text
    )
    bad = get(served, "/explorer/measurements", since="last tuesday")
    assert bad.status_code == 400 and "since must be YYYY-MM-DD" in bad.text


def test_network_page_history_per_target(served: Served) -> None:
    text = get(served, "/explorer/networks/9541").text
    assert "Network AS9541" in text
    blocked = sum(blocked_at("AS9541", r) for r in range(ROUNDS))
    for host in HOSTS:
        row = re.search(rf">{re.escape(host)}</a></td>(.*?)</tr>", text, re.S)
        assert row, host
        counts = re.findall(r"<td>(\d+)</td>", row[1])
        assert counts[:4] == [str(ROUNDS - blocked), str(blocked), "0", "0"]
        assert "http.reset" in row[1]
    assert len(marks(text)) == ROUNDS * len(HOSTS)
    assert "x.com on AS9541 (ended)" in text or "x.com blocked on AS9541" in text


@pytest.mark.parametrize(
    "path",
    [
        "/explorer/events/evt_00000000000000000000",
        "/explorer/measurements/20240217000000.000000_PK_webconnectivity_0000000000000000",
        "/explorer/networks/AS64999",
        "/explorer/networks/not-a-network",
        "/explorer/static/secrets.txt",
        "/explorer/static/..%2Fviews.py",
    ],
)
def test_unknown_things_are_404(served: Served, path: str) -> None:
    r = get(served, path)
    assert r.status_code == 404
    if "/static/" not in path:
        assert "Not found" in r.text and "text/html" in r.headers["content-type"]


def test_static_files_are_served_from_the_package(served: Served) -> None:
    css = get(served, "/explorer/static/explorer.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    here = Path(__file__).resolve().parents[1] / "src" / "censorwatch" / "web" / "static"
    assert css.text == (here / "explorer.css").read_text()
    js = get(served, "/explorer/static/explorer.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]


@pytest.mark.slow
def test_censorwatch_serve_includes_the_explorer(tmp_path: Path) -> None:
    """The explorer comes with ``censorwatch serve``, and an empty store reads as empty."""
    from collector_helpers import Server

    server = Server(tmp_path / "cw.duckdb", tmp_path / "archive", tmp_path / "log", "--read-only")
    try:
        r = httpx.get(server.url + "/", timeout=30, follow_redirects=True)
        assert r.status_code == 200 and str(r.url).endswith("/explorer")
        assert "0 measurements stored" in r.text and "No measurements yet." in r.text
        assert "No blocking events detected" in r.text
        listing = httpx.get(server.url + "/explorer/measurements", timeout=30)
        assert "0 measurements · page 1 of 1" in listing.text
        assert "No measurement matches these filters." in listing.text
        assert httpx.get(server.url + "/api/v1/measurements", timeout=30).status_code == 200
    finally:
        server.stop()


def matrix_cells(text: str) -> dict[str, dict[str, tuple[str, str]]]:
    """Row label -> column words -> (status, counts text) of the what-still-works matrix."""
    table = text[text.index('<table class="matrix workarounds">') :]
    table = table[: table.index("</table>")]
    columns = [html.unescape(c) for c in re.findall(r"<th>([^<]+)</th>", table)[1:]]
    out = {}
    for row in re.findall(r"<tr>\s*<td>(.*?)</tr>", table, re.S):
        label = re.sub(r"<[^>]+>", "", row.split("</td>", 1)[0]).strip()
        cells = re.findall(r'<td class="cell[^"]*"[^>]*>(.*?)</td>', row, re.S)
        out[label] = {
            column: (
                re.sub(r".*<strong>(.*)</strong>.*", r"\1", cell, flags=re.S)
                if "<strong>" in cell
                else "not tried",
                re.sub(r".*<small>(.*)</small>.*", r"\1", cell, flags=re.S)
                if "<small>" in cell
                else "",
            )
            for column, cell in zip(columns, cells, strict=True)
        }
    return out


def test_event_page_shows_what_still_gets_through_per_network(served: Served) -> None:
    from web_helpers import WORKAROUNDS

    event = x_national(served)
    text = get(served, f"/explorer/events/{event['event_id']}").text
    assert "What still gets through" in text
    assert html.escape(event["workarounds_summary"]) in text
    cells = matrix_cells(text)
    assert set(cells) == set(WORKAROUNDS) == set(event["workarounds_by_network"])
    for asn, tried in WORKAROUNDS.items():
        # Every blocked measurement of X on the network in the event carried the same steps.
        blocked = sum(blocked_at(asn, r) for r in range(ROUNDS)) * len(HOSTS)
        counts = event["workarounds_by_network"][asn]
        assert {family: sum(c.values()) for family, c in counts.items()} == {
            s["technique"].split(":")[0]: blocked for s in tried
        }
        row = cells[asn]
        assert row["plain HTTP"] == ("fails", f"fails {blocked}")
        assert row["HTTP/3 (QUIC)"] == ("works", f"works {blocked}")
    assert cells["AS17557"]["Encrypted ClientHello"][0] == "not tried"
    assert cells["AS17557"]["a front (the platform's other host in the SNI)"] == ("not tried", "")
    assert cells["AS9541"]["a front (the platform's other host in the SNI)"][0] == "works"
    assert "works: HTTP/3" in event["workarounds_summary"]


def test_measurement_and_network_pages_show_the_summary(served: Served) -> None:
    uid = served.uid_of(lambda m: m["probe_asn"] == "AS9541" and "x_workarounds" in m["test_keys"])
    text = get(served, f"/explorer/measurements/{uid}").text
    section = text[text.index("What still gets through") :]
    for words, status in (("plain HTTP", "fails"), ("HTTP/3 (QUIC)", "works")):
        assert re.search(rf"<td>{re.escape(words)}</td><td class=\"v-\w+\">{status}</td>", section)
    assert "connection_reset" in section
    # The network page: one matrix row per blocked target there, linking to its event.
    page = get(served, "/explorer/networks/AS9541").text
    cells = matrix_cells(page)
    events = [e for e in api_events(served, probe_asn="AS9541", scope="network")]
    assert len(cells) == len(events) and all(
        f'href="/explorer/events/{e["event_id"]}"' in page for e in events
    )
    assert all(row["plain HTTP"][0] == "fails" for row in cells.values())


def test_measurements_api_carries_the_summary_the_page_shows(served: Served) -> None:
    uid = served.uid_of(lambda m: m["probe_asn"] == "AS9541" and "x_workarounds" in m["test_keys"])
    rows = get(served, "/api/v1/measurements", probe_asn="AS9541", limit=1000).json()["results"]
    (row,) = [r for r in rows if r["measurement_uid"] == uid]
    summary = row["workarounds"]
    assert summary["http3"]["status"] == "works" and summary["plain_http"]["status"] == "fails"
    plain = get(served, "/api/v1/measurements", probe_asn="AS9541", verdict="ok").json()
    assert all(r["workarounds"] is None for r in plain["results"])
