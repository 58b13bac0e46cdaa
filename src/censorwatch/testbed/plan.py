"""Every address of the emulated internet, decided once from the scenario.

Layout (all inside namespaces the testbed creates; nothing is routed outside them): each
network's path to the internet is a chain of routers, each its own namespace::

    probe ── access (hop 1) ── core (2) ──── gateway (3) ─────── transit (4) ── internet ns
    .N.2     the censor ns      198.18.N.1   198.19.C.1           198.19.254.1   198.19.0.2
             100.64.N.1         (the ISP's)  (one per country,    (the router
             198.18.N.2                      shared by its ISPs)   ns, shared)

A router answers ICMP time-exceeded from the address shown (its side towards the probe), and
the address plan names its AS: the ISP's for access and core, a national carrier's for the
gateway of country C, the transit provider's for transit.

The internet namespace carries the service addresses on its loopback: infrastructure in
192.0.2.0/24, the X platform in 198.51.100.0/24 (AS13414), its media CDN and every other site
in 203.0.113.0/24. Those documentation ranges, and each ISP's 198.18.N.0/24, are written into
the *address plan* as public, so the analysis does not take them for bogons.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from censorwatch.testbed.scenario import HOPS, Network, Scenario, Target

AUTHORITATIVE_DNS = "192.0.2.53"
# The internet namespace's server processes, one per role (services/internet.py).
INTERNET_ROLES = ("dns", "web", "quic")
PUBLIC_RESOLVER = "192.0.2.8"
DOH_RESOLVER = "192.0.2.9"
CONTROL = "192.0.2.80"
REFERENCE = "192.0.2.100"
REFERENCE_HOST = "reference.example"
THROUGHPUT_PATH = "/censorwatch/throughput.bin"
THROUGHPUT_SIZE = 2 * 1024 * 1024
BOGON_ANSWER = "10.10.34.34"
INTERNET_LINK = ("198.19.0.1", "198.19.0.2")

TRANSIT_ADDRESS = "198.19.254.1"
TRANSIT_AS = (65536, "Testbed Transit")
#: National carriers (one per country of the scenario) take ASNs from RFC 5398's
#: documentation range after the transit's, then from the private-use range.
NATIONAL_CARRIER_FIRST_AS = 65537

CHECKIN = "192.0.2.90"

# The public services the probe's built-in defaults (probe/defaults.toml) name, served here
# at the same names, so that a probe told nothing but the CA uses its defaults for real.
# Resolvers keep their real addresses (the internet namespace may hold any address).
PUBLIC_RESOLVERS: dict[str, tuple[str, int, str]] = {
    # address -> (DoH name, asn, operator)
    "8.8.8.8": ("dns.google", 15169, "Google LLC"),
    "1.1.1.1": ("cloudflare-dns.com", 13335, "Cloudflare, Inc."),
    "9.9.9.9": ("dns.quad9.net", 19281, "Quad9"),
}
#: The OONI test-helper names the defaults list, answered by the testbed's control.
DEFAULT_CONTROL_NAMES = ("0.th.ooni.org", "1.th.ooni.org", "2.th.ooni.org", "3.th.ooni.org")
#: The testbed's own name for its control, handed out by its check-in service.
TESTBED_CONTROL_NAME = "control.testbed.example"
#: The probe-services name the defaults check in with, answered by the testbed's collector.
DEFAULT_CHECKIN_NAME = "api.ooni.io"
#: The throughput reference of the defaults, served like reference.example.
DEFAULT_REFERENCE_NAME = "speed.cloudflare.com"
DEFAULT_REFERENCE_PATH = "/__down"
#: STUN servers of the defaults: name -> (address, UDP port).
STUN_SERVERS: dict[str, tuple[str, int]] = {
    "stun.l.google.com": ("192.0.2.31", 19302),
    "stun.cloudflare.com": ("192.0.2.32", 3478),
    "stun.nextcloud.com": ("192.0.2.33", 443),
}
#: Answered by the authoritative server with the address of whoever asks (a resolver).
WHOAMI_NAME = "whoami.v4.powerdns.org"

INFRA_AS = (64496, "Testbed Internet Services")
REFERENCE_AS = (64497, "Testbed Reference Network")
OTHER_HOSTING_AS = (64499, "Testbed Hosting")

# Who hosts which platform, as on the real internet: X's own network and its media CDN.
KNOWN_HOSTING: dict[str, tuple[int, str, str]] = {
    # registrable domain -> (asn, owner, prefix it draws addresses from)
    "x.com": (13414, "X Corp", "198.51.100.0/25"),
    "twitter.com": (13414, "X Corp", "198.51.100.0/25"),
    "t.co": (13414, "X Corp", "198.51.100.0/25"),
    "twimg.com": (54113, "Fastly (CDN)", "203.0.113.0/25"),
}
OTHER_POOL = "203.0.113.128/25"


def registrable_domain(host: str) -> str:
    """Last two labels: good enough to group a testbed's hosts by owner."""
    labels = host.split(".")
    return ".".join(labels[-2:])


@dataclass
class NetworkPlan:
    index: int
    network: Network
    probe_ns: str
    censor_ns: str
    probe_ip: str
    censor_lan_ip: str
    censor_wan_ip: str
    router_ip: str  # the next hop upstream of the censor: the core router's downstream side
    core_ns: str = ""
    core_up_ip: str = ""  # the core's side towards the gateway
    country: int = 0  # index of the network's country: its gateway

    @property
    def asn(self) -> str:
        return self.network.asn

    @property
    def public_ip(self) -> str:
        """The address the internet sees the probe's traffic come from: its own, or on a
        network behind NAT (scenario ``nat = true``) the one the censor's router gives it."""
        return f"198.18.{self.index}.9" if self.network.nat else self.probe_ip

    @property
    def clients(self) -> list[str]:
        """The prefixes this network's traffic comes from (its probes, its ISP's own hosts)."""
        return [f"100.64.{self.index}.0/24", f"198.18.{self.index}.0/24"]


@dataclass(frozen=True)
class GatewayPlan:
    """A country's national gateway: every network of that country reaches transit through it."""

    index: int
    cc: str
    namespace: str
    address: str
    asn: int

    @property
    def as_org_name(self) -> str:
        return f"Testbed National Carrier {self.cc}"


@dataclass(frozen=True)
class Hop:
    """One router of a network's path, as a scenario's ``hop`` names it."""

    number: int  # the TTL at which it answers time-exceeded
    role: str  # one of HOPS
    namespace: str
    address: str  # the source of its ICMP messages towards the probe
    asn: int
    shared: bool  # carries other networks' traffic too (gateway, transit)


@dataclass
class HostPlan:
    target: Target
    addresses: list[str]
    asn: int
    as_org_name: str


@dataclass
class TestbedPlan:
    __test__ = False  # not a test class, despite the name
    testbed_id: str
    scenario: Scenario
    networks: list[NetworkPlan] = field(default_factory=list)
    hosts: dict[str, HostPlan] = field(default_factory=dict)
    gateways: dict[str, GatewayPlan] = field(default_factory=dict)  # cc -> its gateway

    @property
    def router_ns(self) -> str:
        """The transit router (hop 4 of every path), joined to the internet namespace."""
        return f"{self.testbed_id}-router"

    def path(self, asn: str) -> list[Hop]:
        """The routers between a network's probe and the internet, hop 1 first."""
        net = self.network(asn)
        gw = self.gateways[net.network.cc]
        isp = int(net.asn.removeprefix("AS"))
        return [
            Hop(1, "access", net.censor_ns, net.censor_lan_ip, isp, False),
            Hop(2, "core", net.core_ns, net.router_ip, isp, False),
            Hop(3, "gateway", gw.namespace, gw.address, gw.asn, True),
            Hop(4, "transit", self.router_ns, TRANSIT_ADDRESS, TRANSIT_AS[0], True),
        ]

    def hop(self, asn: str, role: str) -> Hop:
        for hop in self.path(asn):
            if hop.role == role:
                return hop
        raise KeyError(f"no hop {role!r} on the path of {asn} (hops: {', '.join(HOPS)})")

    @property
    def internet_ns(self) -> str:
        return f"{self.testbed_id}-inet"

    def network(self, asn: str) -> NetworkPlan:
        asn = asn.upper()
        for net in self.networks:
            if net.asn == asn:
                return net
        known = ", ".join(n.asn for n in self.networks)
        raise KeyError(f"no network {asn} in this testbed (networks: {known})")

    def service_addresses(self) -> list[str]:
        """Infrastructure first (five fixed ones), then every site, then the public services
        of the probe's defaults (resolvers, STUN, check-in)."""
        infra = [AUTHORITATIVE_DNS, PUBLIC_RESOLVER, DOH_RESOLVER, CONTROL, REFERENCE]
        sites = sorted({a for h in self.hosts.values() for a in h.addresses})
        public = [*PUBLIC_RESOLVERS, *(a for a, _ in STUN_SERVERS.values()), CHECKIN]
        out = infra + [a for a in sites if a not in infra]
        return out + [a for a in public if a not in out]

    def site_addresses(self) -> list[str]:
        """Addresses that serve the web sites (and the reference object) over HTTP/HTTPS."""
        infra = {AUTHORITATIVE_DNS, PUBLIC_RESOLVER, DOH_RESOLVER, CONTROL, CHECKIN}
        infra |= set(PUBLIC_RESOLVERS) | {a for a, _ in STUN_SERVERS.values()}
        return [a for a in self.service_addresses() if a not in infra]

    def zone(self) -> dict[str, list[str]]:
        """Every name the authoritative server answers, with its A records."""
        records = {host: list(h.addresses) for host, h in self.hosts.items()}
        records[REFERENCE_HOST] = [REFERENCE]
        records[DEFAULT_REFERENCE_NAME] = [REFERENCE]
        for address, (name, _asn, _org) in PUBLIC_RESOLVERS.items():
            records[name] = [address]
        for name in (*DEFAULT_CONTROL_NAMES, TESTBED_CONTROL_NAME):
            records[name] = [CONTROL]
        records[DEFAULT_CHECKIN_NAME] = [CHECKIN]
        for name, (address, _port) in STUN_SERVERS.items():
            records[name] = [address]
        return records

    def addresses_of(self, hosts: list[str] | tuple[str, ...]) -> list[str]:
        return sorted({a for h in hosts for a in self.hosts[h].addresses})

    def address_plan(self) -> dict:
        """The IP-to-ASN facts of this emulated internet (netinfo.AddressPlan JSON)."""
        networks = [
            {"prefix": "192.0.2.0/24", "asn": INFRA_AS[0], "as_org_name": INFRA_AS[1]},
            {"prefix": f"{REFERENCE}/32", "asn": REFERENCE_AS[0], "as_org_name": REFERENCE_AS[1]},
        ]
        networks += [
            {"prefix": f"{address}/32", "asn": asn, "as_org_name": org}
            for address, (_name, asn, org) in PUBLIC_RESOLVERS.items()
        ]
        seen: set[tuple[str, int]] = set()
        for host in self.hosts.values():
            for addr in host.addresses:
                if (addr, host.asn) not in seen:
                    seen.add((addr, host.asn))
                    networks.append(
                        {"prefix": f"{addr}/32", "asn": host.asn, "as_org_name": host.as_org_name}
                    )
        for net in self.networks:
            asn = int(net.asn.removeprefix("AS"))
            name = net.network.name or net.asn
            for prefix in net.clients:
                networks.append(
                    {"prefix": prefix, "asn": asn, "as_org_name": name, "cc": net.network.cc}
                )
        for gw in self.gateways.values():
            networks.append(
                {
                    "prefix": f"198.19.{gw.index}.0/24",
                    "asn": gw.asn,
                    "as_org_name": gw.as_org_name,
                    "cc": gw.cc,
                }
            )
        networks.append(
            {"prefix": f"{TRANSIT_ADDRESS}/32", "asn": TRANSIT_AS[0], "as_org_name": TRANSIT_AS[1]}
        )
        return {
            "public_prefixes": [
                "192.0.2.0/24",
                "198.51.100.0/24",
                "203.0.113.0/24",
                "198.18.0.0/15",
            ],
            "networks": networks,
        }


def national_carrier_asn(country_index: int) -> int:
    if country_index <= 15:  # RFC 5398: 65536-65551; 65536 is the transit
        return NATIONAL_CARRIER_FIRST_AS + country_index - 1
    return 4_200_000_000 + country_index  # RFC 6996 private use


def build(scenario: Scenario, testbed_id: str) -> TestbedPlan:
    plan = TestbedPlan(testbed_id=testbed_id, scenario=scenario)
    for cc in dict.fromkeys(n.cc for n in scenario.networks):
        index = len(plan.gateways) + 1
        plan.gateways[cc] = GatewayPlan(
            index=index,
            cc=cc,
            namespace=f"{testbed_id}-gw-{cc}",
            address=f"198.19.{index}.1",
            asn=national_carrier_asn(index),
        )
    chain_asns = {TRANSIT_AS[0], *(g.asn for g in plan.gateways.values())}
    for net in scenario.networks:
        if int(net.asn.removeprefix("AS")) in chain_asns:
            raise ValueError(
                f"{net.asn} is the AS of the testbed's transit or a national gateway; "
                "give the network another number"
            )
    for i, net in enumerate(scenario.networks, 1):
        plan.networks.append(
            NetworkPlan(
                index=i,
                network=net,
                probe_ns=f"{testbed_id}-probe-{net.asn}",
                censor_ns=f"{testbed_id}-censor-{net.asn}",
                probe_ip=f"100.64.{i}.2",
                censor_lan_ip=f"100.64.{i}.1",
                censor_wan_ip=f"198.18.{i}.2",
                router_ip=f"198.18.{i}.1",
                core_ns=f"{testbed_id}-core-{net.asn}",
                core_up_ip=f"198.18.{i}.3",
                country=plan.gateways[net.cc].index,
            )
        )
    pools: dict[str, list[str]] = {}
    group_addresses: dict[str, list[str]] = {}

    def take(prefix: str, count: int) -> list[str]:
        pool = pools.setdefault(prefix, [str(a) for a in ipaddress.ip_network(prefix).hosts()][9:])
        if len(pool) < count:
            raise ValueError(f"the testbed ran out of addresses in {prefix}")
        return [pool.pop(0) for _ in range(count)]

    for target in scenario.targets:
        domain = registrable_domain(target.host)
        asn, owner, prefix = KNOWN_HOSTING.get(domain, (*OTHER_HOSTING_AS, OTHER_POOL))
        if target.addresses:
            addresses = list(target.addresses)
        else:
            # One owner's hosts share two addresses, as behind a load balancer or a CDN.
            group = prefix if domain in KNOWN_HOSTING else domain
            if group not in group_addresses:
                group_addresses[group] = take(prefix, 2)
            addresses = group_addresses[group]
        if target.asn:
            asn = int(target.asn.removeprefix("AS"))
            owner = target.as_org_name or target.asn
        plan.hosts[target.host] = HostPlan(target, addresses, asn, owner)
    return plan
