"""Download rate of a platform's large object, next to that of a reference object.

A throttled platform and a slow network look alike from one download. Fetching the platform's
object and, right after, a same-size object from a host that is no target separates the two:
only the platform's rate drops. The summary and the bytes over time (``samples``: pairs of
seconds since the measurement began and bytes received so far) go to ``x_throughput``; OONI's
``network_events`` (df-008) has no operation for such samples, so it is left to OONI's own
socket-level events.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from censorwatch import failures
from censorwatch.probe import http, tls
from censorwatch.probe.budget import Budgets
from censorwatch.scrub import Scrubber

DEFAULT_PATH = "/censorwatch/throughput.bin"
SAMPLE_EVERY = 0.05  # seconds between recorded samples (plus first and last)
#: A target rate below this share of the reference's is measured once more before it is
#: reported: on a lossy network one TCP transfer can stall on a retransmission timeout while
#: the next does not, but a throttle is slow every time. Looser than the analysis's
#: throttling ratio, so that every pair the analysis could call throttled was confirmed.
CONFIRM_BELOW_RATIO = 0.5


def object_url(url: str, path: str | None = None) -> str:
    """``<scheme>://<host>[:port]`` of ``url`` with the throughput object's path."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path or DEFAULT_PATH, "", ""))


@dataclass
class Download:
    url: str
    address: str = ""
    failure: str | None = None
    status_code: int | None = None
    bytes: int = 0
    seconds: float = 0.0
    samples: list[tuple[float, int]] = field(default_factory=list)  # (t, bytes so far)

    @property
    def bps(self) -> float:
        return round(self.bytes * 8 / self.seconds, 1) if self.seconds > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "address": self.address,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 6),
            "bps": self.bps,
            "status_code": self.status_code,
            "failure": self.failure,
            "samples": [[t, n] for t, n in self.samples],
        }


async def download(
    url: str,
    resolve: http.Resolver,
    *,
    clock: float,
    budgets: Budgets,
    anchors: tls.TrustAnchors,
    scrubber: Scrubber | None = None,
) -> Download:
    """Fetch ``url`` for at most the throughput time budget and byte cap, sampling progress."""
    result = Download(url)
    host = urlsplit(url).hostname or ""
    addresses, failure = await resolve(host)
    if not addresses:
        result.failure = failure or failures.DNS_NO_ANSWER
        return result
    started = time.monotonic()
    last = [-SAMPLE_EVERY]

    def on_bytes(total: int) -> None:
        now = time.monotonic()
        if now - started - last[0] >= SAMPLE_EVERY:
            last[0] = now - started
            result.samples.append((round(now - clock, 6), total))

    result.address = f"{addresses[0]}"
    exchange = await http.fetch_once(
        url,
        addresses[0],
        clock=clock,
        budgets=budgets,
        anchors=anchors,
        scrubber=scrubber,
        max_body=budgets.throughput_max_bytes,
        keep_body=False,
        timeout=budgets.throughput_seconds,
        on_bytes=on_bytes,
    )
    result.address = exchange.address
    result.seconds = time.monotonic() - started
    result.bytes = exchange.body_length
    result.status_code = exchange.status_code
    # Running out of the time budget mid-body is the measurement, not a failure.
    if exchange.failure and not (
        exchange.failure == failures.GENERIC_TIMEOUT and exchange.body_length > 0
    ):
        result.failure = exchange.failure
    result.samples.append((round(time.monotonic() - clock, 6), result.bytes))
    return result


def needs_confirming(target: Download, reference: Download) -> bool:
    """The reference moved data and the target moved it so much slower that a second pair
    of downloads must say whether that is the platform or a stall of this one transfer. A
    target download that failed otherwise (a reset, a DNS failure) is not slow, it is
    blocked, and is not repeated."""
    slow_or_starved = target.failure in (None, failures.GENERIC_TIMEOUT)
    return (
        slow_or_starved and reference.bps > 0 and target.bps < reference.bps * CONFIRM_BELOW_RATIO
    )


def ratio(target: Download, reference: Download) -> float:
    return target.bps / reference.bps if reference.bps > 0 else 0.0
