"""Hostile servers: the probe finishes within its budgets, with bounded memory and the right
failure strings, whatever the other end does."""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from typing import Any

import pytest

import probe_loopback as pl
from censorwatch import failures
from censorwatch.probe.webconnectivity import WebConnectivity
from censorwatch.targets import Target

pytestmark = pytest.mark.timeout(60)
BODY_CAP = 256 * 1024


def measure_bounded(
    net: pl.Internet, url: str, **budgets: Any
) -> tuple[dict[str, Any], float, int]:
    """The measurement, the seconds it took and the peak bytes Python allocated for it."""
    budgets.setdefault("http_max_body", BODY_CAP)
    probe = WebConnectivity(pl.probe_config(net, None, **budgets))
    tracemalloc.start()
    started = time.monotonic()
    try:
        m = asyncio.run(probe.measure(Target(url)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return m, time.monotonic() - started, peak


def test_endless_body_is_cut_at_the_byte_budget(net: pl.Internet):
    m, elapsed, peak = measure_bounded(net, net.https("endless.test", "/endless"))
    (req,) = m["test_keys"]["requests"]
    response = req["response"]
    assert req["failure"] is None and response["code"] == 200
    assert response["body_is_truncated"] is True
    assert len(response["body"].encode()) == BODY_CAP
    assert response["x_body_length"] < BODY_CAP + 128 * 1024
    assert elapsed < 5
    # A server sending forever costs a bounded amount (the figure includes the server thread's
    # own buffers, which tracemalloc also sees).
    assert peak < 12 * 1024 * 1024


@pytest.mark.slow
def test_slow_body_is_cut_at_the_time_budget_and_kept(net: pl.Internet):
    # 2 MiB at 400 kB/s with a 1 s budget: the deadline comes first
    url = net.https("slow.test", "/censorwatch/throughput.bin")
    m, elapsed, _ = measure_bounded(net, url, http_timeout=1.0, http_max_body=4 << 20)
    (req,) = m["test_keys"]["requests"]
    assert req["failure"] == failures.GENERIC_TIMEOUT
    assert req["response"]["code"] == 200  # what arrived before the deadline is kept
    kept = req["response"]["body"]
    assert 0 < req["response"]["x_body_length"] < pl.THROUGHPUT_SIZE
    assert len(kept) == req["response"]["x_body_length"]  # NUL bytes: valid UTF-8
    assert elapsed < 4


def test_huge_headers_are_refused_quickly(net: pl.Internet):
    m, elapsed, peak = measure_bounded(net, net.https("huge.test", "/huge"))
    (req,) = m["test_keys"]["requests"]
    assert req["failure"] == failures.HTTP_HEADERS_TOO_LARGE
    assert m["test_keys"]["http_experiment_failure"] == failures.HTTP_HEADERS_TOO_LARGE
    assert elapsed < 5
    assert peak < 4 * 1024 * 1024


@pytest.mark.slow
def test_tls_garbage(net: pl.Internet):
    url = f"https://garbage.test:{net.garbage_port}/"
    m, elapsed, _ = measure_bounded(net, url)
    tk = m["test_keys"]
    assert {h["failure"] for h in tk["tls_handshakes"]} == {failures.SSL_FAILED_HANDSHAKE}
    assert tk["http_experiment_failure"] == failures.SSL_FAILED_HANDSHAKE
    assert elapsed < 5


@pytest.mark.slow
def test_server_that_never_answers(net: pl.Internet):
    url = f"https://silent.test:{net.silent_port}/"
    m, elapsed, _ = measure_bounded(net, url)
    tk = m["test_keys"]
    assert [c["status"]["success"] for c in tk["tcp_connect"]] == [True, True, True]
    assert {h["failure"] for h in tk["tls_handshakes"]} == {failures.GENERIC_TIMEOUT}
    for h in tk["tls_handshakes"]:
        assert 0.9 < h["t"] - h["t0"] < 1.8  # the TLS budget, not more
    assert tk["http_experiment_failure"] == failures.GENERIC_TIMEOUT
    # SNI handshake, then the two SNI probes in parallel, then the HTTP attempt
    assert elapsed < 5


@pytest.mark.slow
def test_plain_http_server_that_never_answers(net: pl.Internet):
    url = f"http://silent.test:{net.silent_port}/"
    m, elapsed, _ = measure_bounded(net, url)
    (req,) = m["test_keys"]["requests"]
    assert req["failure"] == failures.GENERIC_TIMEOUT
    assert 2.9 < req["t"] - req["t0"] < 4  # the HTTP budget (3 s here)
    assert elapsed < 6
