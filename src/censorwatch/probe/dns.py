"""DNS lookups over UDP, DNS-over-HTTPS and DNS-over-TLS, recorded as OONI ``queries`` entries.

UDP queries keep listening a while after the first valid answer: an on-path injector races the
real resolver, so a second, different answer to the same query is the trace it leaves. The
listening happens in the background while the rest of the measurement goes on, so it costs no
time; the late answers are kept in ``duplicates``.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from censorwatch import failures
from censorwatch.netinfo import AddressPlan
from censorwatch.probe.budget import DNS_MAX_RESPONSE
from censorwatch.scrub import Scrubber

_RCODE_FAILURES = {
    dns.rcode.NXDOMAIN: failures.DNS_NXDOMAIN,
    dns.rcode.REFUSED: failures.DNS_REFUSED,
    dns.rcode.SERVFAIL: failures.DNS_SERVER_MISBEHAVING,
}


def parse_hostport(value: str, default_port: int = 53) -> tuple[str, int]:
    """``HOST[:PORT]``, ``[v6]:PORT`` or a bare IPv6 address."""
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host, int(rest.lstrip(":") or default_port)
    if value.count(":") == 1:
        host, port = value.split(":")
        return host, int(port)
    return value, default_port


def format_hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class DNSResult:
    """One query and its outcome."""

    hostname: str
    query_type: str
    engine: str
    resolver_address: str
    t0: float
    t: float = 0.0
    failure: str | None = None
    rcode: int | None = None  # the DNS response code (df-002: an integer)
    addresses: list[str] = field(default_factory=list)
    answers: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    raw_response: bytes | None = None
    late: asyncio.Task[None] | None = field(default=None, repr=False)

    async def settle(self, timeout: float | None = None) -> None:
        """Wait for late answers to stop arriving; after ``timeout`` seconds stop listening."""
        if self.late is None:
            return
        await asyncio.wait([self.late], timeout=timeout)  # an outer cancellation propagates
        if not self.late.done():
            self.late.cancel()
            await asyncio.wait([self.late])
        if not self.late.cancelled():
            self.late.result()

    def to_query(self, plan: AddressPlan, transaction_id: int, tags: list[str]) -> dict[str, Any]:
        answers = []
        for a in self.answers:
            entry = dict(a)
            ip = entry.get("ipv4") or entry.get("ipv6")
            if ip:
                info = plan.lookup(ip)
                entry["asn"] = info.asn if info else 0
                entry["as_org_name"] = info.as_org_name if info else ""
            answers.append(entry)
        return {
            "answers": answers or None,
            "engine": self.engine,
            "failure": self.failure,
            "hostname": self.hostname,
            "query_type": self.query_type,
            "raw_response": base64.b64encode(self.raw_response).decode()
            if self.raw_response
            else None,
            "rcode": self.rcode,
            "resolver_hostname": None,
            "resolver_port": None,
            "resolver_address": self.resolver_address,
            "t0": round(self.t0, 6),
            "t": round(self.t, 6),
            "tags": tags,
            "transaction_id": transaction_id,
        }


def system_lookup_query(
    results: list[DNSResult], plan: AddressPlan, transaction_id: int, tags: list[str]
) -> dict[str, Any]:
    """The system resolver's A and AAAA answers as one lookup, the way OONI's probes record
    what the operating system's resolver said: engine ``getaddrinfo``, query type ``ANY``, both
    families in one list of answers (what a browser on this network would get).

    The lookup fails only when no family answered: an AAAA query with no answer beside an A
    answer is an ordinary IPv4-only name, not a DNS failure. With no answer at all, the first
    failure that says more than "no answer" (the A query's first) speaks for the lookup. The
    resolver's address is in ``x_resolvers`` (as a system lookup carries none) and each raw
    response in ``x_raw_responses``.
    """
    first = results[0]
    merged = DNSResult(first.hostname, "ANY", "getaddrinfo", "", min(r.t0 for r in results))
    merged.t = max(r.t for r in results)
    for r in results:
        merged.answers.extend(r.answers)
        merged.addresses.extend(a for a in r.addresses if a not in merged.addresses)
    if not merged.addresses:
        told = [r.failure for r in results if r.failure and r.failure != failures.DNS_NO_ANSWER]
        merged.failure = told[0] if told else failures.DNS_NO_ANSWER
    query = merged.to_query(plan, transaction_id, tags)
    query["rcode"] = None
    query["x_raw_responses"] = [
        {
            "query_type": r.query_type,
            "rcode": r.rcode,
            "failure": r.failure,
            "raw_response": base64.b64encode(r.raw_response).decode() if r.raw_response else None,
        }
        for r in results
    ]
    return query


def _answers_of(
    response: dns.message.Message, qtype: int
) -> tuple[list[dict[str, Any]], list[str]]:
    answers: list[dict[str, Any]] = []
    addresses: list[str] = []
    for rrset in response.answer:
        for rd in rrset:
            if rd.rdtype == dns.rdatatype.A:
                answers.append({"answer_type": "A", "ipv4": rd.address, "ttl": rrset.ttl})
                if qtype == dns.rdatatype.A:
                    addresses.append(rd.address)
            elif rd.rdtype == dns.rdatatype.AAAA:
                answers.append({"answer_type": "AAAA", "ipv6": rd.address, "ttl": rrset.ttl})
                if qtype == dns.rdatatype.AAAA:
                    addresses.append(rd.address)
            elif rd.rdtype == dns.rdatatype.CNAME:
                answers.append(
                    {"answer_type": "CNAME", "hostname": rd.target.to_text(), "ttl": rrset.ttl}
                )
    return answers, addresses


def _apply_response(result: DNSResult, response: dns.message.Message, qtype: int) -> None:
    rcode = response.rcode()
    result.rcode = int(rcode)
    result.answers, result.addresses = _answers_of(response, qtype)
    if rcode in _RCODE_FAILURES:
        result.failure = _RCODE_FAILURES[rcode]
    elif rcode != dns.rcode.NOERROR:
        result.failure = failures.DNS_SERVER_MISBEHAVING
    elif not result.addresses:
        result.failure = failures.DNS_NO_ANSWER


class _UDPCollector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=64)
        self.error: BaseException | None = None

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.queue.full():
            self.queue.put_nowait(data[:DNS_MAX_RESPONSE])

    def error_received(self, exc: Exception) -> None:
        self.error = exc
        if not self.queue.full():
            self.queue.put_nowait(b"")


async def query_udp(
    resolver: tuple[str, int],
    hostname: str,
    qtype: str,
    *,
    clock: float,
    timeout: float,
    duplicate_window: float,
    scrubber: Scrubber | None = None,
) -> DNSResult:
    """One query over UDP, returned at the first valid answer.

    With a ``duplicate_window``, the socket stays open that long in a background task
    (``result.late``) that puts answers arriving afterwards into ``duplicates``: the caller
    goes on measuring meanwhile and awaits :meth:`DNSResult.settle` before recording them.
    """
    rdtype = dns.rdatatype.from_text(qtype)
    result = DNSResult(hostname, qtype, "udp", format_hostport(*resolver), time.monotonic() - clock)
    query = dns.message.make_query(hostname, rdtype)
    loop = asyncio.get_running_loop()
    transport = None
    try:
        transport, proto = await loop.create_datagram_endpoint(_UDPCollector, remote_addr=resolver)
        if scrubber is not None:
            scrubber.learn(transport.get_extra_info("socket"))
        transport.sendto(query.to_wire())
        deadline = loop.time() + timeout
        first = await _next_response(proto, query, deadline)
        result.t = time.monotonic() - clock
        if first is None:
            result.failure = failures.GENERIC_TIMEOUT
        else:
            result.raw_response = first[1]
            _apply_response(result, first[0], rdtype)
            if duplicate_window > 0:
                late_until = min(deadline, loop.time() + duplicate_window)
                result.late = asyncio.create_task(
                    _collect_late(proto, transport, query, first[0], result, late_until, clock)
                )
                transport = None  # the background task owns and closes it
    except (OSError, dns.exception.DNSException) as exc:
        result.failure = failures.classify(exc)
        result.t = time.monotonic() - clock
    finally:
        if transport is not None:
            transport.close()
    return result


async def _next_response(
    proto: _UDPCollector, query: dns.message.Message, deadline: float
) -> tuple[dns.message.Message, bytes] | None:
    """The next datagram that answers ``query`` before ``deadline``; None at the deadline."""
    loop = asyncio.get_running_loop()
    while (remaining := deadline - loop.time()) > 0:
        try:
            data = await asyncio.wait_for(proto.queue.get(), remaining)
        except TimeoutError:
            return None
        if not data:
            if proto.error is not None:
                raise proto.error
            continue
        try:
            response = dns.message.from_wire(data)
        except dns.exception.DNSException:
            continue
        if query.is_response(response):
            return response, data
    return None


async def _collect_late(
    proto: _UDPCollector,
    transport: asyncio.DatagramTransport,
    query: dns.message.Message,
    first: dns.message.Message,
    result: DNSResult,
    until: float,
    clock: float,
) -> None:
    rdtype = query.question[0].rdtype
    try:
        while True:
            try:
                got = await _next_response(proto, query, until)
            except OSError:
                continue  # an ICMP error after the first answer says nothing new
            if got is None:
                return
            response, data = got
            answers, addresses = _answers_of(response, rdtype)
            result.duplicates.append(
                {
                    "hostname": result.hostname,
                    "query_type": result.query_type,
                    "resolver_address": result.resolver_address,
                    "rcode": int(response.rcode()),
                    "answers": answers,
                    "addresses": addresses,
                    "differs": sorted(addresses) != sorted(result.addresses)
                    or response.rcode() != first.rcode(),
                    "raw_response": base64.b64encode(data).decode(),
                    "t": round(time.monotonic() - clock, 6),
                }
            )
    finally:
        transport.close()


async def query_doh(
    url: str,
    hostname: str,
    qtype: str,
    *,
    clock: float,
    timeout: float,
    verify: ssl.SSLContext,
    client: Any = None,
    scrubber: Scrubber | None = None,
) -> DNSResult:
    """One query over DNS-over-HTTPS (RFC 8484 POST), the response capped in size."""
    import httpx

    rdtype = dns.rdatatype.from_text(qtype)
    result = DNSResult(hostname, qtype, "doh", url, time.monotonic() - clock)
    query = dns.message.make_query(hostname, rdtype)
    query.id = 0
    own = client is None
    if own:
        client = httpx.AsyncClient(verify=verify, timeout=timeout, trust_env=False)
    try:
        async with asyncio.timeout(timeout):
            async with client.stream(
                "POST",
                url,
                content=query.to_wire(),
                headers={
                    "content-type": "application/dns-message",
                    "accept": "application/dns-message",
                },
            ) as response:
                if scrubber is not None:
                    scrubber.learn_stream(response)
                data = b""
                async for chunk in response.aiter_bytes():
                    data += chunk
                    if len(data) > DNS_MAX_RESPONSE:
                        raise ValueError("DoH response larger than a DNS message can be")
                if response.status_code != 200:
                    result.failure = failures.DNS_SERVER_MISBEHAVING
                else:
                    result.raw_response = data
                    _apply_response(result, dns.message.from_wire(data), rdtype)
    except (TimeoutError, httpx.TimeoutException):
        result.failure = failures.GENERIC_TIMEOUT
    except (httpx.HTTPError, OSError, ValueError, dns.exception.DNSException) as exc:
        from censorwatch.probe.control_client import root_cause

        result.failure = failures.classify(root_cause(exc))
        if result.failure.startswith(failures.UNKNOWN):
            result.failure = failures.DNS_SERVER_MISBEHAVING
    finally:
        if own:
            await client.aclose()
    result.t = time.monotonic() - clock
    return result


async def query_dot(
    resolver: tuple[str, int],
    server_name: str,
    hostname: str,
    qtype: str,
    *,
    clock: float,
    timeout: float,
    verify: ssl.SSLContext,
    scrubber: Scrubber | None = None,
) -> DNSResult:
    """One query over DNS-over-TLS (RFC 7858) to ``resolver``, whose certificate must be valid
    for ``server_name``; everything (connect, handshake, answer) within ``timeout``.

    dnspython frames the exchange (a 2-byte length, so an answer is at most 65535 bytes); the
    connection is opened here so the scrubber learns its local address. dnspython hands back
    the parsed message, not its bytes, so ``raw_response`` stays empty.
    """
    import dns.asyncbackend
    import dns.asyncquery
    import dns.inet

    rdtype = dns.rdatatype.from_text(qtype)
    result = DNSResult(hostname, qtype, "dot", format_hostport(*resolver), time.monotonic() - clock)
    query = dns.message.make_query(hostname, rdtype)
    backend = dns.asyncbackend.get_backend("asyncio")
    try:
        async with asyncio.timeout(timeout):
            sock = await backend.make_socket(
                dns.inet.af_for_address(resolver[0]),
                socket.SOCK_STREAM,
                destination=resolver,
                ssl_context=verify,
                server_hostname=server_name,
            )
            async with sock:
                if scrubber is not None:
                    scrubber.learn(sock.writer.get_extra_info("socket"))
                response = await dns.asyncquery.tls(query, resolver[0], timeout, sock=sock)
        _apply_response(result, response, rdtype)
    except (TimeoutError, dns.exception.Timeout):
        result.failure = failures.GENERIC_TIMEOUT
    except (OSError, EOFError, ValueError, dns.exception.DNSException) as exc:
        result.failure = failures.classify(exc)
        if result.failure.startswith(failures.UNKNOWN):
            result.failure = failures.DNS_SERVER_MISBEHAVING
    result.t = time.monotonic() - clock
    return result
