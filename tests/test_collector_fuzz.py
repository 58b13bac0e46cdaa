"""Hostile and malformed submissions: every one is refused with a 4xx, nothing is stored.

A real server on loopback receives ``CW_FUZZ_COUNT`` (default 10,000) submissions built to be
invalid in one way each: truncated JSON, wrong types, oversized fields and bodies, deep
nesting, unknown or forged reports, fields that disagree with the report, non-UTF-8 bytes,
lone surrogates, impossible times. Afterwards the archive and the database are still empty and
a valid submission is still accepted.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from censorwatch.collector.archive import Archive
from censorwatch.store import open_store
from collector_helpers import Server, make_measurement, open_report, template

COUNT = int(os.environ.get("CW_FUZZ_COUNT", "10000"))
MAX_BODY = 64 * 1024

Case = tuple[str, str, bytes]  # (kind, path, body)


def _nest(depth: int) -> bytes:
    """JSON nested ``depth`` levels, alternating objects and arrays."""
    opens = [b'{"k":' if i % 2 == 0 else b"[" for i in range(depth)]
    closes = [b"}" if i % 2 == 0 else b"]" for i in reversed(range(depth))]
    return b"".join(opens) + b"1" + b"".join(closes)


def cases(report_id: str, other_report: str, base: dict[str, Any], seed: int) -> Iterator[Case]:
    """An endless, reproducible stream of invalid submissions (one defect each)."""
    rng = random.Random(seed)
    path = f"/report/{report_id}"
    wrong_values = [None, 0, -1, 1.5, True, [], {}, "", "x" * 300, [1, 2], {"a": 1}]

    def body(content: Any, fmt: Any = "json") -> bytes:
        return json.dumps({"format": fmt, "content": content}).encode()

    def valid() -> dict[str, Any]:
        m = json.loads(json.dumps(base))
        m["input"] = f"https://fuzz{rng.randrange(10**9)}.example/"
        m["report_id"] = report_id
        return m

    def truncated() -> Case:
        raw = body(valid())
        return "truncated", path, raw[: rng.randrange(1, len(raw) - 1)]

    def wrong_type() -> Case:
        m = valid()
        key = rng.choice(["test_name", "probe_cc", "probe_asn", "measurement_start_time"])
        m[key] = rng.choice(wrong_values)
        return "wrong_type", path, body(m)

    def wrong_shape() -> Case:
        m = valid()
        choice = rng.randrange(7)
        if choice == 0:
            return "wrong_shape", path, body(m, fmt=rng.choice(["yaml", None, 1, "JSON"]))
        if choice == 1:
            return "wrong_shape", path, json.dumps({"format": "json"}).encode()
        if choice == 2:
            return "wrong_shape", path, body(rng.choice([[m], "m", 1, None]))
        if choice == 3:
            return "wrong_shape", path, json.dumps(rng.choice([[], None, 1, "s", True])).encode()
        if choice == 4:
            m["test_keys"] = rng.choice([[], "keys", 3])
            return "wrong_shape", path, body(m)
        if choice == 5:
            m["input"] = rng.choice([1, [], {"u": 1}, True])
            return "wrong_shape", path, body(m)
        return "wrong_shape", path, b""

    def huge() -> Case:
        m = valid()
        if rng.random() < 0.5:
            m["input"] = "https://a.example/" + "a" * rng.randrange(8200, 20000)
        else:
            m["test_keys"]["padding"] = "p" * (MAX_BODY + rng.randrange(1, 5000))
        return "huge", path, body(m)

    def deep() -> Case:
        m = valid()
        m["test_keys"]["deep"] = "DEEP"
        raw = body(m).replace(b'"DEEP"', _nest(rng.randrange(70, 3000)), 1)
        return "deep", path, raw

    def wrong_report() -> Case:
        m = valid()
        choice = rng.randrange(6)
        if choice == 0:  # forged: right shape, wrong tag
            forged = report_id[:-1] + ("A" if report_id[-1] != "A" else "B")
            m["report_id"] = forged
            return "wrong_report", f"/report/{forged}", body(m)
        if choice == 1:
            junk = "".join(rng.choice("abcXYZ019_-.") for _ in range(rng.randrange(1, 80)))
            return "wrong_report", f"/report/{junk}", body(m)
        if choice == 2:
            m["probe_cc"] = rng.choice(["IR", "CN", "US", "RU"])
        elif choice == 3:
            m["probe_asn"] = f"AS{rng.randrange(1, 10**6)}"
        elif choice == 4:
            m["test_name"] = rng.choice(["signal", "telegram", "dnscheck", "tor"])
        else:
            m["report_id"] = other_report
        return "wrong_report", path, body(m)

    def non_utf8() -> Case:
        raw = bytearray(body(valid()))
        start = raw.index(b"https://fuzz")
        for _ in range(rng.randrange(1, 4)):
            raw[start + rng.randrange(8, 14)] = rng.choice([0xFF, 0xC0, 0x80, 0xFE])
        return "non_utf8", path, bytes(raw)

    def surrogate() -> Case:
        raw = body(valid()).replace(b"https://fuzz", b"https://\\ud800fuzz", 1)
        return "surrogate", path, raw

    def bad_time() -> Case:
        m = valid()
        m[rng.choice(["measurement_start_time", "test_start_time"])] = rng.choice(
            ["2099-01-01 00:00:00", "1999-12-31 23:59:59", "yesterday", "2024-13-45 00:00:00",
             "2024-02-17T25:00:00Z", "", "9" * 40, "2024-02-17 10:00:00+99:00"]
        )  # fmt: skip
        return "bad_time", path, body(m)

    def bad_field() -> Case:
        m = valid()
        key, values = rng.choice(
            [("probe_cc", ["pk", "PAK", "P", "12", "P K"]),
             ("probe_asn", ["17557", "ASN17557", "AS", "AS-1", "as17557", "AS12345678901"]),
             ("test_name", ["Web Connectivity", "web-connectivity", "a" * 70, "web/conn"])]
        )  # fmt: skip
        m[key] = rng.choice(values)
        return "bad_field", path, body(m)

    makers: list[Callable[[], Case]] = [
        truncated, wrong_type, wrong_shape, huge, deep, wrong_report, non_utf8, surrogate,
        bad_time, bad_field,
    ]  # fmt: skip
    while True:
        yield rng.choice(makers)()


def send(url: str, stream: Iterator[Case], count: int, threads: int = 8) -> list[tuple[str, int]]:
    """Post ``count`` cases on ``threads`` keep-alive connections (http.client: light and fast)."""
    host, port = url.removeprefix("http://").split(":")
    lock = threading.Lock()
    results: list[tuple[str, int]] = []
    remaining = [count]

    def worker() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        while True:
            with lock:
                if remaining[0] == 0:
                    break
                remaining[0] -= 1
                kind, path, raw = next(stream)
            try:
                conn.request("POST", path, body=raw, headers={"content-type": "application/json"})
                response = conn.getresponse()
                response.read()
                status = response.status
                if response.will_close:
                    conn.close()
            except (OSError, http.client.HTTPException) as exc:
                status = -1
                kind = f"{kind}:{type(exc).__name__}"
                conn.close()
            with lock:
                results.append((kind, status))
        conn.close()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return results


@pytest.mark.slow
def test_ten_thousand_hostile_submissions_store_nothing(tmp_path: Path) -> None:
    db, archive = tmp_path / "cw.duckdb", tmp_path / "archive"
    server = Server(db, archive, tmp_path / "server.log", "--max-body-bytes", str(MAX_BODY))
    try:
        base = make_measurement(1, base=template())
        with httpx.Client(base_url=server.url, timeout=30) as client:
            report_id = open_report(client, base)
            other = open_report(client, base)
        results = send(server.url, cases(report_id, other, base, seed=20240217), COUNT)
        by_status = Counter(status for _, status in results)
        by_kind = Counter(kind for kind, _ in results)
        print(f"\n{len(results)} hostile submissions: {dict(by_status)}; {dict(by_kind)}")
        assert len(results) == COUNT
        assert all(400 <= status < 500 for _, status in results), by_status
        assert server.proc.poll() is None
        assert httpx.get(server.url + "/health", timeout=10).json()["measurements"] == 0
        assert not any(block.lines for block in Archive(archive).blocks())

        # The server is unharmed: a valid submission still goes through.
        good = {**base, "report_id": report_id}
        r = httpx.post(
            f"{server.url}/report/{report_id}", json={"format": "json", "content": good}, timeout=30
        )
        assert r.status_code == 200
    finally:
        server.stop()
    store = open_store(db, read_only=True)
    try:
        assert store.count() == 1
    finally:
        store.close()


@pytest.mark.slow
def test_malformed_report_requests_are_refused(tmp_path: Path) -> None:
    server = Server(tmp_path / "cw.duckdb", tmp_path / "archive", tmp_path / "server.log")
    wc = "web_connectivity"
    bodies = [
        b"", b"{", b"[]", b"null", b'{"test_name": 1}', b"\xff\xfe",
        json.dumps({"test_name": wc, "probe_cc": "pk", "probe_asn": "AS1"}).encode(),
        json.dumps({"test_name": wc, "probe_cc": "PK", "probe_asn": "1"}).encode(),
        json.dumps({"test_name": "w c", "probe_cc": "PK", "probe_asn": "AS1"}).encode(),
        json.dumps({"test_name": wc, "probe_cc": "PK", "probe_asn": "AS1", "format": 1}).encode(),
        b'{"a":' * 5000 + b"1" + b"}" * 5000,
    ]  # fmt: skip
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            statuses = [client.post("/report", content=b).status_code for b in bodies]
            closes = [client.post(f"/report/{rid}/close").status_code for rid in ("x", "1" * 60)]
        assert all(400 <= s < 500 for s in statuses), statuses
        assert closes == [404, 404]
    finally:
        server.stop()


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@pytest.fixture(scope="module")
def in_process(tmp_path_factory: pytest.TempPathFactory):
    """The same app, in process (starlette's TestClient), for property-based checks."""
    from fastapi.testclient import TestClient

    from censorwatch.app.asgi import create_app
    from censorwatch.collector.service import Collector

    tmp = tmp_path_factory.mktemp("fuzz")
    store = open_store(tmp / "cw.duckdb")
    collector = Collector.open(tmp / "archive", store)
    with TestClient(create_app(collector.pipeline, collector)) as client:
        yield client, store
    store.close()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    key=st.sampled_from(
        [
            "test_name",
            "probe_cc",
            "probe_asn",
            "measurement_start_time",
            "input",
            "test_keys",
            "report_id",
            "test_start_time",
            "annotations",
            "probe_ip",
        ]
    ),
    value=json_values,
)
@pytest.mark.slow
def test_any_field_value_is_answered_without_server_error(in_process, key: str, value: Any) -> None:
    client, store = in_process
    m = make_measurement(7, base=template())
    report_id = client.post(
        "/report",
        json={"test_name": m["test_name"], "probe_cc": m["probe_cc"], "probe_asn": m["probe_asn"]},
    ).json()["report_id"]
    m["report_id"] = report_id
    m[key] = value
    before = store.count()
    r = client.post(f"/report/{report_id}", json={"format": "json", "content": m})
    assert r.status_code < 500, r.text
    if r.status_code == 200:
        assert store.count() in (before, before + 1)
        assert "measurement_uid" in r.json()
    else:
        assert store.count() == before
        assert r.json()["error"]
