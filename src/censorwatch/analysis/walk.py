"""The verdict for one web_connectivity measurement: follow the probe's path to the page.

The probe's path is DNS -> TCP -> TLS -> HTTP, once per hop of the redirect chain. The first
step that broke is where a block can be; the control (the same steps from an uncensored
vantage) tells a block from a site that is down everywhere. When nothing broke, the final page
is checked against blockpage fingerprints and compared with the control's. docs/verdicts.md
explains every rule; ``confidence`` names every confidence.
"""

from __future__ import annotations

from censorwatch.analysis import confidence as C
from censorwatch.analysis.context import WebAnalysis
from censorwatch.analysis.dns import check_dns
from censorwatch.analysis.fingerprints import Fingerprints
from censorwatch.analysis.http import check_final_page, check_http_hop
from censorwatch.analysis.outcome import Outcome
from censorwatch.analysis.transport import check_transport
from censorwatch.netinfo import AddressPlan
from censorwatch.observations.builder import Observations, url_parts

Hop = tuple[int, str, str, int]  # depth, host, scheme, port


def analyze_web(
    obs: Observations,
    url: str,
    cc: str | None,
    fingerprints: Fingerprints,
    plan: AddressPlan,
) -> Outcome:
    """The outcome for one measurement's observations (``url`` is its input)."""
    a = WebAnalysis(obs, url, cc, fingerprints, plan)
    out = a.out
    if not a.host:
        return out.done("unknown", C.NONE, "input is not a URL with a host name")
    for depth, host, scheme, port in hops(a):
        # Layers describe the hop the verdict was decided on.
        out.layers = dict.fromkeys(out.layers)
        a.tls_context = None
        if (
            check_dns(a, depth, host)
            or check_transport(a, depth, host, scheme, port)
            or check_http_hop(a, depth)
        ):
            return _with_dns_context(a, out)
    return _with_dns_context(a, check_final_page(a))


def _with_dns_context(a: WebAnalysis, out: Outcome) -> Outcome:
    """A block decided past DNS also says when DNS disagreed with the control."""
    if out.verdict == "blocked" and out.method and not out.method.startswith("dns."):
        out.evidence.extend(e for e in a.dns_inconsistent if e not in out.evidence)
    return out


def hops(a: WebAnalysis) -> list[Hop]:
    """(depth, host, scheme, port) for the input and every redirect the probe followed."""
    found: list[Hop] = [(0, a.host, a.scheme, a.port)]
    seen_depths = {0}
    for h in a.obs.http:
        if h.depth in seen_depths or not h.host:
            continue
        scheme, host, port = url_parts(h.url)
        found.append((h.depth, host, scheme, port))
        seen_depths.add(h.depth)
    # Hops that failed before any request was recorded (DNS/TCP/TLS at depth > 0).
    for q in a.obs.queries:
        if q.depth not in seen_depths and q.hostname:
            tls = [t for t in a.obs.tcp if t.depth == q.depth]
            ports = {t.port for t in tls} or {0}
            port = 443 if 443 in ports and 80 not in ports else min(ports)
            scheme = "https" if port == 443 else "http"
            found.append((q.depth, q.hostname, scheme, port))
            seen_depths.add(q.depth)
    if len(found) > 1:
        found.sort(key=lambda h: h[0])
    return found
