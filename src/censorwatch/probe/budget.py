"""Time and byte budgets for every network step, in one place so that they are visible.

A probe runs on networks that misbehave on purpose: every read has a cap and every wait has a
deadline, so a hostile server can cost at most these amounts, never more.
"""

from __future__ import annotations

from dataclasses import dataclass

DNS_TIMEOUT = 4.0  # seconds per query
DNS_DUPLICATE_WINDOW = 2.0  # keep listening (in the background) this long for late UDP answers
DNS_LATE_GRACE = 0.3  # ... but once the rest of the URL is measured, wait at most this much more
DNS_MAX_RESPONSE = 65535  # bytes (a DNS message never exceeds this)
CONNECT_TIMEOUT = 5.0
TLS_TIMEOUT = 5.0
QUIC_TIMEOUT = 3.0  # a QUIC handshake (in parallel with TCP/TLS to the same address)
HTTP_TIMEOUT = 10.0  # whole request: connect, handshake, headers and body
HTTP_MAX_HEADERS = 64 * 1024  # bytes of the response head
HTTP_MAX_BODY = 1 << 20  # bytes of body kept in the measurement
HTTP_MAX_REDIRECTS = 10
CONTROL_TIMEOUT = 15.0
CONTROL_MAX_RESPONSE = 1 << 20
THROUGHPUT_SECONDS = 4.0
THROUGHPUT_MAX_BYTES = 16 << 20
URL_DEADLINE = 45.0  # everything for one URL, control and throughput included
MAX_ADDRESSES = 8  # addresses per host measured with TCP/TLS (from all resolvers)
WORKAROUND_TIMEOUT = 5.0  # one way around a block (probe/workarounds.py): connect to page
WORKAROUND_MAX_BYTES = 256 * 1024  # bytes read per way around (head and the page's start)
WORKAROUNDS_DEADLINE = 30.0  # every way around for one URL, after its measurement
LOCATE_MAX_HOPS = 16  # highest TTL a localization tries (probe/locate.py)
LOCATE_PROBES_PER_HOP = 2  # trigger packets per TTL (and as many controls)
LOCATE_WAIT = 1.0  # seconds one TTL-limited probe waits for an answer, a reset or an ICMP error
LOCATE_RATE = 20.0  # probes started per second, at most
LOCATE_DEADLINE = 30.0  # one localization (one trigger kind for one URL)
LOCATE_MAX_BYTES = 256 * 1024  # bytes sent and received by one localization
LOCATE_MAX_READ = 4096  # bytes read per probe


@dataclass(frozen=True)
class Budgets:
    dns_timeout: float = DNS_TIMEOUT
    dns_duplicate_window: float = DNS_DUPLICATE_WINDOW
    dns_late_grace: float = DNS_LATE_GRACE
    connect_timeout: float = CONNECT_TIMEOUT
    tls_timeout: float = TLS_TIMEOUT
    quic_timeout: float = QUIC_TIMEOUT
    http_timeout: float = HTTP_TIMEOUT
    http_max_headers: int = HTTP_MAX_HEADERS
    http_max_body: int = HTTP_MAX_BODY
    max_redirects: int = HTTP_MAX_REDIRECTS
    control_timeout: float = CONTROL_TIMEOUT
    control_max_response: int = CONTROL_MAX_RESPONSE
    throughput_seconds: float = THROUGHPUT_SECONDS
    throughput_max_bytes: int = THROUGHPUT_MAX_BYTES
    url_deadline: float = URL_DEADLINE
    max_addresses: int = MAX_ADDRESSES
    workaround_timeout: float = WORKAROUND_TIMEOUT
    workaround_max_bytes: int = WORKAROUND_MAX_BYTES
    workarounds_deadline: float = WORKAROUNDS_DEADLINE
    locate_max_hops: int = LOCATE_MAX_HOPS
    locate_probes_per_hop: int = LOCATE_PROBES_PER_HOP
    locate_wait: float = LOCATE_WAIT
    locate_rate: float = LOCATE_RATE
    locate_deadline: float = LOCATE_DEADLINE
    locate_max_bytes: int = LOCATE_MAX_BYTES
    locate_max_read: int = LOCATE_MAX_READ
