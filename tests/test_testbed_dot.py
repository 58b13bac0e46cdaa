"""The testbed's DNS-over-TLS server and the probe's DoT client, against each other on loopback.

The server (``testbed/services/dns.serve_tls``) runs on 127.0.0.1 with a certificate from the
testbed's own CA; the client side is the probe's ``query_dot`` (dnspython's framing), a raw
TLS socket for the hostile cases, and the probe's ``dot:<name>`` technique end to end.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path

import dns.message
import msgspec
import pytest

from censorwatch import failures
from censorwatch.analysis.workarounds import FAILS, summarize
from censorwatch.netinfo import AddressPlan, ASInfo
from censorwatch.observations.schema import WorkaroundStep
from censorwatch.probe import defaults
from censorwatch.probe import dns as probedns
from censorwatch.probe.budget import Budgets
from censorwatch.probe.config import ProbeConfig
from censorwatch.probe.tls import TrustAnchors
from censorwatch.probe.workarounds import Attempts, _observations
from censorwatch.scrub import Scrubber
from censorwatch.targets import Target
from censorwatch.testbed.pki import CertificateAuthority
from censorwatch.testbed.services import dns as dnsservice

NAME = "dns.google"
ZONE = {"x.com": ["127.53.11.7"], "twitter.com": ["127.53.11.8"]}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("dot-pki")
    ca = CertificateAuthority.create("dot test root")
    ca.save(folder / "ca.pem", folder / "ca.key")
    leaf = ca.issue([NAME], ["127.0.0.1"], directory=folder, stem=NAME)
    other = CertificateAuthority.create("nobody trusts this root")
    other.save(folder / "other-ca.pem", folder / "other-ca.key")
    return {"ca": folder / "ca.pem", "cert": leaf.certfile, "key": leaf.keyfile}


@asynccontextmanager
async def dot_server(pki: dict[str, Path], idle_timeout: float) -> AsyncIterator[int]:
    """The testbed's DoT server on an ephemeral loopback port; yields the port."""
    server = await dnsservice.serve_tls(
        "127.0.0.1",
        0,
        dnsservice.zone_handler(ZONE, authoritative=False),
        dnsservice.dot_server_context(pki["cert"], pki["key"]),
        idle_timeout=idle_timeout,
    )
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def client_context(ca: Path) -> ssl.SSLContext:
    return TrustAnchors(ca, system=False).ssl_context()


async def tls_open(port: int, ca: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(
        "127.0.0.1", port, ssl=client_context(ca), server_hostname=NAME
    )


def framed(message: dns.message.Message | bytes) -> bytes:
    wire = message if isinstance(message, bytes) else message.to_wire()
    return len(wire).to_bytes(2, "big") + wire


async def read_answer(reader: asyncio.StreamReader) -> dns.message.Message:
    async with asyncio.timeout(5):
        length = int.from_bytes(await reader.readexactly(2), "big")
        return dns.message.from_wire(await reader.readexactly(length))


async def until_closed(reader: asyncio.StreamReader, limit: float = 5.0) -> tuple[bytes, float]:
    """Whatever the server sends until it closes the connection, and how long that took."""
    started, data = time.monotonic(), b""
    async with asyncio.timeout(limit):
        try:
            while chunk := await reader.read(65536):
                data += chunk
        except (ConnectionError, ssl.SSLError):
            pass
    return data, time.monotonic() - started


def test_the_probe_resolves_over_tls_and_checks_the_name(pki: dict[str, Path]):
    async def scenario() -> list[probedns.DNSResult]:
        async with dot_server(pki, idle_timeout=5.0) as port:
            where = ("127.0.0.1", port)

            def ask(name: str, ca: Path) -> Awaitable[probedns.DNSResult]:
                return probedns.query_dot(
                    where, name, "x.com", "A", clock=time.monotonic(), timeout=3.0,
                    verify=client_context(ca),
                )  # fmt: skip

            return list(
                await asyncio.gather(
                    ask(NAME, pki["ca"]),
                    ask("dns.quad9.net", pki["ca"]),
                    ask(NAME, pki["ca"].with_name("other-ca.pem")),
                )
            )

    good, wrong_name, untrusted = asyncio.run(scenario())
    assert good.failure is None and good.addresses == ZONE["x.com"]
    assert good.engine == "dot" and good.resolver_address.startswith("127.0.0.1:")
    assert good.rcode == 0 and good.answers[0]["ipv4"] == ZONE["x.com"][0]
    assert wrong_name.failure == failures.SSL_INVALID_HOSTNAME and not wrong_name.addresses
    assert untrusted.failure == failures.SSL_UNKNOWN_AUTHORITY and not untrusted.addresses


def test_a_closed_port_or_an_unknown_name_fails_with_its_own_failure(pki: dict[str, Path]):
    async def scenario() -> tuple[probedns.DNSResult, probedns.DNSResult]:
        async with dot_server(pki, idle_timeout=5.0) as port:
            ctx = client_context(pki["ca"])
            unknown = await probedns.query_dot(
                ("127.0.0.1", port), NAME, "nowhere.example", "A", clock=0.0, timeout=3.0,
                verify=ctx,
            )  # fmt: skip
        closed = await probedns.query_dot(
            ("127.0.0.1", port), NAME, "x.com", "A", clock=0.0, timeout=3.0, verify=ctx
        )
        return unknown, closed

    unknown, closed = asyncio.run(scenario())
    assert unknown.failure == failures.DNS_NXDOMAIN and unknown.rcode == 3
    assert closed.failure == failures.CONNECTION_REFUSED


def test_several_queries_share_one_connection(pki: dict[str, Path]):
    async def scenario() -> list[dns.message.Message]:
        async with dot_server(pki, idle_timeout=5.0) as port:
            reader, writer = await tls_open(port, pki["ca"])
            assert writer.get_extra_info("ssl_object").selected_alpn_protocol() is None
            first = dns.message.make_query("x.com", "A")
            second = dns.message.make_query("twitter.com", "A")
            writer.write(framed(first) + framed(second))  # pipelined, RFC 7766 §6.2.1.1
            answers = [await read_answer(reader), await read_answer(reader)]
            third = dns.message.make_query("x.com", "A")
            writer.write(framed(third))
            answers.append(await read_answer(reader))
            writer.close()
            for query, answer in zip((first, second, third), answers, strict=True):
                assert query.is_response(answer)
            return answers

    answers = asyncio.run(scenario())
    got = [[rd.address for rrset in a.answer for rd in rrset] for a in answers]
    assert got == [ZONE["x.com"], ZONE["twitter.com"], ZONE["x.com"]]


def test_garbage_closes_that_connection_at_once_and_no_other(pki: dict[str, Path]):
    async def scenario() -> dict[str, tuple[bytes, float]]:
        async with dot_server(pki, idle_timeout=30.0) as port:
            cases = {
                "longest length, not DNS": framed(b"\xff" * 65535),
                "short, not DNS": framed(b"not a dns message"),
                "zero length": b"\x00\x00",
            }
            healthy_reader, healthy = await tls_open(port, pki["ca"])
            out = {}
            for label, payload in cases.items():
                reader, writer = await tls_open(port, pki["ca"])
                writer.write(payload)
                out[label] = await until_closed(reader)
                writer.close()
            _r, plain = await asyncio.open_connection("127.0.0.1", port)  # no TLS at all
            plain.write(b"GET / HTTP/1.1\r\n\r\n" * 10)
            out["not TLS"] = await until_closed(_r)
            plain.close()
            # the connection opened before all that still answers
            query = dns.message.make_query("x.com", "A")
            healthy.write(framed(query))
            assert query.is_response(await read_answer(healthy_reader))
            healthy.close()
            return out

    for label, (data, seconds) in asyncio.run(scenario()).items():
        assert data == b"", label
        assert seconds < 5.0, label  # closed for the garbage, long before the 30 s idle bound


@pytest.mark.slow
def test_silent_idle_and_trickling_clients_are_closed_in_time(pki: dict[str, Path]):
    idle = 0.5

    async def silent_tcp(port: int) -> tuple[bytes, float]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)  # no ClientHello
        try:
            return await until_closed(reader)
        finally:
            writer.close()

    async def idle_tls(port: int) -> tuple[bytes, float]:
        reader, writer = await tls_open(port, pki["ca"])
        try:
            return await until_closed(reader)
        finally:
            writer.close()

    async def announced_more_than_sent(port: int) -> tuple[bytes, float]:
        reader, writer = await tls_open(port, pki["ca"])
        writer.write(b"\xff\xff" + b"\x00" * 100)  # 65535 announced, 100 sent
        try:
            return await until_closed(reader)
        finally:
            writer.close()

    async def trickling(port: int) -> tuple[bytes, float]:
        reader, writer = await tls_open(port, pki["ca"])
        message = framed(dns.message.make_query("x.com", "A"))
        started = time.monotonic()

        async def drip() -> None:
            for byte in message:  # never silent for `idle`, never done within it
                writer.write(bytes([byte]))
                await asyncio.sleep(idle / 5)

        dripping = asyncio.ensure_future(drip())
        try:
            data, _ = await until_closed(reader)
            return data, time.monotonic() - started
        finally:
            dripping.cancel()
            writer.close()

    async def scenario() -> dict[str, tuple[bytes, float]]:
        async with dot_server(pki, idle_timeout=idle) as port:
            cases = {
                "silent before the handshake": silent_tcp(port),
                "idle after the handshake": idle_tls(port),
                "65535 announced, 100 sent": announced_more_than_sent(port),
                "one byte at a time": trickling(port),
            }
            results = await asyncio.gather(*cases.values())
            # the server itself is unharmed
            answer = await probedns.query_dot(
                ("127.0.0.1", port), NAME, "x.com", "A", clock=0.0, timeout=3.0,
                verify=client_context(pki["ca"]),
            )  # fmt: skip
            assert answer.addresses == ZONE["x.com"]
            return dict(zip(cases, results, strict=True))

    for label, (data, seconds) in asyncio.run(scenario()).items():
        assert data == b"", label
        assert idle * 0.8 <= seconds < idle + 2.0, (label, seconds)


def test_the_dot_technique_resolves_then_fetches_like_doh(
    pki: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """``dot:<name>`` per operator name from the configuration file; a default whose address
    the testbed's plan does not know is not asked (it would leave the testbed)."""

    async def scenario() -> list[dict]:
        async with dot_server(pki, idle_timeout=5.0) as port:
            config_dir = tmp_path / "config" / "censorwatch"
            config_dir.mkdir(parents=True)
            (config_dir / "probe.toml").write_text(
                "[dns]\nudp = []\ndoh = []\ndot = ["
                f'"127.0.0.1:{port}#{NAME}", "127.0.0.1:{port}#{NAME}", '
                f'"127.0.0.1:{port}#dns.quad9.net", "8.8.8.8#one.one.one.one"]\n'
            )
            monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
            plan = AddressPlan()
            plan.add_prefix("127.0.0.0/8", ASInfo(64500, "Loopback Telecom"))
            config = ProbeConfig(
                testbed="loopback",
                cafile=str(pki["ca"]),
                plan=plan.freeze(),
                budgets=Budgets(dns_timeout=2.0, workaround_timeout=2.0),
                resolver_defaults=defaults.load(),  # as `censorwatch probe` hands them on
            )
            attempts = Attempts(
                Target("https://x.com/"), "dns.forged", _observations({"test_keys": {}}),
                config, Scrubber(), time.monotonic(),
            )  # fmt: skip
            return list(await asyncio.gather(*attempts._resolver_jobs()))

    steps = {s["technique"]: s for s in asyncio.run(scenario())}
    assert sorted(steps) == [f"dot:{NAME}", "dot:dns.quad9.net"]
    resolved = steps[f"dot:{NAME}"]
    assert resolved["resolver"].startswith("127.0.0.1:") and resolved["resolver_failure"] is None
    assert resolved["addresses"] == ZONE["x.com"]
    # the page is asked from the DoT answer, as for DoH: nothing listens there
    assert resolved["address"] == f"{ZONE['x.com'][0]}:443"
    assert resolved["failure"] == failures.CONNECTION_REFUSED
    assert steps["dot:dns.quad9.net"]["resolver_failure"] == failures.SSL_INVALID_HOSTNAME
    summary = summarize([msgspec.convert(s, WorkaroundStep) for s in steps.values()])
    assert summary is not None
    assert summary[f"dot:{NAME}"]["status"] == FAILS
    assert "connection_refused at 127.53.11.7:443" in summary[f"dot:{NAME}"]["reason"]
    assert summary["dot:dns.quad9.net"]["reason"].endswith(failures.SSL_INVALID_HOSTNAME)


def test_without_defaults_only_the_named_resolvers_are_asked(pki: dict[str, Path]) -> None:
    """A probe run with ``--no-defaults`` (or a config built without them, as the loopback
    tests build theirs) asks no shipped resolver, whatever its address: nothing leaves for
    8.8.8.8, dns.google or their kind."""
    config = ProbeConfig(testbed="loopback", cafile=str(pki["ca"]), resolver_defaults=None)
    attempts = Attempts(
        Target("https://x.com/"), "dns.forged", _observations({"test_keys": {}}),
        config, Scrubber(), time.monotonic(),
    )  # fmt: skip
    jobs = attempts._resolver_jobs()
    assert jobs == []
    shipped = defaults.load()
    assert shipped.doh_urls and shipped.dot_resolvers and shipped.udp_resolvers
