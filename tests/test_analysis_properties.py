"""No measurement shape crashes the analyser: random dicts, nulls, wrong types, odd bodies."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from censorwatch.analysis import analyze
from censorwatch.analysis.fingerprints import Fingerprints
from censorwatch.model import Verdict

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
KEYS = [
    "queries",
    "tcp_connect",
    "tls_handshakes",
    "requests",
    "control",
    "control_failure",
    "network_events",
    "x_dns_duplicate_responses",
    "x_throughput",
    "quic_handshakes",
    "answers",
    "hostname",
    "engine",
    "failure",
    "ip",
    "port",
    "status",
    "success",
    "address",
    "server_name",
    "tags",
    "request",
    "response",
    "url",
    "code",
    "body",
    "headers",
    "headers_list",
    "body_is_truncated",
    "dns",
    "addrs",
    "tls_handshake",
    "http_request",
    "status_code",
    "body_length",
    "title",
    "ip_info",
    "asn",
    "ipv4",
    "ipv6",
    "format",
    "data",
    "target",
    "reference",
    "bytes",
    "seconds",
    "bps",
    "num_bytes",
    "t",
    "operation",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(
        [
            "connection_reset",
            "generic_timeout_error",
            "dns_nxdomain_error",
            "10.10.34.34",
            "93.184.216.34:443",
            "depth=1",
            "x_sni_probe=none",
            "base64",
            "https://x.com/",
            "ssl_invalid_hostname",
            "bytes_received_cumulative",
            "classic",
        ]
    ),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), children, max_size=6
        ),
    ),
    max_leaves=40,
)
b64_body = st.fixed_dictionaries(
    {
        "format": st.sampled_from(["base64", "hex", ""]),
        "data": st.one_of(st.text(), st.none(), st.integers()),
    }
)


def _qa_measurements() -> list[dict]:
    return [
        json.loads(p.read_bytes()) for p in sorted((SHARED / "ooni" / "wc05_qa").glob("*.json"))
    ]


QA = _qa_measurements() if (SHARED / "ooni" / "wc05_qa").is_dir() else []
FPS = (
    Fingerprints.load(SHARED / "fingerprints")
    if (SHARED / "fingerprints").is_dir()
    else Fingerprints.empty()
)


def _check(v: Verdict) -> None:
    assert isinstance(v, Verdict)
    assert v.verdict in ("ok", "blocked", "down", "unknown")
    assert (v.method is None) == (v.verdict != "blocked")
    assert 0.0 <= v.confidence <= 1.0
    assert v.evidence
    msgspec.json.encode(v.to_record())  # always serialisable
    # The shapes are absorbed by the observation layer, not by the last-resort guard.
    assert not any("could not be analysed" in e for e in v.evidence), v.evidence


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "input",
                "test_name",
                "test_keys",
                "probe_cc",
                "probe_asn",
                "measurement_start_time",
                "measurement_uid",
                "report_id",
            ]
        ),
        json_values,
        max_size=8,
    )
)
@pytest.mark.slow
def test_random_top_level_shapes(m):
    _check(analyze(m, fingerprints=FPS))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
@pytest.mark.slow
def test_random_test_keys(tk):
    m = {"test_name": "web_connectivity", "input": "https://x.com/", "test_keys": tk}
    _check(analyze(m, fingerprints=FPS))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 49), st.lists(st.tuples(st.integers(0, 10**6), json_values), max_size=5))
@pytest.mark.slow
def test_mutated_real_measurements(index, mutations):
    """Replace random nested values of a real measurement with random JSON."""
    if not QA:
        return
    m = copy.deepcopy(QA[index % len(QA)])
    for seed, value in mutations:
        node, path = m, []
        for _ in range(6):
            if isinstance(node, dict) and node:
                key = sorted(node)[seed % len(node)]
            elif isinstance(node, list) and node:
                key = seed % len(node)
            else:
                break
            path.append((node, key))
            node = node[key]
            seed //= 3
        if path:
            parent, key = path[-1]
            parent[key] = value
    _check(analyze(m, fingerprints=FPS))


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(st.text(max_size=3000), b64_body, st.none(), st.integers()),
    st.booleans(),
    st.integers(-5, 600),
)
def test_bodies_of_every_kind(body, truncated, code):
    m = copy.deepcopy(QA[0]) if QA else {"input": "http://x.com/", "test_keys": {}}
    m["input"] = "http://www.example.com/"
    m["test_keys"]["requests"] = [
        {
            "request": {"url": "http://www.example.com/"},
            "response": {
                "body": body,
                "body_is_truncated": truncated,
                "code": code,
                "headers": {"Location": {"format": "base64", "data": "!!"}},
            },
            "failure": None,
        }
    ]
    _check(analyze(m, fingerprints=FPS))
