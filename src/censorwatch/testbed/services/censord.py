"""The censor daemon of one network: its ISP resolver, its packet inspector, its block server.

Runs inside the network's censor namespace. Firewall rules send it DNS queries, TLS
ClientHellos and HTTP requests (NFQUEUE, with bypass so traffic flows while it starts);
the policy file written by ``censor.reconcile`` says what to do with them.

    python -m censorwatch.testbed.services.censord STATE_DIR ASN
    python -m censorwatch.testbed.services.censord STATE_DIR --hop NAMESPACE

The second form is a censor on a router further up a path (core, gateway, transit): no
resolver and no block server of its own, and a policy per network that matches packets by
the network's client prefixes, since such a router carries other networks' traffic too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import signal
import socket
import struct
import sys
import threading
import time
from pathlib import Path

import dns.message
import dns.rcode
import dns.rdatatype
from netfilterqueue import NetfilterQueue
from scapy.layers.inet import IP, TCP, UDP
from scapy.packet import Raw

from censorwatch.console import service_logging
from censorwatch.testbed.censor import (
    QUEUE_DNS,
    QUEUE_HTTP,
    QUEUE_TLS,
    hop_policy_file,
    ready_file,
)
from censorwatch.testbed.plan import AUTHORITATIVE_DNS, BOGON_ANSWER
from censorwatch.testbed.services import dns as dnsservice
from censorwatch.testbed.services import web
from censorwatch.testbed.services.packets import (
    http_request_host,
    name_matches,
    tls_client_hello_sni,
)
from censorwatch.testbed.state import TestbedState

log = logging.getLogger("censord")

BLOCKPAGE_TITLE = "Website blocked"
BLOCKPAGE_TEXT = (
    "This website is not accessible. Access to this site has been blocked on the "
    "instructions of the telecommunication authority."
)


def blockpage_html() -> bytes:
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{BLOCKPAGE_TITLE}</title></head>\n"
        f"<body><h1>{BLOCKPAGE_TITLE}</h1>\n<p>{BLOCKPAGE_TEXT}</p>\n</body></html>\n"
    ).encode()


class Policy:
    """The daemon's view of the policy file, reloaded whenever the file changes.

    An access daemon's file holds one network's methods (every packet it sees is that
    network's); a hop daemon's holds several, each with the client prefixes it applies to.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.methods: dict[str, frozenset[str]] = {}
        self.forged_address = ""
        # (client prefixes or None for every client, methods, forged address)
        self.rules: list[tuple[tuple[ipaddress.IPv4Network, ...] | None, dict, str]] = []
        self._mtime = 0.0

    def refresh(self) -> None:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return
        if mtime == self._mtime:
            return
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return  # being replaced; the next look sees the new file
        rules = []
        if "networks" in data:
            for entry in data["networks"]:
                clients = tuple(ipaddress.IPv4Network(c) for c in entry.get("clients", []))
                methods = {m: frozenset(t) for m, t in entry.get("methods", {}).items()}
                rules.append((clients, methods, entry.get("forged_address", "")))
        else:
            methods = {m: frozenset(t) for m, t in data.get("methods", {}).items()}
            rules.append((None, methods, data.get("forged_address", "")))
            self.methods, self.forged_address = methods, data.get("forged_address", "")
        self.rules = rules
        self._mtime = mtime
        log.info("policy now %s", [{m: sorted(t) for m, t in r[1].items()} for r in rules])

    def _rule_for(self, client: str | None) -> tuple[dict, str] | None:
        for clients, methods, forged in self.rules:
            if clients is None:
                return methods, forged
            try:
                ip = ipaddress.IPv4Address(client or "")
            except ValueError:
                continue
            if any(ip in c for c in clients):
                return methods, forged
        return None

    def blocks(self, method: str, name: str | None, client: str | None = None) -> bool:
        rule = self._rule_for(client)
        names = rule[0].get(method) if rule else None
        return bool(names and name and name_matches(name, names))

    def forged_for(self, client: str | None) -> str:
        rule = self._rule_for(client)
        return rule[1] if rule else ""

    def watch(self, interval: float = 0.05) -> None:
        while True:
            self.refresh()
            time.sleep(interval)


class Injector:
    """Sends forged packets with any source address, as an on-path middlebox can."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)

    def send(self, packet: IP) -> None:
        self.sock.sendto(bytes(packet), (packet.dst, 0))


def _ipv4(payload: bytes) -> tuple[str, str, int, bytes] | None:
    """(src, dst, protocol, transport bytes) of an IPv4 packet."""
    if len(payload) < 20 or payload[0] >> 4 != 4:
        return None
    ihl = (payload[0] & 0x0F) * 4
    return (
        socket.inet_ntoa(payload[12:16]),
        socket.inet_ntoa(payload[16:20]),
        payload[9],
        payload[ihl:],
    )


def _tcp(segment: bytes) -> tuple[int, int, int, int, bytes] | None:
    if len(segment) < 20:
        return None
    sport, dport, seq, ack = struct.unpack_from("!HHII", segment)
    offset = (segment[12] >> 4) * 4
    return sport, dport, seq, ack, segment[offset:]


class Censor:
    def __init__(self, policy: Policy, injector: Injector) -> None:
        self.policy = policy
        self.inject = injector

    # -- DNS -----------------------------------------------------------------------------
    def on_dns(self, pkt) -> None:
        parsed = _ipv4(pkt.get_payload())
        if parsed is None or parsed[2] != socket.IPPROTO_UDP or len(parsed[3]) < 8:
            pkt.accept()
            return
        src, dst, _, udp = parsed
        sport, dport = struct.unpack_from("!HH", udp)
        try:
            query = dns.message.from_wire(udp[8:])
            qname = query.question[0].name.to_text(omit_final_dot=True).lower()
        except Exception:
            pkt.accept()
            return
        if self.policy.blocks("dns-timeout", qname, src):
            pkt.drop()
            return
        if self.policy.blocks("dns-inject", qname, src):
            forged = dnsservice.forged_response(query, address=self.policy.forged_for(src))
            self.inject.send(
                IP(src=dst, dst=src) / UDP(sport=dport, dport=sport) / Raw(forged.to_wire())
            )
            log.info("injected forged answer for %s to %s", qname, src)
        pkt.accept()

    # -- TLS -----------------------------------------------------------------------------
    def on_tls(self, pkt) -> None:
        parsed = _ipv4(pkt.get_payload())
        tcp = _tcp(parsed[3]) if parsed and parsed[2] == socket.IPPROTO_TCP else None
        if tcp is None:
            pkt.accept()
            return
        sni = tls_client_hello_sni(tcp[4])
        if self.policy.blocks("tls-rst", sni, parsed[0]):
            self._reset_both(parsed[0], parsed[1], tcp)
            pkt.drop()
            log.info("reset TLS to %s (sni=%s) for %s", parsed[1], sni, parsed[0])
        elif self.policy.blocks("tls-drop", sni, parsed[0]):
            pkt.drop()
        else:
            pkt.accept()

    # -- HTTP ----------------------------------------------------------------------------
    def on_http(self, pkt) -> None:
        parsed = _ipv4(pkt.get_payload())
        tcp = _tcp(parsed[3]) if parsed and parsed[2] == socket.IPPROTO_TCP else None
        if tcp is None:
            pkt.accept()
            return
        host = http_request_host(tcp[4])
        if self.policy.blocks("http-blockpage", host, parsed[0]):
            self._inject_blockpage(parsed[0], parsed[1], tcp)
            pkt.drop()
            log.info("injected blockpage for %s to %s", host, parsed[0])
        elif self.policy.blocks("http-rst", host, parsed[0]):
            self._reset_both(parsed[0], parsed[1], tcp)
            pkt.drop()
        else:
            pkt.accept()

    def _reset_both(self, client: str, server: str, tcp: tuple[int, int, int, int, bytes]) -> None:
        sport, dport, seq, ack, _ = tcp
        self.inject.send(
            IP(src=server, dst=client) / TCP(sport=dport, dport=sport, flags="R", seq=ack)
        )
        self.inject.send(
            IP(src=client, dst=server) / TCP(sport=sport, dport=dport, flags="R", seq=seq)
        )

    def _inject_blockpage(
        self, client: str, server: str, tcp: tuple[int, int, int, int, bytes]
    ) -> None:
        sport, dport, seq, ack, payload = tcp
        body = blockpage_html()
        response = (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
            + f"Content-Length: {len(body)}\r\n".encode()
            + b"Connection: close\r\n\r\n"
            + body
        )
        their_next = (seq + len(payload)) & 0xFFFFFFFF
        ours = ack
        for i in range(0, len(response), 1200):
            chunk = response[i : i + 1200]
            self.inject.send(
                IP(src=server, dst=client)
                / TCP(sport=dport, dport=sport, flags="PA", seq=ours, ack=their_next)
                / Raw(chunk)
            )
            ours = (ours + len(chunk)) & 0xFFFFFFFF
        self.inject.send(
            IP(src=server, dst=client)
            / TCP(sport=dport, dport=sport, flags="FA", seq=ours, ack=their_next)
        )


def _bind_queues(censor: Censor) -> None:
    """Bind every queue first, then serve each in its thread: once this returns, the daemon
    enforces, and it says so with its ready file."""
    for queue_num, callback in (
        (QUEUE_DNS, censor.on_dns),
        (QUEUE_TLS, censor.on_tls),
        (QUEUE_HTTP, censor.on_http),
    ):
        nfq = NetfilterQueue()
        nfq.bind(queue_num, callback, max_len=4096)

        def run(nfq: NetfilterQueue = nfq) -> None:
            try:
                nfq.run()
            finally:
                nfq.unbind()

        threading.Thread(target=run, name=f"nfqueue-{queue_num}", daemon=True).start()
    ready_file(censor.policy.path).write_text(str(time.time()))


async def _serve(state: TestbedState, asn: str, policy: Policy) -> None:
    plan = state.plan()
    net = plan.network(asn)

    async def resolve(wire: bytes, peer: tuple[str, int]) -> bytes | None:
        policy.refresh()
        try:
            query = dns.message.from_wire(wire)
            qname = query.question[0].name.to_text(omit_final_dot=True).lower()
            is_a = query.question[0].rdtype == dns.rdatatype.A
        except Exception:
            return None
        if policy.blocks("dns-nxdomain", qname):
            return dnsservice.forged_response(query, rcode=dns.rcode.NXDOMAIN).to_wire()
        if policy.blocks("dns-bogon", qname):
            return dnsservice.forged_response(
                query, address=BOGON_ANSWER if is_a else None
            ).to_wire()
        return await dnsservice.forward(wire, AUTHORITATIVE_DNS)

    await dnsservice.serve_udp(net.censor_lan_ip, 53, resolve)

    async def blockpage(_req: web.Request) -> web.Response:
        return web.Response(200, blockpage_html(), [("Content-Type", "text/html; charset=utf-8")])

    cert = state.pki_dir / "censor" / "blocked.pem"
    key = state.pki_dir / "censor" / "blocked.key"
    await web.serve_http(net.censor_wan_ip, 80, blockpage)
    await web.serve_http(net.censor_wan_ip, 443, blockpage, web.server_context(cert, key))
    log.info("censor of %s ready", asn)
    await asyncio.Event().wait()


def main(argv: list[str]) -> None:
    state_dir = Path(argv[0])
    service_logging()
    state = TestbedState(state_dir)
    hop_namespace = argv[2] if argv[1] == "--hop" else None
    path = hop_policy_file(state, hop_namespace) if hop_namespace else state.policy_file(argv[1])
    policy = Policy(path)
    policy.refresh()
    censor = Censor(policy, Injector())
    threading.Thread(target=policy.watch, name="policy", daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    _bind_queues(censor)
    if hop_namespace:
        log.info("censor at %s ready", hop_namespace)
        threading.Event().wait()
    else:
        asyncio.run(_serve(state, argv[1], policy))


if __name__ == "__main__":
    main(sys.argv[1:])
