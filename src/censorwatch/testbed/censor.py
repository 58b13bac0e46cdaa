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
"""

from __future__ import annotations

import time
from typing import Any

from censorwatch.testbed import netns
from censorwatch.testbed.plan import NetworkPlan, TestbedPlan
from censorwatch.testbed.scenario import METHODS
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

BASE_RULES = f"""*filter
:CW-FWD - [0:0]
-A FORWARD -j CW-FWD
-A FORWARD -p udp --dport 53 -j NFQUEUE --queue-num {QUEUE_DNS} --queue-bypass
-A INPUT -p udp --dport 53 -j NFQUEUE --queue-num {QUEUE_DNS} --queue-bypass
-A FORWARD -p tcp --dport 443 -m length --length 100:65535 -j NFQUEUE --queue-num {QUEUE_TLS} --queue-bypass
-A FORWARD -p tcp --dport 80 -m length --length 70:65535 -j NFQUEUE --queue-num {QUEUE_HTTP} --queue-bypass
COMMIT
*nat
:CW-NAT - [0:0]
-A PREROUTING -j CW-NAT
COMMIT
"""  # noqa: E501


def install_base(net: NetworkPlan) -> None:
    """The fixed part of a censor: its chains, and the queues its daemon watches."""
    netns.run(["iptables-restore", "--noflush"], ns=net.censor_ns, input_text=BASE_RULES)


def _rules(plan: TestbedPlan, net: NetworkPlan, active: dict[str, dict[str, Any]]) -> str:
    fwd: list[str] = []
    nat: list[str] = []
    for method, spec in sorted(active.items()):
        addresses = plan.addresses_of(spec["targets"])
        for ip in addresses:
            if method == "tcp-drop":
                fwd.append(f"-A CW-FWD -d {ip}/32 -j DROP")
            elif method == "tcp-rst":
                fwd.append(f"-A CW-FWD -p tcp -d {ip}/32 -j REJECT --reject-with tcp-reset")
            elif method == "quic-drop":
                fwd.append(f"-A CW-FWD -p udp --dport 443 -d {ip}/32 -j DROP")
            elif method == "packet-loss":
                p = spec["loss"]
                for direction in ("-d", "-s"):
                    fwd.append(
                        f"-A CW-FWD {direction} {ip}/32 -m statistic --mode random "
                        f"--probability {p:.6f} -j DROP"
                    )
            elif method == "tls-mitm":
                nat.append(
                    f"-A CW-NAT -p tcp -d {ip}/32 --dport 443 "
                    f"-j DNAT --to-destination {net.censor_wan_ip}:443"
                )
    return "\n".join(
        [
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
            if method in DAEMON_METHODS
        },
        "updated": time.time(),
    }


def reconcile(state: TestbedState, plan: TestbedPlan, asn: str) -> None:
    """Make the network's rules, shaping and daemon policy match its active censorship."""
    net = plan.network(asn)
    active = state.active().get(net.asn, {})
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
) -> dict[str, Any]:
    """Switch one method on or off for some targets of one network, right now."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
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
        current = set(methods.get(method, {}).get("targets", []))
        current = current | set(targets) if on else current - set(targets)
        if current:
            entry = {
                "targets": sorted(current),
                "since": methods.get(method, {}).get("since", time.time()),
            }
            if method == "throttle":
                entry["rate"] = rate or methods.get(method, {}).get("rate")
            if method == "packet-loss":
                entry["loss"] = loss or methods.get(method, {}).get("loss")
            methods[method] = entry
        else:
            methods.pop(method, None)
        if not methods:
            active.pop(net.asn, None)
        state.write_active(active)
        reconcile(state, plan, net.asn)
        return active
