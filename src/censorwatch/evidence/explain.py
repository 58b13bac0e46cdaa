"""Each blocking method in plain words, for a reader who is not a network engineer.

One entry per method code the analysis gives (``analysis``: ``dns.forged``, ``tls.reset``,
...): what the probe observed, why that indicates interference, what else could produce it,
and how the measurements rule that out. Neutral wording: the page says what was seen, not who
did it. The report adds, per event, the two checks every method shares (the control's view
and the other networks' view at the same time).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Explanation:
    name: str  # a short name people can say
    observed: str
    why: str
    otherwise: str  # what else could produce the same observation, and how it is ruled out


_EXPLANATIONS = {
    "dns.forged": Explanation(
        "forged DNS answer",
        "When the probe asked for the site's address, it received an address that does not "
        "belong to the site.",
        "A device on the path answered in place of the real name server, so the browser is "
        "sent somewhere other than the site.",
        "A site can change its addresses or use a content network; this is ruled out because "
        "the addresses were compared with those the control (an uncensored vantage) got at "
        "the same time, and with the networks that own them.",
    ),
    "dns.nxdomain": Explanation(
        "name said not to exist",
        "The network's resolver answered that the site's name does not exist (NXDOMAIN).",
        "The name exists: the resolver's answer hides it from the network's users.",
        "A name can lapse or be mistyped; the control resolved the same name at the same "
        "time and got the site's addresses.",
    ),
    "dns.bogon": Explanation(
        "unroutable DNS answer",
        "The site's name resolved to a private or reserved address that no public site uses.",
        "No public site has such an address; an answer like this sends users nowhere.",
        "A misconfigured resolver could give one by mistake; the control got public addresses "
        "for the same name, and other networks at the same time did too.",
    ),
    "dns.failure": Explanation(
        "DNS lookup failed",
        "The lookup of the site's name failed (refused, timed out or gave no answer).",
        "Lookups of the site failed while the control's lookups of the same name succeeded.",
        "Resolvers fail now and then; a failure that repeats round after round on one "
        "network while the control and other networks succeed is not a passing fault.",
    ),
    "tcp.reset": Explanation(
        "connection reset",
        "The connection to the site's address was torn down (a TCP reset) as it was opened.",
        "A device on the path ended the connection in place of the site.",
        "A server can refuse connections; the control connected to the same addresses.",
    ),
    "tcp.timeout": Explanation(
        "connection dropped",
        "Attempts to connect to the site's address got no answer at all.",
        "The packets to the site's address were dropped on the way (a blackhole).",
        "A server that is down looks the same; the control connected to the same addresses "
        "at the same time, and other networks did too.",
    ),
    "tls.reset": Explanation(
        "secure connection reset on the site's name",
        "The connection was reset right after the probe named the site in the opening of a "
        "secure (TLS) connection.",
        "The reset follows the site's name (SNI), which a device on the path reads: the "
        "connection to the same address works until the name is seen.",
        "A server fault would not depend on the name; the control completed the same handshake.",
    ),
    "tls.timeout": Explanation(
        "secure connection stalled on the site's name",
        "After the probe named the site in the opening of a secure connection, no answer came.",
        "The handshake is dropped once the site's name is seen on the path.",
        "A slow or overloaded server stalls too; the control completed the same handshake.",
    ),
    "tls.mitm": Explanation(
        "forged certificate",
        "The secure connection presented a certificate that does not prove it is the site.",
        "A device on the path impersonated the site.",
        "A misconfigured site can present a wrong certificate; the control got a valid one.",
    ),
    "http.reset": Explanation(
        "web request reset",
        "The connection was reset right after the probe sent its web request for the site.",
        "A device on the path read the request and ended the connection.",
        "The control fetched the same page.",
    ),
    "http.timeout": Explanation(
        "web request dropped",
        "The web request for the site got no answer.",
        "The request was dropped on the path.",
        "A slow server looks the same; the control fetched the same page at the same time.",
    ),
    "http.blockpage": Explanation(
        "block page",
        "Instead of the site, the probe received a page that matches a known block page.",
        "The page is one that networks serve to say a site is blocked.",
        "The page was matched against published block-page fingerprints; the control got "
        "the site itself.",
    ),
    "http.diff": Explanation(
        "different page",
        "The page the probe received differs from the one the control received.",
        "Something on the path replaced or altered the site's page.",
        "Sites vary their pages; the difference is in status, title and size together.",
    ),
    "quic.blocked": Explanation(
        "QUIC (HTTP/3) blocked",
        "Connections to the site over QUIC (UDP port 443) failed while other connections to "
        "the same address did not.",
        "Only the QUIC traffic to the site is being stopped.",
        "The control reached the site over QUIC.",
    ),
    "throttled": Explanation(
        "slowed down",
        "Downloads from the site were far slower than from a reference server on the same "
        "network at the same time.",
        "The site's traffic alone is being slowed.",
        "A congested network slows everything; the reference download was not slowed.",
    ),
}


def explain(method: str) -> Explanation:
    """The plain-words explanation of ``method`` (a generic one for codes not listed)."""
    found = _EXPLANATIONS.get(method)
    if found is not None:
        return found
    layer = method.split(".", 1)[0].upper() if method else "a"
    return Explanation(
        method or "interference",
        f"The {layer} step of reaching the site failed in the way the code {method!r} names.",
        "The failure repeated on this network while the site worked elsewhere.",
        "The control reached the site at the same time.",
    )
