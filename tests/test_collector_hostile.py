"""The collector and the API under hostile input: memory budgets, anchored checks, slow
clients, exposed key directories and third-party script viewers. Every server here is a real
``censorwatch serve`` on loopback; memory is the server's own peak RSS (``VmHWM``)."""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import stat
import threading
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from censorwatch.cli import app as cli_app
from censorwatch.collector import reports
from censorwatch.collector.validate import (
    MAX_ITEMS,
    Invalid,
    check_measurement,
    check_open,
    check_submission,
    decode_json,
)
from censorwatch.model import canonical_json
from censorwatch.observations.budget import count_items
from collector_helpers import OONI, Server, make_measurement, open_report, template

KEY = b"k" * 32
MiB = 1024 * 1024
PAD_ITEMS = 5_400_000  # the reproduced attack (5 million ``{},``), grown to just under 16 MiB


def hostile_body(report_id: str, items: int = PAD_ITEMS) -> bytes:
    """A valid measurement whose ``x_pad`` is ``items`` empty objects (no JSON library: the
    test must not pay for what it attacks)."""
    m = make_measurement(1, base=template())
    m["report_id"] = report_id
    head = json.dumps({"format": "json", "content": m}).encode()
    assert head.endswith(b"}}")
    pad = b'"x_pad":[' + b"{}," * (items - 1) + b"{}]"
    return head[:-2] + b"," + pad + b"}}"


# -- budgets, before decoding ------------------------------------------------------------------


def test_a_body_of_millions_of_empty_objects_is_refused_before_it_is_decoded() -> None:
    rid = reports.mint(KEY, "web_connectivity", "PK", "AS17557")
    body = hostile_body(rid)
    assert 15 * MiB < len(body) < 16 * MiB
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(Invalid, match="more than") as refused:
            decode_json(body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused.value.status == 413
    assert time.perf_counter() - started < 1.0
    assert peak < 20 * MiB  # decoding it allocated ~900 MB


def test_many_tiny_strings_are_refused_and_long_text_full_of_commas_is_not() -> None:
    strings = b"[" + b'"a",' * 1_000_000 + b'"a"]'
    with pytest.raises(Invalid, match="more than"):
        decode_json(strings)
    # An HTML body full of braces and commas is one string: the exact count sees one item.
    html = "<script>var a={x:[1,2,3]},b={y:{z:4}};</script>" * 60_000
    assert html.count(",") + html.count(":") > MAX_ITEMS
    doc = {"format": "json", "content": {"test_keys": {"body": html}}}
    assert count_items(json.dumps(doc).encode(), MAX_ITEMS) < 10
    assert decode_json(json.dumps(doc).encode())["content"]["test_keys"]["body"] == html


def test_real_ooni_measurements_fit_the_budgets() -> None:
    paths = [p for p in OONI.rglob("*.json") if p.is_file()]
    assert len(paths) > 20
    for path in paths:
        body = json.dumps({"format": "json", "content": json.loads(path.read_text())}).encode()
        assert count_items(body, MAX_ITEMS) < MAX_ITEMS // 10, path.name
        decode_json(body)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=8) | st.dictionaries(st.text(), inner, max_size=8),
    max_leaves=60,
)
_SHAPES = st.sampled_from([b"{}", b"[]", b"0", b'""', b'"a"', b'{"a":0}', b"[[]]", b"1e9"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=_JSON, encoding=st.sampled_from(["utf-8", "utf-16", "latin-1"]), ascii=st.booleans())
def test_fuzz_any_document_in_any_encoding_decodes_or_is_refused(
    value: Any, encoding: str, ascii: bool
) -> None:
    try:
        body = json.dumps(value, ensure_ascii=ascii).encode(encoding)
    except UnicodeEncodeError:
        return
    try:
        decoded = decode_json(body)
    except Invalid as exc:
        assert exc.status in (400, 413)
        return
    assert count_items(body, MAX_ITEMS) <= MAX_ITEMS
    assert decoded == json.loads(body)


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=_SHAPES, count=st.integers(1, 3_000_000), depth=st.integers(0, 80))
def test_fuzz_memory_of_a_decode_stays_linear_in_the_body(
    shape: bytes, count: int, depth: int
) -> None:
    """Whatever the size and depth, a decode costs at most a few times its body (the budget
    stops the shapes that would cost tens of times more)."""
    body = b"[" * depth + b"[" + b",".join([shape] * count) + b"]" + b"]" * depth
    tracemalloc.start()
    try:
        try:
            decode_json(body)
        except Invalid as exc:
            assert exc.status in (400, 413)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 25 * len(body) + 30 * MiB, (shape, count, depth, peak)
    assert peak < 60 * MiB


# -- anchored checks, exact test name --------------------------------------------------------


@pytest.mark.parametrize("field", ["probe_cc", "probe_asn", "test_name"])
def test_a_trailing_newline_is_refused_everywhere(field: str) -> None:
    fields = {"test_name": "web_connectivity", "probe_cc": "PK", "probe_asn": "AS17557"}
    with pytest.raises(Invalid, match=field):
        check_open({**fields, field: fields[field] + "\n"})
    m = make_measurement(1, base=template())
    m[field] = m[field] + "\n"
    with pytest.raises(Invalid, match=field):
        check_measurement(m)


def test_report_ids_are_matched_whole_and_digits_are_ascii() -> None:
    rid = reports.mint(KEY, "web_connectivity", "PK", "AS17557")
    assert reports.verify(KEY, rid) is not None
    assert reports.verify(KEY, rid + "\n") is None
    assert reports.verify(KEY, "x" + rid) is None
    with pytest.raises(Invalid, match="probe_asn"):
        check_open({"test_name": "x", "probe_cc": "PK", "probe_asn": "AS١٢٣"})


def test_the_test_name_must_be_the_reports_exactly() -> None:
    m = make_measurement(1, base=template())
    rid = reports.mint(KEY, "web_connectivity", "PK", "AS17557")
    report = reports.verify(KEY, rid)
    assert report is not None and report.names("web_connectivity")
    ok = check_submission({"format": "json", "content": {**m, "report_id": rid}}, report)
    assert ok["test_name"] == "web_connectivity"
    for other in ("web_conn_ectivity", "webconnectivity", "_web_connectivity"):
        content = {**m, "report_id": rid, "test_name": other}
        with pytest.raises(Invalid, match="not opened for test_name") as refused:
            check_submission({"format": "json", "content": content}, report)
        assert refused.value.status == 404  # a probe opens a report for its own name
    # The report opened for the odd spelling takes only that spelling.
    odd = reports.mint(KEY, "web_conn_ectivity", "PK", "AS17557")
    assert "_webconnectivity_PK_17557_n1_" in odd
    odd_report = reports.verify(KEY, odd)
    assert odd_report.names("web_conn_ectivity") and not odd_report.names("web_connectivity")


# -- a real server ------------------------------------------------------------------------------


def _status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


class Peak:
    """The server's peak RSS above its RSS when measuring began (VmHWM reset via
    ``clear_refs`` where the kernel allows it, else the peak since start)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        self.base = _status(pid, "VmRSS")

    def growth(self) -> int:
        return _status(self.pid, "VmHWM") - self.base


@pytest.fixture
def server(tmp_path: Path):
    s = Server(tmp_path / "cw.duckdb", tmp_path / "archive", tmp_path / "server.log")
    yield s
    s.stop()


def _post(url: str, body: bytes) -> tuple[int, float]:
    started = time.perf_counter()
    r = httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=60)
    return r.status_code, time.perf_counter() - started


@pytest.mark.slow
def test_hostile_submissions_cost_little_memory_and_are_answered_quickly(server: Server) -> None:
    with httpx.Client(base_url=server.url) as client:
        m = make_measurement(1, base=template())
        rid = open_report(client, m)
        good = client.post(
            f"/report/{rid}", json={"format": "json", "content": {**m, "report_id": rid}}
        )
        assert good.status_code == 200  # warm: analysis and writer loaded
    body = hostile_body(rid)
    url = f"{server.url}/report/{rid}"
    figures: dict[str, Any] = {"body_bytes": len(body)}

    peak = Peak(server.proc.pid)
    status, seconds = _post(url, body)
    figures["one"] = {
        "status": status,
        "seconds": round(seconds, 2),
        "peak_mb": peak.growth() / MiB,
    }
    assert status == 413 and seconds < 3.0
    assert peak.growth() < 100 * MiB

    peak = Peak(server.proc.pid)
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: _post(url, body), range(4)))
    figures["four"] = {
        "statuses": [a[0] for a in answers],
        "seconds": round(max(a[1] for a in answers), 2),
        "peak_mb": peak.growth() / MiB,
    }
    assert all(a[0] == 413 for a in answers)
    assert peak.growth() < 200 * MiB
    print("hostile submission figures:", json.dumps(figures))
    assert httpx.get(server.url + "/health").json()["measurements"] == 1


@pytest.mark.slow
def test_a_real_measurement_with_a_body_of_megabytes_is_accepted_and_read_back_as_stored(
    server: Server,
) -> None:
    m = json.loads((OONI / "wc05_qa" / "successWithHTTPS.json").read_text())
    html = "<html><script>var a={x:[1,2,3]},b={y:{z:4}};</script>" * 60_000  # ~3.2 MB
    m["test_keys"].setdefault("requests", [{}])
    m["test_keys"]["requests"][0].setdefault("response", {})["body"] = html
    m = make_measurement(7, base=m)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        rid = open_report(client, m)
        r = client.post(
            f"/report/{rid}", json={"format": "json", "content": {**m, "report_id": rid}}
        )
        assert r.status_code == 200, r.text
        uid = r.json()["measurement_uid"]
        raw = client.get("/api/v1/raw_measurement", params={"measurement_uid": uid})
    assert raw.status_code == 200 and raw.headers["content-type"] == "application/json"
    stored = json.loads(raw.content)
    assert raw.content == canonical_json(stored)  # the archived bytes, not a re-encoding
    assert stored["measurement_uid"] == uid
    assert stored["test_keys"]["requests"][0]["response"]["body"] == html


@pytest.mark.slow
def test_reading_back_a_huge_stored_measurement_does_not_decode_it(tmp_path: Path) -> None:
    """A measurement of a million empty objects, archived by a road with no collector checks
    (as ingest's), is served at the cost of its bytes."""
    from censorwatch.app.services import open_services

    db, archive = tmp_path / "cw.duckdb", tmp_path / "archive"
    m = make_measurement(2, base=template())
    m["x_pad"] = [{} for _ in range(1_000_000)]
    with open_services(db, archive) as services:
        services.pipeline.recover()
        uid = services.pipeline.commit([services.pipeline.prepare(m)])[0].measurement_uid
    del m
    server = Server(db, archive, tmp_path / "server.log")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            assert client.get("/health").json()["measurements"] == 1
            pad = b'"x_pad":[' + b"{}," * 999_999 + b"{}]"
            peak = Peak(server.proc.pid)
            for _ in range(3):
                raw = client.get("/api/v1/raw_measurement", params={"measurement_uid": uid})
                assert raw.status_code == 200 and pad in raw.content
            page = client.get(f"/explorer/measurements/{uid}")  # the verdict, without steps
            assert page.status_code == 200 and uid in page.text
            growth = peak.growth()
            missing = client.get("/api/v1/raw_measurement", params={"measurement_uid": uid + "x"})
    finally:
        server.stop()
    print(f"raw read of a 3 MB, 1M-object measurement: peak growth {growth / MiB:.1f} MB")
    assert missing.status_code == 404
    assert growth < 40 * MiB  # decoding and re-encoding it costs ~200 MB


# -- slow clients ----------------------------------------------------------------------------


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=5)
    s.setblocking(False)
    return s


def _trickle(socks: dict[socket.socket, float], until: float, step: float = 0.25) -> dict:
    """Send one byte on each socket every ``step`` seconds; returns when each was closed by
    the server (seconds after it opened) and what the server said before closing."""
    closed: dict[socket.socket, float] = {}
    said: dict[socket.socket, bytes] = {s: b"" for s in socks}
    while socks.keys() - closed.keys() and time.monotonic() < until:
        alive = [s for s in socks if s not in closed]
        for s in alive:
            try:
                s.send(b"a")
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                closed[s] = time.monotonic() - socks[s]
        readable, _, _ = select.select([s for s in alive if s not in closed], [], [], step)
        for s in readable:
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            said[s] += data
            if not data:
                closed[s] = time.monotonic() - socks[s]
    for s in socks:
        s.close()
    return {"closed": closed, "said": said, "open": len(socks) - len(closed)}


def _serve_normal_clients(url: str, stop: threading.Event, latencies: list[float]) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        r = httpx.get(url + "/health", timeout=5)
        assert r.status_code == 200
        latencies.append(time.perf_counter() - started)
        time.sleep(0.1)


@pytest.mark.slow
def test_slow_heads_and_bodies_are_cut_off_while_others_are_served(tmp_path: Path) -> None:
    server = Server(
        tmp_path / "cw.duckdb", tmp_path / "archive", tmp_path / "server.log",
        "--head-timeout", "2", "--body-timeout", "2", "--body-min-rate", "1000",
    )  # fmt: skip
    try:
        with httpx.Client(base_url=server.url) as client:
            rid = open_report(client, make_measurement(1, base=template()))
        socks: dict[socket.socket, float] = {}
        for i in range(200):
            s = _connect(server.url)
            if i % 2:  # a head that never ends
                s.send(b"POST /report HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            else:  # a complete head, then a body at a byte per 0.25 s (needs 1,000 B/s)
                s.send(
                    f"POST /report/{rid} HTTP/1.1\r\nHost: x\r\n"
                    "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n".encode()
                )
            socks[s] = time.monotonic()
        stop, latencies = threading.Event(), []
        normal = threading.Thread(target=_serve_normal_clients, args=(server.url, stop, latencies))
        normal.start()
        try:
            outcome = _trickle(socks, until=time.monotonic() + 15)
        finally:
            stop.set()
            normal.join()
    finally:
        server.stop()
    assert outcome["open"] == 0
    slowest = max(outcome["closed"].values())
    assert slowest < 2 + 2.0, slowest  # the 2 s deadline, with slack for 200 sockets
    timed_out = [s for s, said in outcome["said"].items() if said.startswith(b"HTTP/1.1 408")]
    assert len(timed_out) >= 190
    assert len(latencies) >= 10 and max(latencies) < 1.0


@pytest.mark.slow
def test_beyond_the_waiting_cap_the_longest_waiting_connection_is_closed(tmp_path: Path) -> None:
    server = Server(
        tmp_path / "cw.duckdb", tmp_path / "archive", tmp_path / "server.log",
        "--head-timeout", "60", "--max-waiting-connections", "20",
    )  # fmt: skip
    try:
        socks = {_connect(server.url): time.monotonic() for _ in range(100)}
        time.sleep(0.5)
        r = httpx.get(server.url + "/health", timeout=5)  # a fresh client is served at once
        assert r.status_code == 200
        outcome = _trickle(socks, until=time.monotonic() + 3)
    finally:
        server.stop()
    closed = outcome["closed"]
    # All but the newest ~20 were dropped within a second or two, long before 60 s.
    assert len(closed) >= 79 and outcome["open"] <= 21
    assert max(closed.values()) < 3


@pytest.mark.slow
def test_an_answered_request_does_not_hold_its_connection_with_a_trickled_body(
    tmp_path: Path,
) -> None:
    server = Server(
        tmp_path / "cw.duckdb", tmp_path / "archive", tmp_path / "server.log",
        "--body-timeout", "1", "--body-min-rate", "1000",
    )  # fmt: skip
    try:
        s = _connect(server.url)
        s.send(b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        outcome = _trickle({s: time.monotonic()}, until=time.monotonic() + 8)
    finally:
        server.stop()
    assert outcome["open"] == 0 and max(outcome["closed"].values()) < 3.5


# -- key directories ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o1777])
def test_keys_init_refuses_a_directory_others_can_write(tmp_path: Path, mode: int) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, mode)
    group_only = mode & stat.S_IWGRP and not mode & stat.S_IWOTH
    if group_only:
        os.chown(shared, os.geteuid(), _foreign_gid())
    key = shared / "probe.key"
    runner = CliRunner()
    refused = runner.invoke(cli_app, ["keys", "init", "--key", str(key)])
    assert refused.exit_code == 2 and "writable by" in refused.output
    assert not key.exists()
    forced = runner.invoke(cli_app, ["keys", "init", "--key", str(key), "--force"])
    assert forced.exit_code == 0, forced.output
    assert "warning:" in forced.output and "writable by" in forced.output
    assert key.stat().st_mode & 0o777 == 0o600


def _foreign_gid() -> int:
    """A group that is not the user's private group (so group write means other people)."""
    import grp

    for group in grp.getgrall():
        if group.gr_gid != os.getegid():
            return group.gr_gid
    pytest.skip("no other group on this system")


def test_keys_init_accepts_a_private_directory_under_a_sticky_one(tmp_path: Path) -> None:
    sticky = tmp_path / "tmp"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    own = sticky / "mine"
    own.mkdir(mode=0o700)
    result = CliRunner().invoke(cli_app, ["keys", "init", "--key", str(own / "probe.key")])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output


# -- no third-party viewers, a strict CSP --------------------------------------------------------


def test_api_viewers_are_off_and_responses_carry_a_strict_csp(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from censorwatch.app.asgi import create_app
    from censorwatch.app.services import open_services

    with (
        open_services(tmp_path / "cw.duckdb", tmp_path / "archive", writer=False) as services,
        TestClient(create_app(services.pipeline)) as client,
    ):
        for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
            r = client.get(path)
            assert r.status_code == 404 and "cdn" not in r.text.lower(), path
        spec = client.get("/openapi.json")
        assert spec.status_code == 200 and "/report" in spec.json()["paths"]
        for path in ("/openapi.json", "/health", "/api/v1/measurements", "/nothing"):
            csp = client.get(path).headers["content-security-policy"]
            assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp, path
        explorer = client.get("/explorer")
        assert explorer.headers["content-security-policy"].count("default-src") == 1
        assert "script-src 'self'" in explorer.headers["content-security-policy"]
