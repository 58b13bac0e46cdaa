"""Censorship methods turned into what enforces them in a network's censor namespace.

Firewall and traffic-control rules are *derived*: the active censorship of a network is kept
in the state folder, and ``reconcile`` rebuilds the network's rules and the censor daemon's
policy from it in one step. Switching a method on or off is therefore idempotent and safe to
repeat after any failure.

What enforces each method:

==================  =====================================================================
dns-nxdomain        the ISP resolver answers NXDOMAIN (daemon policy)
dns-bogon           the ISP resolver answers 10.10.34.34 (daemon policy)
dns-inject          the daemon sees the query on NFQUEUE and races a forged answer
                    pointing at the censor's own server, also for public resolvers
dns-timeout         the daemon drops the query on NFQUEUE, for every resolver
tcp-drop            iptables DROP to the target's addresses
tcp-rst             iptables REJECT --reject-with tcp-reset to the target's addresses
tls-rst             the daemon reads the ClientHello's SNI on NFQUEUE, resets both ends
tls-drop            the daemon drops ClientHellos whose SNI matches
tls-mitm            iptables DNAT of port 443 to the censor's TLS server (untrusted cert)
http-blockpage      the daemon answers the matching HTTP request with an injected page
http-rst            the daemon resets both ends of a matching HTTP request
quic-drop           iptables DROP of UDP 443 to the target's addresses
throttle            tc htb + tbf on traffic from the target's addresses towards the probe
packet-loss         iptables statistic: a random share of packets to and from the target's
                    addresses is dropped (an extension: noise, not censorship)
==================  =====================================================================

A censor sits on one router of the network's path (``hop``, plan.py): by default the access
router, the censor namespace itself; on the core, the gateway or the transit, its rules and a
daemon of its own live in that router's namespace, and match only the network's own traffic
(its client prefixes), since gateway and transit carry other networks too. The daemon's
queues hook PREROUTING, before the router decrements the TTL, so a packet that expires at a
censoring router has still been inspected there: a TTL-limited probe sees the censor's answer
at the censor's own hop number.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from censorwatch.testbed import netns
from censorwatch.testbed.plan import Hop, NetworkPlan, TestbedPlan
from censorwatch.testbed.scenario import DEFAULT_HOP, METHODS, parse_hop
from censorwatch.testbed.state import TestbedState, write_json

QUEUE_DNS, QUEUE_TLS, QUEUE_HTTP = 1, 2, 3
DAEMON_METHODS = (
    "dns-nxdomain",
    "dns-bogon",
    "dns-inject",
    "dns-timeout",
    "tls-rst",
    "tls-drop",
    "http-blockpage",
    "http-rst",
)


def _queue_rules(chain: str, source: str = "") -> list[str]:
    """What the daemon inspects: DNS queries, TLS ClientHellos, HTTP requests (with bypass,
    so traffic flows while no daemon listens)."""
    s = f" -s {source}" if source else ""
    return [
        f"-A {chain}{s} -p udp --dport 53 -j NFQUEUE --queue-num {QUEUE_DNS} --queue-bypass",
        f"-A {chain}{s} -p tcp --dport 443 -m length --length 100:65535 "
        f"-j NFQUEUE --queue-num {QUEUE_TLS} --queue-bypass",
        f"-A {chain}{s} -p tcp --dport 80 -m length --length 70:65535 "
        f"-j NFQUEUE --queue-num {QUEUE_HTTP} --queue-bypass",
    ]


BASE_RULES = "\n".join(
    [
        "*mangle",
        *(r.replace("-A PRE", "-A PREROUTING") for r in _queue_rules("PRE")),
        "COMMIT",
        "*filter",
        ":CW-FWD - [0:0]",
        "-A FORWARD -j CW-FWD",
        "COMMIT",
        "*nat",
        ":CW-NAT - [0:0]",
        "-A PREROUTING -j CW-NAT",
        "COMMIT",
        "",
    ]
)

# A router further up the path: its queues are filled per network when a censor moves in.
HOP_BASE_RULES = """*mangle
:CW-PRE - [0:0]
-A PREROUTING -j CW-PRE
COMMIT
*filter
:CW-FWD - [0:0]
-A FORWARD -j CW-FWD
COMMIT
*nat
:CW-NAT - [0:0]
-A PREROUTING -j CW-NAT
COMMIT
"""


def install_base(net: NetworkPlan) -> None:
    """The fixed part of a censor: its chains, and the queues its daemon watches."""
    netns.run(["iptables-restore", "--noflush"], ns=net.censor_ns, input_text=BASE_RULES)


def install_nat(net: NetworkPlan) -> None:
    """The network's router rewrites its probes' source address to the network's public one
    on the way out (a home router's or a carrier-grade NAT): what STUN, the controls and the
    collectors see. Censorship at this router matches before the rewrite."""
    rule = (
        f"*nat\n-A POSTROUTING -o wan -s 100.64.{net.index}.0/24 -j SNAT "
        f"--to-source {net.public_ip}\nCOMMIT\n"
    )
    netns.run(["iptables-restore", "--noflush"], ns=net.censor_ns, input_text=rule)


def install_base_hop(namespace: str) -> None:
    """The empty chains of a router that may host a censor later (core, gateway, transit)."""
    netns.run(["iptables-restore", "--noflush"], ns=namespace, input_text=HOP_BASE_RULES)


def active_key(method: str, hop: str = DEFAULT_HOP) -> str:
    """How ``active.json`` names a method: as itself at the access hop, ``method@hop`` on
    another router (so every censorship of the default hop reads as before)."""
    return method if hop == DEFAULT_HOP else f"{method}@{hop}"


def split_key(key: str) -> tuple[str, str]:
    method, _, hop = key.partition("@")
    return method, hop or DEFAULT_HOP


def hop_policy_file(state: TestbedState, namespace: str) -> Path:
    """The daemon policy of a router further up the path (one daemon per namespace)."""
    return state.folder / "censor" / f"hop-{namespace}.json"


def ready_file(policy_file: Path) -> Path:
    """Written by a daemon once its queues are bound: from then on it enforces."""
    return policy_file.with_suffix(".ready")


def _address_rules(
    plan: TestbedPlan,
    net: NetworkPlan,
    method: str,
    spec: dict[str, Any],
    clients: list[str],
    fwd: list[str],
    nat: list[str],
) -> None:
    """The iptables rules of one address-based method; ``clients`` limits them to the
    network's own traffic on a shared router (empty: every packet, as at the access hop)."""
    for ip in plan.addresses_of(spec["targets"]):
        for client in clients or [""]:
            to = f" -s {client}" if client else ""
            back = f" -d {client}" if client else ""
            if method == "tcp-drop":
                fwd.append(f"-A CW-FWD{to} -d {ip}/32 -j DROP")
            elif method == "tcp-rst":
                fwd.append(f"-A CW-FWD{to} -p tcp -d {ip}/32 -j REJECT --reject-with tcp-reset")
            elif method == "quic-drop":
                fwd.append(f"-A CW-FWD{to} -p udp --dport 443 -d {ip}/32 -j DROP")
            elif method == "packet-loss":
                p = spec["loss"]
                for rule in (f"{to} -d {ip}/32", f" -s {ip}/32{back}"):
                    fwd.append(
                        f"-A CW-FWD{rule} -m statistic --mode random --probability {p:.6f} -j DROP"
                    )
            elif method == "tls-mitm":
                nat.append(
                    f"-A CW-NAT{to} -p tcp -d {ip}/32 --dport 443 "
                    f"-j DNAT --to-destination {net.censor_wan_ip}:443"
                )


def _tables(fwd: list[str], nat: list[str], pre: list[str] | None = None) -> str:
    mangle = ["*mangle", ":CW-PRE - [0:0]", *pre, "COMMIT"] if pre is not None else []
    return "\n".join(
        [
            *mangle,
            "*filter",
            ":CW-FWD - [0:0]",
            *fwd,
            "COMMIT",
            "*nat",
            ":CW-NAT - [0:0]",
            *nat,
            "COMMIT",
            "",
        ]
    )


def _rules(plan: TestbedPlan, net: NetworkPlan, active: dict[str, dict[str, Any]]) -> str:
    fwd: list[str] = []
    nat: list[str] = []
    for key, spec in sorted(active.items()):
        method, hop = split_key(key)
        if hop == DEFAULT_HOP:
            _address_rules(plan, net, method, spec, [], fwd, nat)
    return _tables(fwd, nat)


def _at_hop(state: TestbedState, plan: TestbedPlan, hop: Hop) -> list[tuple[NetworkPlan, dict]]:
    """Every network's censorship in force at this router: (network, method -> spec)."""
    active = state.active()
    out = []
    for net in plan.networks:
        if any(h.namespace == hop.namespace for h in plan.path(net.asn)):
            here = {
                split_key(key)[0]: spec
                for key, spec in active.get(net.asn, {}).items()
                if split_key(key)[1] == hop.role
            }
            if here:
                out.append((net, here))
    return out


def reconcile_hop(state: TestbedState, plan: TestbedPlan, hop: Hop) -> None:
    """Make a router's rules and its daemon's policy match the censorship at that hop of
    every network that passes it."""
    pre: list[str] = []
    fwd: list[str] = []
    nat: list[str] = []
    networks: list[dict[str, Any]] = []
    for net, methods in _at_hop(state, plan, hop):
        for method, spec in sorted(methods.items()):
            _address_rules(plan, net, method, spec, net.clients, fwd, nat)
        daemon = {m: sorted(spec["targets"]) for m, spec in methods.items() if m in DAEMON_METHODS}
        if daemon:
            for client in net.clients:
                pre.extend(_queue_rules("CW-PRE", client))
            networks.append(
                {
                    "network": net.asn,
                    "clients": net.clients,
                    "forged_address": net.censor_wan_ip,
                    "methods": daemon,
                }
            )
    write_json(
        hop_policy_file(state, hop.namespace),
        {"hop": hop.role, "networks": networks, "updated": time.time()},
    )
    netns.run(
        ["iptables-restore", "--noflush"], ns=hop.namespace, input_text=_tables(fwd, nat, pre)
    )


def _traffic_control(plan: TestbedPlan, net: NetworkPlan, active: dict[str, dict]) -> None:
    netns.run(["tc", "qdisc", "del", "dev", "lan", "root"], ns=net.censor_ns, check=False)
    spec = active.get("throttle")
    if not spec:
        return
    ns = net.censor_ns
    # htb sorts packets into classes: 1:10 (the target's traffic, shaped by a token bucket
    # below it) and the default 1:1, which leaves at full speed.
    netns.run(
        ["tc", "qdisc", "add", "dev", "lan", "root", "handle", "1:", "htb", "default", "1"], ns=ns
    )
    for classid in ("1:1", "1:10"):
        netns.run(
            [
                "tc",
                "class",
                "add",
                "dev",
                "lan",
                "parent",
                "1:",
                "classid",
                classid,
                "htb",
                "rate",
                "10gbit",
                "burst",
                "1mb",
                "cburst",
                "1mb",
            ],
            ns=ns,
        )
    netns.run(
        [
            "tc",
            "qdisc",
            "add",
            "dev",
            "lan",
            "parent",
            "1:10",
            "handle",
            "10:",
            "tbf",
            "rate",
            spec["rate"],
            "burst",
            "16kb",
            "latency",
            "300ms",
        ],
        ns=ns,
    )
    for ip in plan.addresses_of(spec["targets"]):
        netns.run(
            [
                "tc",
                "filter",
                "add",
                "dev",
                "lan",
                "parent",
                "1:",
                "protocol",
                "ip",
                "prio",
                "1",
                "u32",
                "match",
                "ip",
                "src",
                f"{ip}/32",
                "flowid",
                "1:10",
            ],
            ns=ns,
        )


def policy(plan: TestbedPlan, net: NetworkPlan, active: dict[str, dict[str, Any]]) -> dict:
    """What the censor daemon of this network enforces itself."""
    return {
        "network": net.asn,
        "forged_address": net.censor_wan_ip,
        "methods": {
            method: sorted(spec["targets"])
            for method, spec in active.items()
            if method in DAEMON_METHODS  # ``method@hop`` entries are other routers' business
        },
        "updated": time.time(),
    }


def reconcile(state: TestbedState, plan: TestbedPlan, asn: str, hop: str = DEFAULT_HOP) -> None:
    """Make the network's rules, shaping and daemon policy at ``hop`` match its active
    censorship."""
    if hop != DEFAULT_HOP:
        reconcile_hop(state, plan, plan.hop(asn, hop))
        return
    net = plan.network(asn)
    active = {k: v for k, v in state.active().get(net.asn, {}).items() if "@" not in k}
    netns.run(
        ["iptables-restore", "--noflush"], ns=net.censor_ns, input_text=_rules(plan, net, active)
    )
    _traffic_control(plan, net, active)
    write_json(state.policy_file(net.asn), policy(plan, net, active))


def set_censor(
    state: TestbedState,
    plan: TestbedPlan,
    asn: str,
    method: str,
    targets: list[str],
    on: bool,
    rate: str | None = None,
    loss: float | None = None,
    hop: str = DEFAULT_HOP,
) -> dict[str, Any]:
    """Switch one method on or off for some targets of one network, right now, at one
    router of its path (``hop``: access unless said)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    hop = parse_hop(hop, "hop", method)
    net = plan.network(asn)
    unknown = [t for t in targets if t not in plan.hosts]
    if unknown:
        raise ValueError(
            f"targets not declared in the scenario: {', '.join(unknown)} "
            f"(declared: {', '.join(sorted(plan.hosts))})"
        )
    if method == "throttle" and on and not rate:
        raise ValueError("throttle needs a rate, e.g. --rate 1mbit")
    if method == "packet-loss" and on and not loss:
        raise ValueError("packet-loss needs a loss, e.g. --loss 5%")
    with state.lock():
        active = state.active()
        methods = active.setdefault(net.asn, {})
        key = active_key(method, hop)
        current = set(methods.get(key, {}).get("targets", []))
        current = current | set(targets) if on else current - set(targets)
        if current:
            entry = {
                "targets": sorted(current),
                "since": methods.get(key, {}).get("since", time.time()),
            }
            if method == "throttle":
                entry["rate"] = rate or methods.get(key, {}).get("rate")
            if method == "packet-loss":
                entry["loss"] = loss or methods.get(key, {}).get("loss")
            methods[key] = entry
        else:
            methods.pop(key, None)
        if not methods:
            active.pop(net.asn, None)
        state.write_active(active)
        reconcile(state, plan, net.asn, hop)
        return active
