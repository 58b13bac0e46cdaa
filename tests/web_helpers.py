"""A real store for the explorer tests: real OONI measurements and a synthetic block of X, analysed
by the real pipeline into DuckDB and an archive, served by uvicorn on loopback."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from censorwatch.analysis import analyze

REPO = Path(__file__).resolve().parents[1]
OONI = REPO.parent / "shared" / "data" / "ooni"

CC = "PK"
#: AS17557 blocks X from round 8 on (ongoing); AS9541 from round 8 to 15; AS23674 never.
NETWORKS = ("AS17557", "AS9541", "AS23674")
HOSTS = ("x.com", "twitter.com")
ROUNDS = 24
START = datetime(2024, 2, 17, 12, tzinfo=UTC)
STEP = timedelta(minutes=30)
SCRIPT_INPUT = "http://www.example.com/<script>alert('cw')</script>"


def blocked_at(asn: str, rnd: int) -> bool:
    if asn == "AS17557":
        return rnd >= 8
    if asn == "AS9541":
        return 8 <= rnd < 16
    return False


#: The ways around the block each blocking network's probes tried (``x_workarounds`` as the
#: probe writes them; judged against the control's title, "Default Web Page"): on AS17557 only
#: HTTP/3 gets the page, on AS9541 plain HTTP is reset but a front and HTTP/3 get through.
PAGE = {"status_code": 200, "title": "Default Web Page", "certificate_valid": True}
RESET = {"failure": "connection_reset", "status_code": None}
WORKAROUNDS: dict[str, list[dict[str, Any]]] = {
    "AS17557": [
        {"technique": "plain_http", **RESET},
        {"technique": "http3", **PAGE},
        {"technique": "ech", "not_tried": "no TLS library here offers Encrypted ClientHello"},
    ],
    "AS9541": [
        {"technique": "plain_http", **RESET},
        {"technique": "http3", **PAGE},
        {"technique": "front:cdn.example.net", "front": "cdn.example.net", **PAGE},
    ],
}


def _load(name: str) -> dict[str, Any]:
    return json.loads((OONI / "wc05_qa" / name).read_text())


def _stamp(m: dict[str, Any], when: datetime) -> None:
    text = when.strftime("%Y-%m-%d %H:%M:%S")
    m["measurement_start_time"] = m["test_start_time"] = text


def x_series() -> list[dict[str, Any]]:
    """Rounds of X measurements per network: a real reset measurement (blocked) or a real
    successful one (ok), re-addressed to X's hosts."""
    blocked = _load("httpBlockingConnectionReset.json")
    ok = _load("successWithHTTP.json")
    out = []
    for rnd in range(ROUNDS):
        for n, asn in enumerate(NETWORKS):
            for k, host in enumerate(HOSTS):
                m = copy.deepcopy(blocked if blocked_at(asn, rnd) else ok)
                m.update(probe_cc=CC, probe_asn=asn, input=f"http://{host}/")
                if blocked_at(asn, rnd):
                    m["test_keys"]["x_workarounds"] = copy.deepcopy(WORKAROUNDS[asn])
                m["report_id"] = f"20240217T{rnd:02d}0000Z_webconnectivity_{CC}_{asn[2:]}_r{rnd}"
                _stamp(m, START + STEP * rnd + timedelta(seconds=60 * n + 10 * k))
                out.append(m)
    return out


def qa_corpus() -> list[dict[str, Any]]:
    """OONI's QA measurements, spread over two countries, plus one with a hostile input."""
    out = []
    files = sorted((OONI / "wc05_qa").glob("*.json"))
    places = [("PK", "AS17557"), ("IR", "AS197207")]
    for i, path in enumerate(files):
        m = json.loads(path.read_text())
        m["probe_cc"], m["probe_asn"] = places[i % 2]
        m["report_id"] = ""
        _stamp(m, START - timedelta(days=1) + timedelta(minutes=7 * i))
        out.append(m)
    hostile = _load("successWithHTTP.json")
    hostile.update(probe_cc="IR", probe_asn="AS197207", input=SCRIPT_INPUT, report_id="")
    _stamp(hostile, START - timedelta(hours=2))
    out.append(hostile)
    return out


@dataclass
class Served:
    url: str
    measurements: list[dict[str, Any]]
    uids: list[str]
    store: Any

    def uid_of(self, predicate: Any) -> str:
        return next(u for m, u in zip(self.measurements, self.uids, strict=True) if predicate(m))


def check_series_analysis() -> None:
    """Guard: the re-addressed measurements analyse as this store needs them to."""
    for m in x_series()[: 3 * len(NETWORKS) * len(HOSTS)]:
        assert analyze(m).verdict == "ok", m["input"]
    blocked = [m for i, m in enumerate(x_series()) if blocked_at(m["probe_asn"], i // 6)]
    assert blocked and all(analyze(m).verdict == "blocked" for m in blocked[:4])


def serve_store(tmp: Path) -> Iterator[Served]:
    """Fill a DuckDB store and archive through the collector's pipeline, then serve the app."""
    import uvicorn

    from censorwatch.app.asgi import create_app
    from censorwatch.app.services import listen_socket
    from censorwatch.collector.archive import Archive
    from censorwatch.collector.pipeline import Pipeline
    from censorwatch.events.stored import StoredEvents
    from censorwatch.store import open_store

    store = open_store(tmp / "cw.duckdb")
    # The collector's events writer: events are stored as the rows are committed.
    pipeline = Pipeline(Archive(tmp / "archive"), store, events=StoredEvents.open(store))
    measurements = qa_corpus() + x_series()
    pending = [pipeline.prepare(m) for m in measurements]
    outcomes = pipeline.commit(pending)
    assert all(o.stored for o in outcomes)
    uids = [p.measurement_uid for p in pending]

    server = uvicorn.Server(
        uvicorn.Config(create_app(pipeline), log_level="warning", access_log=False)
    )
    sock = listen_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("explorer server did not start")
        time.sleep(0.05)
    try:
        yield Served(f"http://127.0.0.1:{port}", measurements, uids, store)
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
        store.close()
