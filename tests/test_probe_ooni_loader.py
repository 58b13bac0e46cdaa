"""OONI's own loader reads what the probe writes, every kind of step included.

Each URL below drives a different road through the probe on the loopback internet (success,
redirects, NXDOMAIN, an injected answer, a DNS timeout, a blackhole, a refusal, an SNI reset, a
wrong certificate, throughput downloads); OONI's ``load_measurement`` (oonidata, from PyPI, in its
own environment) must load every one of them, and see the system lookup as OONI's probes record
it: one ``getaddrinfo`` lookup of type ``ANY``.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

import probe_loopback as pl
from censorwatch.control.server import BackgroundServer
from censorwatch.probe.webconnectivity import WebConnectivity
from censorwatch.targets import Target
from ooni_tools import assert_ooni_loads_all, ooni_load, oonidata_python

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

ROADS = [
    ("site.test", "/", False),
    ("redirect.test", "/", False),
    ("loop.test", "/loop/0", False),
    ("nx.test", "/", False),
    ("censored.test", "/", False),
    ("inject.test", "/", False),
    ("dnsto.test", "/", False),
    ("bogon.test", "/", False),
    ("drop.test", "/", False),
    ("refused.test", "/", False),
    ("blocked.test", "/", False),
    ("wrong.test", "/", False),
    ("twohomes.test", "/", False),
    ("media.test", "/", True),
]


@pytest.fixture(scope="module")
def measurements(net: pl.Internet, control: BackgroundServer) -> list[dict[str, Any]]:
    config = pl.probe_config(net, control.url, connect_timeout=0.5, dns_timeout=0.5)
    probe = WebConnectivity(config)

    async def run() -> list[dict[str, Any]]:
        out = []
        for host, path, media in ROADS:
            out.append(await probe.measure(Target(net.https(host, path), media=media)))
        out.append(await probe.measure(Target(net.http("site.test"))))
        return out

    return asyncio.run(run())


def test_ooni_loader_loads_every_road(measurements: list[dict[str, Any]], tmp_path: Path):
    oonidata_python()
    path = tmp_path / "loopback.jsonl"
    path.write_text("".join(json.dumps(m) + "\n" for m in measurements))
    report = assert_ooni_loads_all([path], len(measurements))
    assert report["loaded"] == {"WebConnectivity": len(measurements)}
    # one system lookup per measured name, as getaddrinfo ANY; other resolvers per type
    engines = report["engines"]
    assert engines["getaddrinfo/ANY"] >= len(measurements)
    assert engines["udp/A"] == engines["udp/AAAA"] == engines["doh/A"] == engines["doh/AAAA"]
    assert not any(key.startswith("udp/ANY") for key in engines)


def test_an_ipv4_only_name_is_no_dns_failure(measurements: list[dict[str, Any]]):
    """AAAA has no answer for every loopback name; the system lookup still succeeds."""
    first = measurements[0]["test_keys"]
    (system,) = [q for q in first["queries"] if "classic" in q["tags"]]
    assert system["failure"] is None
    assert {a["answer_type"] for a in system["answers"]} == {"A"}
    by_type = {r["query_type"]: r["failure"] for r in system["x_raw_responses"]}
    assert by_type == {"A": None, "AAAA": "dns_no_answer"}


def test_the_system_lookups_failure_is_the_names(measurements: list[dict[str, Any]]):
    by_host = {m["input"].split("/")[2].split(":")[0]: m["test_keys"] for m in measurements}
    for host, expected in (
        ("nx.test", "dns_nxdomain_error"),
        ("dnsto.test", "generic_timeout_error"),
    ):
        (system,) = [q for q in by_host[host]["queries"] if "classic" in q["tags"]]
        assert system["failure"] == expected
        assert system["answers"] is None


def test_the_loader_is_strict_about_field_types(measurements: list[dict[str, Any]], tmp_path: Path):
    """The check has teeth: OONI's loader refuses a response code written as a word."""
    worded = json.loads(json.dumps(measurements[0]))
    udp = next(q for q in worded["test_keys"]["queries"] if q["engine"] == "udp")
    udp["rcode"] = "NOERROR"
    path = tmp_path / "worded.jsonl"
    path.write_text(json.dumps(worded) + "\n")
    report = ooni_load([path])
    assert report["loaded"] == {} and len(report["failed"]) == 1
