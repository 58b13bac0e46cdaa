"""The control service over real HTTP(S): OONI's protocol shape, refusals and limits."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

import probe_loopback as pl
from censorwatch import failures
from censorwatch.control.server import BackgroundServer, ControlApp
from censorwatch.netinfo import AddressPlan
from censorwatch.probe import control_client
from censorwatch.probe.tls import TrustAnchors

pytestmark = pytest.mark.timeout(60)
WC05 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ooni" / "wc05_qa"


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> AddressPlan:
    """The testbed's way of saying "these loopback addresses are the public internet"."""
    path = tmp_path_factory.mktemp("plan") / "plan.json"
    path.write_text(
        json.dumps(
            {
                "public_prefixes": ["127.77.0.0/16"],
                "networks": [{"prefix": "127.77.0.0/16", "asn": 13414, "as_org_name": "X Corp"}],
            }
        )
    )
    return AddressPlan.load(path)


@pytest.fixture(scope="module")
def control(net: pl.Internet, plan: AddressPlan):
    app = ControlApp(pl.control_settings(net, plan=plan))
    with BackgroundServer(app, host=pl.CONTROL) as server:
        yield server


def ask(url: str, body: Any, **kwargs: Any) -> httpx.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(url, content=data, timeout=20, trust_env=False, **kwargs)


def request_for(url: str, endpoints: list[str]) -> dict[str, Any]:
    return control_client.build_request(url, endpoints)


def key_shape(value: Any) -> Any:
    """The nested key structure of a JSON value (what must match OONI's)."""
    if isinstance(value, dict):
        if value and all(re.match(r"^[\d.:\[\]a-f]+$", k) for k in value):
            return {"<endpoint>": key_shape(next(iter(value.values())))}
        return {k: None if k == "headers" else key_shape(v) for k, v in value.items()}
    return None


def test_response_has_ooni_shape_and_flags(net: pl.Internet, control: BackgroundServer):
    endpoint = f"{pl.WEB}:{net.https_port}"
    response = ask(control.url, request_for(net.https("site.test"), [endpoint]))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    ours = response.json()
    theirs = json.loads((WC05 / "successWithHTTPS.json").read_text())["test_keys"]["control"]
    assert key_shape(ours) == key_shape(theirs)
    assert ours["dns"] == {"failure": None, "addrs": [pl.WEB]}
    assert ours["tcp_connect"][endpoint] == {"status": True, "failure": None}
    assert ours["tls_handshake"][endpoint] == {
        "server_name": "site.test",
        "status": True,
        "failure": None,
    }
    assert ours["http_request"]["status_code"] == 200
    assert ours["http_request"]["title"] == "Welcome to the test site"
    assert ours["http_request"]["body_length"] == int(
        ours["http_request"]["headers"]["Content-Length"]
    )
    # resolved by probe (1) and control (2), valid for the domain (8), not a bogon: OONI's 11
    assert ours["ip_info"] == {pl.WEB: {"asn": 13414, "flags": 11}}


def test_every_wc05_control_object_has_keys_we_produce(net: pl.Internet, control: BackgroundServer):
    ours = ask(control.url, request_for(net.http("site.test"), [])).json()
    for path in sorted(WC05.glob("*.json")):
        theirs = json.loads(path.read_text())["test_keys"].get("control")
        if theirs:
            assert set(theirs) <= set(ours), path.name
            assert set(theirs["http_request"]) <= set(ours["http_request"]), path.name
            assert set(theirs["dns"]) == set(ours["dns"]), path.name


@pytest.mark.slow
def test_http_url_measures_both_ports_and_legacy_failures(
    net: pl.Internet, control: BackgroundServer
):
    # the probe reports an address the control does not resolve: flags 1 only
    ours = ask(
        control.url,
        request_for(f"http://refused.test:{net.https_port}/", [f"{pl.DROP}:{net.drop_port}"]),
    ).json()
    assert ours["tcp_connect"][f"{pl.REFUSED}:{net.https_port}"] == {
        "status": False,
        "failure": failures.TH_CONNECTION_REFUSED,
    }
    assert ours["http_request"]["failure"] == failures.TH_CONNECTION_REFUSED
    assert ours["http_request"]["status_code"] == -1
    assert ours["ip_info"][pl.DROP]["flags"] == 1
    assert ours["ip_info"][pl.REFUSED]["flags"] == 2


def test_quic_when_the_probe_asks(net: pl.Internet, control: BackgroundServer):
    endpoint = f"{pl.WEB}:{net.https_port}"
    body = request_for(net.https("site.test"), [endpoint])
    body["x_quic_enabled"] = True
    ours = ask(control.url, body).json()
    assert ours["quic_handshake"] == {
        endpoint: {"server_name": "site.test", "status": True, "failure": None}
    }
    # the certificate there is not valid for the name: no QUIC to an address not the site's
    wrong = request_for(net.https("wrong.test"), [endpoint])
    wrong["x_quic_enabled"] = True
    ours = ask(control.url, wrong).json()
    assert ours["tls_handshake"][endpoint]["failure"] == failures.SSL_INVALID_HOSTNAME
    assert ours["quic_handshake"] == {}


def test_fetch_uses_the_probe_user_agent(net: pl.Internet, control: BackgroundServer):
    body = request_for(net.https("site.test", "/ua"), [])
    body["http_request_headers"]["User-Agent"] = ["censorwatch-test/1"]
    ours = ask(control.url, body).json()
    assert ours["http_request"]["title"] == "UA: censorwatch-test/1"
    del body["http_request_headers"]
    ours = ask(control.url, body).json()
    assert ours["http_request"]["title"].startswith("UA: Mozilla/5.0")


def test_nxdomain_uses_ooni_legacy_strings(net: pl.Internet, control: BackgroundServer):
    ours = ask(control.url, request_for(net.https("nx.test"), [])).json()
    assert ours["dns"] == {"failure": failures.TH_DNS_NAME_ERROR, "addrs": []}
    assert ours["http_request"]["failure"] == failures.TH_DNS_LOOKUP_ERROR
    assert ours["tcp_connect"] == {} and ours["ip_info"] == {}


@pytest.mark.slow
def test_refuses_loopback_and_private_targets_outside_testbed_mode(net: pl.Internet):
    accepted: list[Any] = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]

    def watch() -> None:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            accepted.append(conn)
            conn.close()

    watcher = threading.Thread(target=watch)
    watcher.start()
    settings = pl.control_settings(net, testbed=False)
    try:
        with BackgroundServer(ControlApp(settings), host=pl.CONTROL) as server:
            body = request_for(
                f"http://127.0.0.1:{port}/",
                [f"127.0.0.1:{port}", f"10.0.0.1:{port}", f"169.254.1.1:{port}"],
            )
            ours = ask(server.url, body).json()
    finally:
        watcher.join()
        listener.close()
    assert accepted == []  # nothing ever connected
    assert {v["failure"] for v in ours["tcp_connect"].values()} == {
        failures.CONTROL_REFUSED_ADDRESS
    }
    assert len(ours["tcp_connect"]) == 3
    assert ours["http_request"]["failure"] == failures.CONTROL_REFUSED_ADDRESS
    assert ours["ip_info"]["127.0.0.1"]["flags"] & 4  # bogon


def test_limits(net: pl.Internet, control: BackgroundServer):
    too_big = b'{"http_request": "' + b"a" * (70 * 1024) + b'"}'
    assert ask(control.url, too_big).status_code == 413
    many = [f"127.77.0.2:{p}" for p in range(1000, 1100)]
    response = ask(control.url, request_for(net.https("site.test"), many))
    assert response.status_code == 400 and "at most" in response.json()["error"]
    assert ask(control.url, b"{not json").status_code == 400
    assert ask(control.url, {"http_request": "ftp://x/"}).status_code == 400
    assert ask(control.url, [1, 2]).status_code == 400
    assert httpx.get(control.url, trust_env=False).status_code == 405
    assert ask(control.url + "api/other", {}).status_code == 404


@pytest.mark.slow
def test_a_full_control_queues_briefly_then_answers_busy(net: pl.Internet):
    slow = request_for(f"https://silent.test:{net.silent_port}/", [])

    async def race(url: str) -> list[Any]:
        async with httpx.AsyncClient(timeout=20, trust_env=False) as client:
            first = asyncio.create_task(client.post(url, json=slow))
            await asyncio.sleep(0.3)
            started = time.monotonic()
            second = await client.post(url, json=slow)
            waited = time.monotonic() - started
            return [(await first).status_code, second.status_code,
                    second.headers.get("retry-after"), waited]  # fmt: skip

    short = ControlApp(pl.control_settings(net), max_inflight=1, queue_wait=0.2)
    with BackgroundServer(short, host=pl.CONTROL) as server:
        first, second, retry, _ = asyncio.run(race(server.url))
    assert (first, second, retry) == (200, 503, "2")
    # With room to wait, the second request is measured once the first one is done.
    patient = ControlApp(pl.control_settings(net), max_inflight=1, queue_wait=15)
    with BackgroundServer(patient, host=pl.CONTROL) as server:
        first, second, retry, waited = asyncio.run(race(server.url))
    assert (first, second, retry) == (200, 200, None)
    assert waited > 0.5  # it really queued behind the slow one (1 s TLS budget at the silent port)
    assert patient.inflight == 0


@pytest.mark.slow
def test_the_probe_client_retries_a_busy_control(net: pl.Internet):
    """A control that says "busy" is asked again after Retry-After, within the budget."""
    app = ControlApp(pl.control_settings(net), max_inflight=1, queue_wait=0)
    slow = request_for(f"https://silent.test:{net.silent_port}/", [])
    fast = request_for(net.https("site.test"), [])
    context = TrustAnchors(net.pki.ca_file, system=False).ssl_context()

    async def busy_then(url: str, budget: float) -> tuple[Any, str | None, int, float]:
        async with httpx.AsyncClient(timeout=20, trust_env=False) as client:
            first = asyncio.create_task(client.post(url, json=slow))
            await asyncio.sleep(0.3)
            started = time.monotonic()
            answer, failure = await control_client.query(
                url, fast, verify=context, timeout=budget, max_bytes=1 << 20
            )
            took = time.monotonic() - started
            return answer, failure, (await first).status_code, took

    with BackgroundServer(app, host=pl.CONTROL) as server:
        answer, failure, first, took = asyncio.run(busy_then(server.url, 10))
        assert (failure, first) == (None, 200)
        assert answer["http_request"]["status_code"] == 200
        assert took >= 2.0  # the first attempt was told "busy, retry after 2 s"
        # A budget shorter than the Retry-After: the failure says "busy", not "timeout".
        answer, failure, first, took = asyncio.run(busy_then(server.url, 1.0))
    assert (answer, failure) == (None, failures.CONTROL_BUSY) and took < 1.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("2", 2.0), (None, 1.0), ("soon", 1.0), ("-3", 1.0), ("nan", 1.0), ("3600", 5.0)],
)
def test_retry_after_is_read_and_bounded(header: str | None, seconds: float):
    assert control_client.retry_after(header) == seconds


def test_https_control_with_the_probe_client(net: pl.Internet):
    cert = pl.CertificateAuthority.load(net.pki.ca_file, net.pki.directory / "ca.key").issue(
        [], [pl.CONTROL], directory=net.pki.directory, stem="control"
    )
    app = ControlApp(pl.control_settings(net))
    with BackgroundServer(
        app, host=pl.CONTROL, certfile=cert.certfile, keyfile=cert.keyfile
    ) as server:
        assert server.url.startswith("https://")
        verify = TrustAnchors(net.pki.ca_file, system=False).ssl_context()
        response, failure = asyncio.run(
            control_client.query(
                server.url,
                request_for(net.https("site.test"), []),
                verify=verify,
                timeout=10,
                max_bytes=1 << 20,
            )
        )
        assert failure is None and response["http_request"]["status_code"] == 200
        # a client that does not trust the CA gets a certificate failure, not an answer
        response, failure = asyncio.run(
            control_client.query(
                server.url,
                request_for(net.https("site.test"), []),
                verify=TrustAnchors(None, system=True).ssl_context(),
                timeout=10,
                max_bytes=1 << 20,
            )
        )
        assert response is None and failure.startswith("ssl_")


@pytest.mark.slow
def test_serve_command(net: pl.Internet):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "censorwatch",
            "control",
            "serve",
            "--host",
            pl.CONTROL,
            "--port",
            "0",
            "--resolver",
            f"{net.public_dns[0]}:{net.public_dns[1]}",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stderr is not None
        banner = ""
        deadline = time.monotonic() + 20
        while "listening on" not in banner and time.monotonic() < deadline:
            banner += proc.stderr.readline()
        match = re.search(r"listening on (http://[\d.]+:\d+/)", banner)
        assert match, banner
        assert "refusing loopback" in banner
        ours = ask(match.group(1), request_for(net.https("site.test"), [])).json()
        # not in testbed mode: the loopback site is refused, its DNS answer still reported
        assert ours["dns"]["addrs"] == [pl.WEB]
        assert ours["http_request"]["failure"] == failures.CONTROL_REFUSED_ADDRESS
    finally:
        proc.terminate()
        proc.wait(timeout=10)
