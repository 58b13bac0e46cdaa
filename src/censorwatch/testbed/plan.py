"""Every address of the emulated internet, decided once from the scenario.

Layout (all inside namespaces the testbed creates; nothing is routed outside them)::

    probe ns (100.64.N.2) ── censor ns (100.64.N.1 | 198.18.N.2) ── router (198.18.N.1 | 198.19.0.1)
                                                                      └── internet ns (198.19.0.2)

The internet namespace carries the service addresses on its loopback: infrastructure in
192.0.2.0/24, the X platform in 198.51.100.0/24 (AS13414), its media CDN and every other site
in 203.0.113.0/24. Those documentation ranges, and each ISP's 198.18.N.0/24, are written into
the *address plan* as public, so the analysis does not take them for bogons.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from censorwatch.testbed.scenario import Network, Scenario, Target

AUTHORITATIVE_DNS = "192.0.2.53"
PUBLIC_RESOLVER = "192.0.2.8"
DOH_RESOLVER = "192.0.2.9"
CONTROL = "192.0.2.80"
REFERENCE = "192.0.2.100"
REFERENCE_HOST = "reference.example"
THROUGHPUT_PATH = "/censorwatch/throughput.bin"
THROUGHPUT_SIZE = 2 * 1024 * 1024
BOGON_ANSWER = "10.10.34.34"
INTERNET_LINK = ("198.19.0.1", "198.19.0.2")

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
    router_ip: str

    @property
    def asn(self) -> str:
        return self.network.asn


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

    @property
    def router_ns(self) -> str:
        return f"{self.testbed_id}-router"

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
            for prefix in (f"100.64.{net.index}.0/24", f"198.18.{net.index}.0/24"):
                networks.append(
                    {"prefix": prefix, "asn": asn, "as_org_name": name, "cc": net.network.cc}
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


def build(scenario: Scenario, testbed_id: str) -> TestbedPlan:
    plan = TestbedPlan(testbed_id=testbed_id, scenario=scenario)
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
