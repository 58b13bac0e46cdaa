"""One TTL-limited probe on an ordinary socket, and what came back to it.

No raw sockets, so no privileges: the IP TTL of an ordinary UDP or TCP socket is lowered with
``setsockopt(IP_TTL)``, and Linux's ``IP_RECVERR`` hands the ICMP error the packet provoked
back to the socket. A UDP socket gets the whole ICMP message on its error queue
(``MSG_ERRQUEUE``): type, code and the router that sent it. A TCP socket gets only the error
(``EHOSTUNREACH``), not its sender, so a TCP trigger is paired with a UDP *path probe* to the
same address and TTL, whose error names the router (docs/probe.md).

For TCP the connection is made with the ordinary TTL, and only then is the TTL lowered and
the trigger sent (CenTrace's method): the handshake reaches the server, the trigger dies at
the hop the TTL allows, and whatever answers it there (a router's time-exceeded, a censor's
reset or page) comes back on the connection.
"""

from __future__ import annotations

import contextlib
import errno
import select
import socket
import ssl
import struct
import sys
import time
from dataclasses import dataclass

from censorwatch import failures
from censorwatch.analysis.locate import (
    ANSWER,
    CLOSED,
    ERROR,
    RESET,
    TIME_EXCEEDED,
    TIMEOUT,
    UNREACHABLE,
)

#: ``IP_RECVERR`` (linux/in.h); Python's socket module does not name it.
IP_RECVERR = 11
SO_EE_ORIGIN_ICMP = 2
ICMP_DEST_UNREACH, ICMP_TIME_EXCEEDED = 3, 11
_EXTENDED_ERR = struct.Struct("=IBBBBII")  # struct sock_extended_err
#: After the first thing comes back, listen this much longer: an on-path injector lets the
#: packet go on and expire, so its answer and the router's time-exceeded both arrive.
SETTLE = 0.25
#: The TTL a connection is made with, and restored before it is closed.
NORMAL_TTL = 64
#: The first port of a UDP path probe (traceroute's), plus the TTL.
PATH_PORT = 33434

#: Which of two outcomes of one probe is kept (an injected answer over the ICMP error).
_ORDER = (ANSWER, RESET, CLOSED, TIME_EXCEEDED, UNREACHABLE, ERROR, TIMEOUT)


@dataclass
class Heard:
    """What came back to one probe."""

    outcome: str = TIMEOUT
    icmp_source: str | None = None  # the router (or end host) that sent an ICMP error
    data: bytes = b""
    failure: str | None = None  # when the probe itself failed (outcome "error")
    sent: int = 0  # bytes
    received: int = 0
    eof: bool = False


def unavailable() -> str | None:
    """Why TTL-limited probes cannot run here, or None when they can."""
    if not sys.platform.startswith("linux"):
        return (
            "needs Linux's IP_RECVERR to hear ICMP time-exceeded on an ordinary socket "
            f"(this system is {sys.platform}); raw sockets would need privileges"
        )
    return None


def dns_query(name: str, query_id: int) -> bytes:
    """A DNS query for ``name``'s A record, recursion desired."""
    import dns.message

    query = dns.message.make_query(name, "A")
    query.id = query_id
    return query.to_wire()


def client_hello(sni: str) -> bytes:
    """The first flight of a TLS client that names ``sni``: what an SNI filter reads."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=sni)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def http_request(host: str, path: str = "/") -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: censorwatch\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    ).encode()


def _icmp_error(sock: socket.socket, heard: Heard) -> bool:
    """Read one ICMP error off the socket's error queue into ``heard``; False if none."""
    try:
        _data, ancillary, _flags, _addr = sock.recvmsg(
            512, 512, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT
        )
    except OSError:
        return False
    for level, kind, blob in ancillary:
        if level != socket.IPPROTO_IP or kind != IP_RECVERR or len(blob) < _EXTENDED_ERR.size:
            continue
        _errno, origin, icmp_type, _code, _pad, _info, _d = _EXTENDED_ERR.unpack_from(blob)
        offender = blob[_EXTENDED_ERR.size :]
        source = socket.inet_ntoa(offender[4:8]) if len(offender) >= 8 else None
        if origin == SO_EE_ORIGIN_ICMP and icmp_type == ICMP_TIME_EXCEEDED:
            heard.outcome, heard.icmp_source = TIME_EXCEEDED, source
        elif origin == SO_EE_ORIGIN_ICMP and icmp_type == ICMP_DEST_UNREACH:
            heard.outcome, heard.icmp_source = UNREACHABLE, source
        else:
            heard.outcome, heard.failure = ERROR, f"unexpected error origin {origin}"
    return True


def _stronger(current: str, new: str) -> bool:
    return _ORDER.index(new) < _ORDER.index(current)


def udp_probe(
    ip: str,
    port: int,
    payload: bytes,
    ttl: int,
    *,
    wait: float,
    max_read: int,
    accept: bytes | None = None,
) -> Heard:
    """Send one datagram with ``ttl``; an answer whose first bytes are ``accept`` (a DNS
    message id) counts, any other datagram is ignored."""
    heard = Heard()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        sock.setblocking(False)
        try:
            sock.connect((ip, port))
            heard.sent = sock.send(payload)
        except OSError as exc:
            heard.outcome, heard.failure = ERROR, failures.classify(exc)
            return heard
        poller = select.poll()
        poller.register(sock, select.POLLIN | select.POLLERR)
        deadline = time.monotonic() + wait
        while (remaining := deadline - time.monotonic()) > 0:
            if not poller.poll(remaining * 1000):
                break
            if _icmp_error(sock, got := Heard()):
                if _stronger(heard.outcome, got.outcome):
                    heard.outcome, heard.icmp_source = got.outcome, got.icmp_source
                    heard.failure = got.failure
            else:
                try:
                    data = sock.recv(max_read)
                except OSError:
                    continue
                heard.received += len(data)
                if accept is None or data.startswith(accept):
                    heard.outcome, heard.data = ANSWER, data
            if heard.outcome != TIMEOUT:
                deadline = min(deadline, time.monotonic() + SETTLE)
    return heard


def tcp_probe(
    ip: str,
    port: int,
    payload: bytes,
    ttl: int,
    *,
    wait: float,
    connect_timeout: float,
    max_read: int,
) -> Heard:
    """Connect with the normal TTL, lower it to ``ttl``, send ``payload`` and listen."""
    heard = Heard()
    try:
        sock = socket.create_connection((ip, port), timeout=connect_timeout)
    except OSError as exc:
        heard.outcome, heard.failure = ERROR, failures.classify(exc)
        return heard
    try:
        sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        sock.setblocking(False)
        heard.sent = sock.send(payload)
        poller = select.poll()
        poller.register(sock, select.POLLIN | select.POLLERR)
        deadline = time.monotonic() + wait
        while (remaining := deadline - time.monotonic()) > 0:
            if not poller.poll(remaining * 1000):
                break
            outcome = _tcp_event(sock, heard, max_read)
            if outcome is not None and _stronger(heard.outcome, outcome):
                heard.outcome = outcome
            if heard.outcome == RESET or heard.eof or heard.received >= max_read:
                break
            if heard.outcome != TIMEOUT:
                deadline = min(deadline, time.monotonic() + SETTLE)
    except OSError as exc:
        heard.outcome, heard.failure = ERROR, failures.classify(exc)
    finally:
        _abort(sock)
    return heard


def _tcp_event(sock: socket.socket, heard: Heard, max_read: int) -> str | None:
    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if code in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return TIME_EXCEEDED  # an ICMP error for the segment; its sender is not told
    if code in (errno.ECONNRESET, errno.EPIPE):
        return RESET
    if code:
        heard.failure = failures.classify(OSError(code, errno.errorcode.get(code, "")))
        return ERROR
    try:
        data = sock.recv(max(1, max_read - heard.received))
    except ConnectionResetError:
        return RESET
    except (BlockingIOError, InterruptedError):
        return None
    except OSError as exc:
        if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return TIME_EXCEEDED
        heard.failure = failures.classify(exc)
        return ERROR
    if not data:
        heard.eof = True
        return CLOSED if not heard.data else ANSWER
    heard.received += len(data)
    heard.data += data
    return ANSWER


def _abort(sock: socket.socket) -> None:
    """Close with a RST that reaches the server (normal TTL again), so the trigger left in
    the send queue is never retransmitted further along the path."""
    try:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, NORMAL_TTL)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def path_probe(ip: str, ttl: int, *, wait: float) -> Heard:
    """A small UDP datagram to an unused port: the router at ``ttl`` answers time-exceeded
    with its address, the end host port-unreachable."""
    return udp_probe(
        ip, PATH_PORT + ttl, b"censorwatch path probe", ttl, wait=wait, max_read=512, accept=b""
    )
