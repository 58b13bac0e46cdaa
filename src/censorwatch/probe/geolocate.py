"""Where the probe is: its network and country, learned without writing down who it is.

As OONI Probe does, the probe asks STUN servers for its public address (several, so one lying
or stale server does not place it wrongly), looks that address up in the MaxMind-format
databases, and keeps only the answer: ``probe_asn``, ``probe_cc``, ``probe_network_name``. The
address itself goes to the scrubber, which removes it from everything written. The resolver's
network is found the same way, from the address the resolver is seen to come from by an
authoritative "whoami" name when its own address is private (a home router, 127.0.0.53).

When no server answers, or the database does not know the address, the measurement says so in
``annotations.x_geolocation`` and carries OONI's unknowns (``AS0``, ``ZZ``) rather than a guess.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from censorwatch import failures
from censorwatch.netinfo import AddressPlan, ASInfo, IPNetwork, is_special
from censorwatch.probe import dns, stun

#: The name whose A record is the address of whoever asks the authoritative server: the
#: resolver's egress address (PowerDNS runs it on the internet; the testbed answers it too).
WHOAMI_NAME = "whoami.v4.powerdns.org"
STUN_TIMEOUT = 3.0
WHOAMI_TIMEOUT = 3.0

METHOD_STUN = "stun"
METHOD_CHECKIN = "check-in"
METHOD_OPTIONS = "options"


@dataclass
class Location:
    """What the probe writes about where it is; ``public_address`` is never written."""

    asn: str = "AS0"
    cc: str = "ZZ"
    network_name: str = ""
    method: str = ""
    failure: str | None = None
    database: str = ""
    stun_answers: int = 0
    public_address: str | None = field(default=None, repr=False)

    @property
    def known(self) -> bool:
        return self.asn != "AS0" and self.cc != "ZZ"

    def annotation(self) -> dict[str, Any]:
        """``annotations.x_geolocation``: how the location was found, or why it was not."""
        return {
            "method": self.method,
            "failure": self.failure,
            "database": self.database,
            "stun_answers": self.stun_answers,
        }


@dataclass(frozen=True)
class ResolverFacts:
    ip: str = ""
    asn: str = "AS0"
    network_name: str = ""


class _PublicRanges(AddressPlan):
    """A database plus ranges that count as public on this network (an emulated one)."""

    def __init__(self, inner: AddressPlan, prefixes: list[IPNetwork]) -> None:
        super().__init__(public_prefixes=prefixes)
        self.inner = inner
        self.freeze()

    def _lookup(self, ip: str) -> ASInfo | None:
        return self.inner.at(None).lookup(ip)


def with_public_ranges(plan: AddressPlan, prefixes: tuple[str, ...] | list[str]) -> AddressPlan:
    """``plan`` answering as before, with ``prefixes`` no longer taken for bogons."""
    return _PublicRanges(plan, [ipaddress.ip_network(p, strict=False) for p in prefixes])


def facts(plan: AddressPlan, ip: str) -> tuple[int, str, str, str]:
    """(AS number, AS name, country, database file) for ``ip`` from today's files."""
    if isinstance(plan, _PublicRanges):
        plan = plan.inner
    today = plan.at(None)
    finder = getattr(today, "facts", None)
    if callable(finder):
        found = finder(ip)
        if found is None:
            return 0, "", "", ""
        return found.asn, found.as_org_name, found.cc, found.source
    info: ASInfo | None = today.lookup(ip)
    return (info.asn, info.as_org_name, info.cc, "") if info else (0, "", "", "")


async def public_address(
    servers: list[str], *, timeout: float = STUN_TIMEOUT
) -> tuple[str | None, int, str | None]:
    """Ask every server at once; (address, answers, failure).

    The address at least two servers report wins; with a single answer, that one. Servers that
    disagree with no majority give no address: a wrong country is worse than none.
    """
    if not servers:
        return None, 0, failures.GEOLOCATION_NO_STUN_SERVER

    async def ask(spec: str) -> str | None:
        host, port = dns.parse_hostport(spec, 3478)
        try:
            (ip, _port), _server = await stun.query(host, port, timeout=timeout)
        except (TimeoutError, OSError, stun.StunError):
            return None
        return ip

    answers = [a for a in await asyncio.gather(*(ask(s) for s in servers)) if a]
    if not answers:
        return None, 0, failures.GEOLOCATION_STUN_FAILED
    counts = Counter(answers).most_common()
    best, votes = counts[0]
    if len(answers) >= 2 and (votes < 2 or (len(counts) > 1 and counts[1][1] == votes)):
        return None, len(answers), failures.GEOLOCATION_STUN_DISAGREE
    return best, len(answers), None


def locate(plan: AddressPlan, address: str | None, method: str) -> Location:
    """The location of ``address`` by the databases (failure named when unknown)."""
    loc = Location(method=method, public_address=address)
    if address is None:
        return loc
    asn, org, cc, source = facts(plan, address)
    loc.database = source
    if not asn and not cc:
        loc.failure = failures.GEOLOCATION_NOT_IN_DATABASE
        return loc
    loc.asn = f"AS{asn}" if asn else "AS0"
    loc.cc = cc.upper() if cc else "ZZ"
    loc.network_name = org
    if not (asn and cc):
        loc.failure = failures.GEOLOCATION_PARTIAL
    return loc


async def resolver_facts(
    plan: AddressPlan, system_resolver: tuple[str, int] | None, public: list[Any] | None = None
) -> ResolverFacts:
    """The system resolver's address and network: its own address when the databases know
    it, else the address it is seen to come from (the whoami name), else unknown."""
    if system_resolver is None:
        return ResolverFacts()
    ip = system_resolver[0]
    asn, org, _cc, _ = facts(plan, ip)
    if asn:
        return ResolverFacts(ip, f"AS{asn}", org)
    if not is_special(ip, public or []):
        return ResolverFacts(ip)
    try:
        result = await dns.query_udp(
            system_resolver,
            WHOAMI_NAME,
            "A",
            clock=time.monotonic(),
            timeout=WHOAMI_TIMEOUT,
            duplicate_window=0,
        )
    except OSError:
        return ResolverFacts(ip)
    if result.failure or not result.addresses:
        return ResolverFacts(ip)
    egress = result.addresses[0]
    asn, org, _cc, _ = facts(plan, egress)
    return ResolverFacts(egress, f"AS{asn}" if asn else "AS0", org)


__all__ = [
    "WHOAMI_NAME",
    "Location",
    "ResolverFacts",
    "facts",
    "locate",
    "public_address",
    "resolver_facts",
    "with_public_ranges",
]
