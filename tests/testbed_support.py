"""Bring a testbed up for tests, and run small network clients inside its namespaces."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from censorwatch.testbed import manager
from censorwatch.testbed.state import TestbedState

CLIENT = textwrap.dedent(
    """
    import json, socket, ssl, sys, time
    import dns.message, dns.query, dns.rcode
    from censorwatch.failures import classify
    kind, args = sys.argv[1], json.loads(sys.argv[2])
    out = {}
    t0 = time.monotonic()
    try:
        if kind == "dns":
            q = dns.message.make_query(args["name"], "A")
            r = dns.query.udp(q, args["server"], timeout=args.get("timeout", 3))
            out["rcode"] = dns.rcode.to_text(r.rcode())
            out["answers"] = sorted(a.address for rr in r.answer for a in rr)
        elif kind == "tcp":
            addr = (args["ip"], args["port"])
            if "count" in args:
                ok = 0
                for _ in range(args["count"]):
                    try:
                        socket.create_connection(addr, timeout=args.get("timeout", 3)).close()
                        ok += 1
                    except OSError:
                        pass
                out["connected"] = ok
            else:
                socket.create_connection(addr, timeout=args.get("timeout", 3)).close()
        elif kind == "tls":
            ctx = ssl.create_default_context(cafile=args["ca"])
            ctx.check_hostname = args.get("sni") is not None
            if args.get("sni") is None:
                ctx.verify_mode = ssl.CERT_NONE
            raw = socket.create_connection((args["ip"], 443), timeout=args.get("timeout", 3))
            s = ctx.wrap_socket(raw, server_hostname=args.get("sni"))
            out["version"] = s.version()
            s.close()
        elif kind == "quic":
            import asyncio
            from aioquic.asyncio import connect
            from aioquic.h3.connection import H3_ALPN
            from aioquic.quic.configuration import QuicConfiguration
            config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN,
                                       server_name=args["sni"])
            config.load_verify_locations(args["ca"])
            config.idle_timeout = args.get("timeout", 3)

            async def handshake():
                async with connect(args["ip"], 443, configuration=config) as proto:
                    return proto._quic.tls.alpn_negotiated

            out["alpn"] = asyncio.run(asyncio.wait_for(handshake(), args.get("timeout", 3)))
        elif kind == "http":
            addr = (args["ip"], args.get("port", 443 if args.get("tls") else 80))
            raw = socket.create_connection(addr, timeout=args.get("timeout", 3))
            sock = raw
            if args.get("tls"):
                ctx = ssl.create_default_context(cafile=args["ca"])
                sock = ctx.wrap_socket(raw, server_hostname=args["host"])
            path, host = args.get("path", "/"), args["host"]
            crlf = "\\r\\n"
            request = f"GET {path} HTTP/1.1{crlf}Host: {host}{crlf}Connection: close{crlf}{crlf}"
            sock.sendall(request.encode())
            data = b""
            deadline = time.monotonic() + args.get("timeout", 3)
            limit = args.get("limit", 1 << 20)
            while len(data) < limit and time.monotonic() < deadline:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    chunk = sock.recv(65536)
                except (socket.timeout, ssl.SSLEOFError):
                    break
                if not chunk:
                    break
                data += chunk
            out["status"] = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else None
            out["bytes"] = len(data)
            out["head"] = data[:2000].decode("latin-1")
        out["failure"] = None
    except Exception as exc:
        out["failure"] = classify(exc)
    out["seconds"] = round(time.monotonic() - t0, 3)
    print(json.dumps(out))
    """
)


METHOD_NETWORKS = {
    "dns-nxdomain": "AS64501",
    "dns-bogon": "AS64502",
    "dns-inject": "AS64503",
    "dns-timeout": "AS64504",
    "tcp-drop": "AS64505",
    "tcp-rst": "AS64506",
    "tls-rst": "AS64507",
    "tls-drop": "AS64508",
    "tls-mitm": "AS64509",
    "http-blockpage": "AS64510",
    "http-rst": "AS64511",
    "quic-drop": "AS64512",
    "throttle": "AS64513",
}
OPEN, SCHEDULED, LIVE = "AS64520", "AS64530", "AS64540"
SCHEDULE_ON, SCHEDULE_OFF = 8.0, 16.0


def methods_scenario() -> str:
    parts = ['name = "every-method"']
    for asn in [*METHOD_NETWORKS.values(), OPEN, SCHEDULED, LIVE]:
        parts.append(f'[[network]]\nasn = "{asn}"\ncc = "PK"')
    for host in ("x.com", "twitter.com", "video.twimg.com", "www.example.org"):
        parts.append(f'[[target]]\nhost = "{host}"\npaths = ["/", "/robots.txt"]')
    parts.append('[[target]]\nhost = "down.example"\ndown = true')
    for method, asn in METHOD_NETWORKS.items():
        targets = '["video.twimg.com"]' if method == "throttle" else '["x.com", "twitter.com"]'
        rate = '\nrate = "1mbit"' if method == "throttle" else ""
        parts.append(
            f'[[censor]]\nnetwork = "{asn}"\nmethod = "{method}"\ntargets = {targets}' + rate
        )
    parts.append(
        f'[[censor]]\nnetwork = "{SCHEDULED}"\nmethod = "tls-rst"\n'
        f'targets = ["x.com"]\nstart = "{SCHEDULE_ON:g}s"\nend = "{SCHEDULE_OFF:g}s"'
    )
    return "\n\n".join(parts) + "\n"


class RunningTestbed:
    """A running testbed as the tests see it."""

    def __init__(self, state: TestbedState) -> None:
        self.state = state
        self.plan = state.plan()

    @property
    def id(self) -> str:
        return self.state.id

    @property
    def ca(self) -> str:
        return str(self.state.ca_file)

    def ns(self, asn: str) -> str:
        return self.plan.network(asn).probe_ns

    def client(self, asn: str, kind: str, **args: object) -> dict:
        proc = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                self.ns(asn),
                sys.executable,
                "-c",
                CLIENT,
                kind,
                json.dumps(args),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    def exec_command(self, asn: str, *command: str) -> list[str]:
        """``censorwatch testbed exec ASN -- COMMAND`` for this testbed."""
        return [sys.executable, "-m", "censorwatch", "testbed", "exec", asn, "--id", self.id,
                "--", *command]  # fmt: skip

    def resolver(self, asn: str) -> str:
        return self.plan.network(asn).censor_lan_ip

    def address(self, host: str) -> str:
        return self.plan.hosts[host].addresses[0]

    def elapsed(self) -> float:
        import time

        return time.time() - self.state.info()["started_at"]


@contextmanager
def running_testbed(scenario: Path | str, tb_id: str) -> Iterator[RunningTestbed]:
    state = manager.up(str(scenario), tb_id, replace=True)
    try:
        yield RunningTestbed(state)
    finally:
        manager.down(tb_id)
