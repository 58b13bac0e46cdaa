"""The explorer's building blocks on real data: step tables of OONI files, the timeline SVG,
event grouping over events detected from analysed measurements, the matrix."""

from __future__ import annotations

import copy
import json
import time
from datetime import datetime, timedelta
from xml.etree import ElementTree

import pytest

from censorwatch.analysis import analyze
from censorwatch.events import detect_events, load_platforms
from censorwatch.web import steps, views
from web_helpers import HOSTS, NETWORKS, OONI, ROUNDS, blocked_at, x_series

pytestmark = pytest.mark.skipif(not OONI.is_dir(), reason=f"OONI data not found at {OONI}")
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def verdicts() -> list[dict]:
    return [analyze(m).to_record() for m in x_series()]


@pytest.mark.parametrize("path", sorted((OONI / "wc05_qa").glob("*.json")), ids=lambda p: p.stem)
def test_steps_tabulate_every_step_of_real_measurements(path) -> None:
    m = json.loads(path.read_text())
    tk = m["test_keys"]
    s = steps.steps(m)
    assert len(s.dns) == len(tk.get("queries") or [])
    assert len(s.tcp) == len(tk.get("tcp_connect") or [])
    assert len(s.tls) == len(tk.get("tls_handshakes") or [])
    assert len(s.http) == len(tk.get("requests") or [])
    for row, q in zip(s.dns, tk.get("queries") or [], strict=True):
        want = [a.get("ipv4") or a.get("ipv6") or a.get("hostname") for a in q["answers"] or []]
        assert [a["value"] for a in row["answers"]] == want
        assert row["failure"] == q["failure"]
    for row, c in zip(s.tcp, tk.get("tcp_connect") or [], strict=True):
        assert (row["success"], row["failure"]) == (c["status"]["success"], c["status"]["failure"])
    if tk.get("control") and tk.get("control_failure") is None:
        assert s.compare and s.compare[0][0] == "DNS addresses"
        addrs = tk["control"]["dns"].get("addrs") or []
        assert all(a in s.compare[0][2] for a in addrs) or tk["control"]["dns"]["failure"]


def test_no_sni_probe_is_labelled_and_kept_out_of_the_comparison() -> None:
    m = json.loads(
        (OONI / "wc05_qa" / "tlsBlockingConnectionResetWithConsistentDNS.json").read_text()
    )
    tk = m["test_keys"]
    main = tk["tls_handshakes"][0]
    assert main["failure"] == "connection_reset"
    # The probe's own SNI probes: the same endpoint without SNI, which gets through.
    extra = copy.deepcopy(main) | {
        "server_name": "",
        "failure": None,
        "tls_version": "TLSv1.3",
        "tags": [*main.get("tags", []), "x_sni_probe=none"],
    }
    tk["tls_handshakes"].append(extra)
    s = steps.steps(m)
    assert [(h["probe"], h["sni"], h["failure"]) for h in s.tls][-1] == ("no SNI", "", None)
    tls_rows = [r for r in s.compare if r[0].startswith("TLS ")]
    assert len(tls_rows) == 1 and tls_rows[0][1] == "connection_reset"


def test_timeline_svg_is_valid_escaped_and_placed_in_time() -> None:
    start = datetime(2024, 2, 17, 12)
    rows = [
        views.Row("<b>AS1</b>", "/explorer/networks/AS1?a=1&b=2", [
            (start + timedelta(hours=1), "ok", "uid-1", "ok </title><script>x</script>"),
            (start + timedelta(hours=3), "blocked", "uid-2", "blocked"),
        ]),
        views.Row("a-very-long-host-name.example.org", None, []),
    ]  # fmt: skip
    band = views.Band(start + timedelta(hours=2), start + timedelta(hours=3), "onset", "o&b")
    svg = str(views.timeline_svg(rows, start, start + timedelta(hours=4), bands=[band]))
    root = ElementTree.fromstring(svg)  # well-formed: every text was escaped
    assert "<script>" not in svg and "<b>" not in svg
    marks = root.findall(f".//{SVG}rect[@class]")
    kinds = [r.get("class") for r in marks]
    assert kinds == ["band onset", "mark v-ok", "mark v-blocked"]
    xs = [float(r.get("x")) + float(r.get("width")) / 2 for r in marks[1:]]
    left, width = 150, 960 - 150 - 10
    assert xs == pytest.approx([left + width / 4, left + width * 3 / 4], abs=0.2)
    links = [a.get("href") for a in root.iter(f"{SVG}a")]
    assert "/explorer/networks/AS1?a=1&b=2" in links and "/explorer/measurements/uid-2" in links
    titles = [t.text for t in root.iter(f"{SVG}title")]
    assert "a-very-long-host-name.example.org" in titles  # the full name of a shortened label


def test_events_group_hosts_and_networks_under_the_national_platform_event(verdicts) -> None:
    platforms = load_platforms()
    events = views.ordered_events(detect_events(verdicts))
    groups = views.group_events(events, platforms)
    top = [t for t, _ in groups]
    assert [(t.scope, t.target) for t in top] == [("national", "x")]
    national, details = groups[0]
    assert {e.event_id for e in details} == {e.event_id for e in events} - {national.event_id}
    blocking = sorted(a for a in NETWORKS if blocked_at(a, 8))
    assert sorted(national.asns) == blocking
    assert views.headline(national, platforms) == (
        f"X (Twitter) blocked in PK on {len(blocking)} of {len(NETWORKS)} networks measured"
    )
    # Ongoing first among the details too.
    statuses = [e.status for e in views.ordered_events(details)]
    assert statuses == sorted(statuses, key=lambda s: s != "ongoing")


def test_matrix_cells_hold_the_latest_verdict_per_host(verdicts) -> None:
    matrix = views.build_matrix(verdicts, load_platforms())
    assert matrix.columns == [("x", "X (Twitter)")]
    assert [(cc, asn) for cc, asn, _ in matrix.rows] == sorted(("PK", a) for a in NETWORKS)
    for _, asn, cells in matrix.rows:
        cell = cells["x"]
        assert sorted(h.host for h in cell.hosts) == sorted(HOSTS)
        want = "blocked" if blocked_at(asn, ROUNDS - 1) else "ok"
        assert cell.verdict == want and {h.verdict for h in cell.hosts} == {want}
        newest = max(v["measurement_start_time"] for v in verdicts if v["probe_asn"] == asn)
        assert cell.latest.when <= newest and cell.latest.when >= newest[:13]


def test_bounded_matrix_keeps_the_most_blocked_networks_and_counts_the_rest(verdicts) -> None:
    full = views.build_matrix(verdicts, load_platforms())
    blocked = {asn for _, asn, cells in full.rows if cells["x"].blocked}
    assert 0 < len(blocked) < len(full.rows)
    view = views.bounded(full, max_rows=len(blocked), max_columns=1)
    assert {asn for _, asn, _ in view.rows} == blocked
    assert view.hidden_rows == len(full.rows) - len(blocked) and view.hidden_columns == 0
    assert [r[:2] for r in view.rows] == sorted(r[:2] for r in view.rows)  # country order
    assert (
        views.bounded(full, 1000, 0).columns == []
        and views.bounded(full, 1000, 0).hidden_columns == 1
    )
    other = {cc for cc, _, _ in full.rows} - {"PK"}
    for cc in other:
        assert {r[0] for r in views.bounded(full, 1000, 10, cc).rows} == {cc}
    assert views.bounded(full, 1000, 10, "ZZ").rows == []


def test_network_history_counts(verdicts) -> None:
    history = views.network_history(v for v in verdicts if v["probe_asn"] == "AS17557")
    assert [t.host for t in history] == sorted(HOSTS)  # both blocked now; ties by name
    blocked = sum(blocked_at("AS17557", r) for r in range(ROUNDS))
    for t in history:
        assert t.counts["blocked"] == blocked and t.counts["ok"] == ROUNDS - blocked
        assert t.methods == ["http.reset"] and t.latest["verdict"] == "blocked"


def test_dense_timelines_share_marks_and_keep_the_worst_verdict() -> None:
    start = datetime(2024, 2, 1)
    dots = [
        (start + timedelta(minutes=i), "blocked" if i % 97 == 5 else "ok", f"u{i}", "t")
        for i in range(30 * 24 * 60)  # a month, one measurement a minute
    ]
    end = dots[-1][0]
    svg = str(views.timeline_svg([views.Row("AS1", None, dots)], start, end))
    root = ElementTree.fromstring(svg)
    marks = [r for r in root.iter(f"{SVG}rect") if r.get("class", "").startswith("mark")]
    left, width = 150, 960 - 150 - 10
    assert 100 < len(marks) <= width / views.MIN_MARK + 1
    # Every measurement is counted in exactly one mark's tooltip.
    tips = [r.find(f"{SVG}title").text for r in marks]
    assert sum(int(t.split()[0]) if " measurements " in t else 1 for t in tips) == len(dots)
    # Every blocked minute lies under a mark drawn as blocked.
    centres = [
        float(r.get("x")) + float(r.get("width")) / 2
        for r in marks
        if r.get("class") == "mark v-blocked"
    ]
    for when, verdict, _, _ in dots:
        if verdict == "blocked":
            at = left + (when - start) / (end - start) * width
            assert any(abs(at - c) <= views.MIN_MARK for c in centres), when


class _GrowingStore:
    """Just what ``StoreCache`` reads of a store: its size."""

    def __init__(self) -> None:
        self.size = 0

    def count(self) -> int:
        return self.size


def test_store_cache_serves_the_stale_value_while_it_recomputes() -> None:
    import threading

    release = threading.Event()
    calls: list[int] = []

    def compute(store: _GrowingStore) -> int:
        calls.append(store.size)
        if len(calls) > 1:
            release.wait(5)
        return store.size

    cache = views.StoreCache(compute, min_interval=0.0)
    store = _GrowingStore()
    assert cache.get(store) == 0  # the first request waits for the value
    store.size = 5
    assert cache.get(store) == 0  # stale, while the next value is computed apart
    deadline = time.monotonic() + 5
    while len(calls) < 2:
        assert time.monotonic() < deadline, "no recomputation started"
        time.sleep(0.01)
    assert cache.get(store) == 0 and calls == [0, 5]  # one recomputation at a time
    release.set()
    deadline = time.monotonic() + 5
    while cache.get(store) != 5:
        assert time.monotonic() < deadline, "the recomputed value never arrived"
        time.sleep(0.01)
    assert cache.get(_GrowingStore()) == 0  # another store: computed, not someone else's
