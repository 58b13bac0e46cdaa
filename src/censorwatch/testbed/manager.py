"""Bring a testbed up, change it, look at it, run programs in it, and take it down.

``down`` needs nothing but the testbed id: it finds namespaces by their name prefix and
processes by namespace, so it also cleans up after a crashed or interrupted ``up``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from censorwatch.testbed import censor, geodb, netns
from censorwatch.testbed import plan as planmod
from censorwatch.testbed import scenario as scenariomod
from censorwatch.testbed.pki import CertificateAuthority
from censorwatch.testbed.state import TestbedState, write_json

READY_TIMEOUT = 30.0


class TestbedError(RuntimeError):
    """The testbed cannot do what was asked; the message says why and what to do."""


def _prefix(tb_id: str) -> str:
    return f"{tb_id}-"


def existing_namespaces(tb_id: str) -> list[str]:
    return [n for n in netns.list_namespaces() if n.startswith(_prefix(tb_id))]


# -- up --------------------------------------------------------------------------------------
def _make_pki(state: TestbedState, plan: planmod.TestbedPlan) -> None:
    ca = CertificateAuthority.create("censorwatch testbed root CA")
    state.pki_dir.mkdir(parents=True, exist_ok=True)
    ca.save(state.ca_file, state.pki_dir / "ca.key")
    sites = state.pki_dir / "sites"
    for host in [*plan.hosts, planmod.REFERENCE_HOST, planmod.DEFAULT_REFERENCE_NAME]:
        ca.issue([host], directory=sites, stem=host)
    for address, (name, _asn, _org) in planmod.PUBLIC_RESOLVERS.items():
        ca.issue([name], [address], directory=sites, stem=name)
    ca.issue([planmod.DEFAULT_CHECKIN_NAME], [planmod.CHECKIN], directory=sites, stem="checkin")
    ca.issue(["default.testbed.example"], directory=sites, stem="default")
    ca.issue(sorted(plan.hosts), directory=sites, stem="quic")
    ca.issue(["dns.testbed.example"], [planmod.DOH_RESOLVER], directory=sites, stem="doh")
    ca.issue(
        ["control.testbed.example", *planmod.DEFAULT_CONTROL_NAMES],
        [planmod.CONTROL],
        directory=sites,
        stem="control",
    )
    # The censor's own authority: nobody trusts it, as with a state-issued interception root.
    censor_ca = CertificateAuthority.create("Censor interception root")
    censor_ca.save(state.pki_dir / "censor-ca.pem", state.pki_dir / "censor-ca.key")
    censor_ca.issue(["blocked.censor.example"], directory=state.pki_dir / "censor", stem="blocked")


def _router(ns: str) -> None:
    """A router namespace: forwards, and answers every expired packet with time-exceeded (no
    ICMP rate limit, so a TTL-limited probe hears each hop every time)."""
    netns.add_namespace(ns)
    netns.run(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv4.icmp_ratelimit=0"], ns=ns)


def _build_network(plan: planmod.TestbedPlan) -> None:
    """The namespaces and cables of every path: probe ─ access ─ core ─ gateway ─ transit ─
    internet (plan.py). Each router's side towards the probe carries the address its ICMP
    messages come from; links upstream are point-to-point /32s with host routes."""
    router, inet = plan.router_ns, plan.internet_ns
    _router(router)
    netns.add_namespace(inet)
    lan_router, lan_inet = planmod.INTERNET_LINK
    netns.veth(router, "inet", inet, "eth0")
    netns.address(router, "inet", f"{lan_router}/24")
    netns.address(inet, "eth0", f"{lan_inet}/24")
    netns.route(inet, "default", "via", lan_router)
    netns.route(router, "default", "via", lan_inet)
    # Private answers (a bogon DNS answer) lead nowhere, as on the real internet.
    for prefix in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"):
        netns.route(router, "unreachable", prefix)
    for address in plan.service_addresses():
        netns.address(inet, "lo", f"{address}/32")
    for gw in plan.gateways.values():
        _router(gw.namespace)
        link = f"g{gw.index}"
        netns.veth(gw.namespace, "uplink", router, link)
        netns.address(gw.namespace, "uplink", f"{gw.address}/32")
        netns.address(router, link, f"{planmod.TRANSIT_ADDRESS}/32")
        netns.route(gw.namespace, f"{planmod.TRANSIT_ADDRESS}/32", "dev", "uplink")
        netns.route(gw.namespace, "default", "via", planmod.TRANSIT_ADDRESS, "dev", "uplink")
        netns.route(router, f"{gw.address}/32", "dev", link)
        censor.install_base_hop(gw.namespace)
    censor.install_base_hop(router)
    for net in plan.networks:
        gw = plan.gateways[net.network.cc]
        netns.add_namespace(net.censor_ns)
        netns.add_namespace(net.probe_ns)
        _router(net.core_ns)
        netns.run(
            ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv4.icmp_ratelimit=0"],
            ns=net.censor_ns,
        )
        netns.veth(net.censor_ns, "lan", net.probe_ns, "eth0")
        netns.veth(net.censor_ns, "wan", net.core_ns, "downlink")
        link = f"c{net.index}"
        netns.veth(net.core_ns, "uplink", gw.namespace, link)
        netns.address(net.probe_ns, "eth0", f"{net.probe_ip}/24")
        netns.address(net.censor_ns, "lan", f"{net.censor_lan_ip}/24")
        netns.address(net.censor_ns, "wan", f"{net.censor_wan_ip}/24")
        netns.address(net.core_ns, "downlink", f"{net.router_ip}/24")
        netns.address(net.core_ns, "uplink", f"{net.core_up_ip}/32")
        netns.address(gw.namespace, link, f"{gw.address}/32")
        netns.route(net.probe_ns, "default", "via", net.censor_lan_ip)
        netns.route(net.censor_ns, "default", "via", net.router_ip)
        netns.route(net.core_ns, f"100.64.{net.index}.0/24", "via", net.censor_wan_ip)
        netns.route(net.core_ns, f"{gw.address}/32", "dev", "uplink")
        netns.route(net.core_ns, "default", "via", gw.address, "dev", "uplink")
        netns.route(gw.namespace, f"{net.core_up_ip}/32", "dev", link)
        for prefix in net.clients:
            netns.route(gw.namespace, prefix, "via", net.core_up_ip, "dev", link)
            netns.route(router, prefix, "via", gw.address, "dev", f"g{gw.index}")
        netns.set_resolv_conf(net.probe_ns, net.censor_lan_ip)
        censor.install_base(net)
        if net.network.nat:
            netns.address(net.censor_ns, "wan", f"{net.public_ip}/24")
            censor.install_nat(net)
        censor.install_base_hop(net.core_ns)
    down_sites = [h for h in plan.hosts.values() if h.target.down]
    for host in down_sites:
        for address in host.addresses:
            netns.run(
                [
                    "iptables",
                    "-A",
                    "INPUT",
                    "-p",
                    "tcp",
                    "-d",
                    f"{address}/32",
                    "-j",
                    "REJECT",
                    "--reject-with",
                    "tcp-reset",
                ],
                ns=inet,
            )


def _spawn(
    state: TestbedState,
    ns: str | None,
    name: str,
    args: list[str],
    env: dict[str, str] | None = None,
) -> int:
    state.logs.mkdir(parents=True, exist_ok=True)
    log = open(state.logs / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
    cmd = ["ip", "netns", "exec", ns, *args] if ns else args
    proc = subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
    )
    log.close()
    return proc.pid


def _python(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def _control_command(state: TestbedState) -> list[str]:
    sites = state.pki_dir / "sites"
    return _python(
        "censorwatch",
        "control",
        "serve",
        "--host",
        planmod.CONTROL,
        "--port",
        "443",
        "--certfile",
        str(sites / "control.pem"),
        "--keyfile",
        str(sites / "control.key"),
        "--resolver",
        f"{planmod.PUBLIC_RESOLVER}:53",
        "--ca",
        str(state.ca_file),
        "--asn-db",
        str(state.address_plan_file),
        "--testbed",
    )


def _stun_command() -> list[str]:
    listen = [f"{address}:{port}" for address, port in planmod.STUN_SERVERS.values()]
    return _python("censorwatch", "control", "stun", *(a for x in listen for a in ("--listen", x)))


def _spawn_checkin(state: TestbedState, plan: planmod.TestbedPlan) -> int:
    """The collector answering the defaults' check-in name: it locates probes with the
    testbed's MaxMind-format database and hands out the testbed's own control."""
    folder = state.folder / "checkin"
    folder.mkdir(parents=True, exist_ok=True)
    sites = state.pki_dir / "sites"
    command = _python(
        "censorwatch",
        "serve",
        "--db",
        str(folder / "store.duckdb"),
        "--archive",
        str(folder / "archive"),
        "--host",
        planmod.CHECKIN,
        "--port",
        "443",
        "--certfile",
        str(sites / "checkin.pem"),
        "--keyfile",
        str(sites / "checkin.key"),
    )
    env = {
        "CENSORWATCH_ASN_DB": str(state.folder / "geoip"),
        "CENSORWATCH_CHECKIN_CONTROLS": f"https://{planmod.TESTBED_CONTROL_NAME}/",
    }
    return _spawn(state, plan.internet_ns, "checkin", command, env)


def _wait_for(state: TestbedState, checks: list[tuple[str, str, int]]) -> None:
    """Wait until each (namespace, address, tcp port) accepts connections."""
    script = (
        "import socket,sys,time\n"
        "deadline=time.monotonic()+float(sys.argv[1])\n"
        "for spec in sys.argv[2:]:\n"
        "    host,port=spec.rsplit(':',1)\n"
        "    while True:\n"
        "        try:\n"
        "            socket.create_connection((host,int(port)),timeout=1).close(); break\n"
        "        except OSError:\n"
        "            if time.monotonic()>deadline: sys.exit(f'{spec} never came up')\n"
        "            time.sleep(0.1)\n"
    )
    by_ns: dict[str, list[str]] = {}
    for ns, address, port in checks:
        by_ns.setdefault(ns, []).append(f"{address}:{port}")
    for ns, specs in by_ns.items():
        proc = netns.run(
            [sys.executable, "-c", script, str(READY_TIMEOUT), *specs],
            ns=ns,
            check=False,
            timeout=READY_TIMEOUT + 10,
        )
        if proc.returncode != 0:
            raise TestbedError(f"testbed services did not start in {ns}: {proc.stderr.strip()}")


def _wait_for_ready(state: TestbedState, services: list[str]) -> None:
    """Wait until each service has said it is bound (see ``TestbedState.mark_ready``)."""
    deadline = time.monotonic() + READY_TIMEOUT
    for service in services:
        while not state.ready_file(service).exists():
            if time.monotonic() > deadline:
                raise TestbedError(f"testbed service {service} did not start")
            time.sleep(0.05)


def _hop_daemon_name(namespace: str) -> str:
    return f"censor-hop-{namespace}"


def _start_hop_daemons(
    state: TestbedState, plan: planmod.TestbedPlan, hops: list[planmod.Hop]
) -> None:
    """A censor daemon in each of these routers that has none yet; returns once every one
    of them enforces (its ready file), so a censor switched on next is in force at once."""
    info = state.info()
    pids = info.setdefault("pids", {})
    started = []
    for hop in {h.namespace: h for h in hops}.values():
        name = _hop_daemon_name(hop.namespace)
        if name in pids and netns._exists(pids[name]):
            continue
        policy_file = censor.hop_policy_file(state, hop.namespace)
        censor.ready_file(policy_file).unlink(missing_ok=True)
        if not policy_file.is_file():
            write_json(policy_file, {"hop": hop.role, "networks": []})
        command = _python(
            "censorwatch.testbed.services.censord", str(state.folder), "--hop", hop.namespace
        )
        pids[name] = _spawn(state, hop.namespace, name, command)
        started.append((name, censor.ready_file(policy_file)))
    state.write_info(info)
    deadline = time.monotonic() + READY_TIMEOUT
    for name, ready in started:
        while not ready.is_file():
            if time.monotonic() > deadline or not netns._exists(pids[name]):
                raise TestbedError(f"the censor daemon {name} did not start\n{_log_tails(state)}")
            time.sleep(0.05)


def up(scenario_spec: str, tb_id: str, *, replace: bool = False) -> TestbedState:
    scenario = scenariomod.load(scenario_spec)
    state = TestbedState.for_id(tb_id)
    if state.exists() or existing_namespaces(tb_id):
        if not replace:
            raise TestbedError(
                f"testbed {tb_id!r} is already up (or left over from a crash); "
                "run `censorwatch testbed down` first, or use --replace"
            )
        down(tb_id)
    if os.geteuid() != 0:
        raise TestbedError("the testbed builds network namespaces and needs root")
    for tool in ("ip", "iptables", "iptables-restore", "tc"):
        if shutil.which(tool) is None:
            raise TestbedError(f"{tool} is missing: run `bash scripts/run.sh setup` as root")
    plan = planmod.build(scenario, tb_id)
    state.folder.mkdir(parents=True, exist_ok=True)
    source = Path(scenario_spec)
    if source.is_file():
        state.scenario_file.write_text(source.read_text(encoding="utf-8"))
    else:
        from importlib import resources

        shipped = resources.files("censorwatch.testbed") / "scenarios" / f"{scenario_spec}.toml"
        state.scenario_file.write_text(shipped.read_text(encoding="utf-8"))
    info: dict[str, Any] = {
        "id": tb_id,
        "scenario": scenario.name,
        "scenario_source": scenario.source,
        "pids": {},
    }
    state.write_info(info)
    try:
        _make_pki(state, plan)
        address_plan = plan.address_plan()
        write_json(state.address_plan_file, address_plan)
        if geodb.writer_available():  # mmdb-writer: without it, probes find no database
            database = geodb.write_mmdb(address_plan, state.folder / "geoip" / geodb.DATABASE_NAME)
            for net in plan.networks:
                geodb.write_probe_host(
                    state.folder, net.asn, database, address_plan["public_prefixes"]
                )
        _build_network(plan)
        for net in plan.networks:
            write_json(state.policy_file(net.asn), censor.policy(plan, net, {}))
        pids = info["pids"]
        for role in planmod.INTERNET_ROLES:
            pids[f"internet-{role}"] = _spawn(
                state,
                plan.internet_ns,
                f"internet-{role}",
                _python("censorwatch.testbed.services.internet", str(state.folder), role),
            )
        pids["control"] = _spawn(state, plan.internet_ns, "control", _control_command(state))
        pids["stun"] = _spawn(state, plan.internet_ns, "stun", _stun_command())
        pids["checkin"] = _spawn_checkin(state, plan)
        for net in plan.networks:
            pids[f"censor-{net.asn}"] = _spawn(
                state,
                net.censor_ns,
                f"censor-{net.asn}",
                _python("censorwatch.testbed.services.censord", str(state.folder), net.asn),
            )
        state.write_info(info)
        # Censors further up a path get a daemon in their router, only where one is named.
        _start_hop_daemons(
            state,
            plan,
            [plan.hop(c.network, c.hop) for c in scenario.censors if c.hop != "access"],
        )
        info = state.info()
        checks = [
            (plan.internet_ns, planmod.CONTROL, 443),
            (plan.internet_ns, planmod.DOH_RESOLVER, 443),
        ]
        down_addresses = {a for h in plan.hosts.values() if h.target.down for a in h.addresses}
        checks += [
            (plan.internet_ns, a, 443)
            for a in [*plan.site_addresses(), *planmod.PUBLIC_RESOLVERS]
            if a not in down_addresses
        ]
        checks += [(net.censor_ns, net.censor_wan_ip, 443) for net in plan.networks]
        _wait_for(state, checks)
        _wait_for_ready(state, [f"internet-{role}" for role in planmod.INTERNET_ROLES])
        info["started_at"] = time.time()
        state.write_info(info)
        # Censorship scheduled from the start is in force before `up` returns.
        for c in scenario.censors:
            if c.start == 0:
                censor.set_censor(
                    state, plan, c.network, c.method, list(c.targets), True, c.rate, c.loss, c.hop
                )
        if any(c.start > 0 or c.end is not None for c in scenario.censors):
            info["pids"]["scheduler"] = _spawn(
                state,
                None,
                "scheduler",
                _python("censorwatch.testbed.scheduler", str(state.folder)),
            )
            state.write_info(info)
    except BaseException as exc:
        tails = _log_tails(state)
        down(tb_id)
        if isinstance(exc, TestbedError | netns.CommandError) and tails:
            raise TestbedError(f"{exc}\n{tails}") from exc
        raise
    return state


def _log_tails(state: TestbedState, lines: int = 15) -> str:
    """The end of each service log, so a failed start explains itself after cleanup."""
    parts = []
    for log in sorted(state.logs.glob("*.log")) if state.logs.is_dir() else []:
        text = log.read_text(errors="replace").strip().splitlines()[-lines:]
        if text:
            parts.append(f"--- {log.name}\n" + "\n".join(text))
    return "\n".join(parts)


# -- down ------------------------------------------------------------------------------------
def _is_ours(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"censorwatch" in cmdline


def down(tb_id: str) -> list[str]:
    """Remove every namespace, process, rule and file of the testbed; say what was removed."""
    removed: list[str] = []
    state = TestbedState.for_id(tb_id)
    if state.info_file.is_file():
        try:
            pids = json.loads(state.info_file.read_text()).get("pids", {})
        except ValueError:
            pids = {}
        scheduler = pids.get("scheduler")
        if scheduler and _is_ours(scheduler):
            netns.kill_pids([scheduler])
            removed.append(f"process scheduler ({scheduler})")
    for ns in existing_namespaces(tb_id):
        netns.delete_namespace(ns)
        removed.append(f"namespace {ns}")
    etc = Path("/etc/netns")
    if etc.is_dir():
        for folder in etc.glob(f"{_prefix(tb_id)}*"):
            shutil.rmtree(folder, ignore_errors=True)
    if state.folder.exists():
        shutil.rmtree(state.folder, ignore_errors=True)
        removed.append(f"state {state.folder}")
    return removed


# -- set / status / exec ---------------------------------------------------------------------
def require(tb_id: str) -> TestbedState:
    state = TestbedState.for_id(tb_id)
    if not state.exists():
        raise TestbedError(f"no testbed {tb_id!r} is up; start one with `censorwatch testbed up`")
    return state


def set_method(
    tb_id: str,
    network: str,
    method: str,
    targets: list[str],
    on: bool,
    rate: str | None = None,
    loss: str | None = None,
    hop: str | int = "access",
) -> dict:
    """Switch a censor on or off now; at a router other than the access one (``hop``), its
    daemon is started first if that router has none."""
    state = require(tb_id)
    plan = state.plan()
    hosts = [scenariomod.normalise_host(t) for t in targets]
    if rate is not None:
        rate = scenariomod.parse_rate(rate, "--rate")
    fraction = scenariomod.parse_loss(loss, "--loss") if loss is not None else None
    try:
        role = scenariomod.parse_hop(hop, "--hop", method)
        if role != "access" and on:
            _start_hop_daemons(state, plan, [plan.hop(network, role)])
        return censor.set_censor(state, plan, network, method, hosts, on, rate, fraction, role)
    except (KeyError, ValueError) as exc:
        raise TestbedError(str(exc).strip("'\"")) from exc


def status(tb_id: str) -> dict[str, Any]:
    state = require(tb_id)
    info = state.info()
    plan = state.plan()
    started = info.get("started_at")
    elapsed = time.time() - started if started else None
    active = state.active()
    networks = []
    for net in plan.networks:
        networks.append(
            {
                "asn": net.asn,
                "cc": net.network.cc,
                "name": net.network.name,
                "probe_namespace": net.probe_ns,
                "probe_ip": net.probe_ip,
                "public_ip": net.public_ip,  # differs behind NAT
                "resolver": net.censor_lan_ip,
                "active": active.get(net.asn, {}),
            }
        )
    upcoming = []
    for c in plan.scenario.censors:
        for when, on in ((c.start, True), (c.end, False)):
            if when is not None and elapsed is not None and when > elapsed:
                upcoming.append(
                    {
                        "at": when,
                        "in": round(when - elapsed, 1),
                        "network": c.network,
                        "method": c.method,
                        "on": on,
                        "targets": list(c.targets),
                    }
                )
    processes = {name: netns._exists(pid) for name, pid in info.get("pids", {}).items()}
    return {
        "id": tb_id,
        "scenario": info.get("scenario"),
        "state_dir": str(state.folder),
        "elapsed_seconds": round(elapsed, 1) if elapsed is not None else None,
        "networks": networks,
        "upcoming": sorted(upcoming, key=lambda u: u["at"]),
        "processes": processes,
        "hosts": {h: p.addresses for h, p in plan.hosts.items()},
    }


def probe_environment(tb_id: str, network: str) -> tuple[str, dict[str, str]]:
    """The probe namespace of a network, and what a probe inside it needs to know."""
    state = require(tb_id)
    plan = state.plan()
    try:
        net = plan.network(network)
    except KeyError as exc:
        raise TestbedError(str(exc).strip("'\"")) from exc
    env = {
        "CENSORWATCH_TESTBED": tb_id,
        "CENSORWATCH_CA": str(state.ca_file),
        "CENSORWATCH_CONTROL": f"https://{planmod.CONTROL}/",
        "CENSORWATCH_UDP_RESOLVER": f"{planmod.PUBLIC_RESOLVER}:53",
        "CENSORWATCH_DOH_URL": f"https://{planmod.DOH_RESOLVER}/dns-query",
        "CENSORWATCH_PROBE_ASN": net.asn,
        "CENSORWATCH_PROBE_CC": net.network.cc,
        "CENSORWATCH_PROBE_NETWORK_NAME": net.network.name or net.asn,
        "CENSORWATCH_ASN_DB": str(state.address_plan_file),
        "CENSORWATCH_REFERENCE_URL": f"https://{planmod.REFERENCE_HOST}{planmod.THROUGHPUT_PATH}",
    }
    return net.probe_ns, env


def defaults_environment(tb_id: str, network: str) -> tuple[str, dict[str, str]]:
    """What a probe host of the network has when the probe relies on its built-in defaults:
    the testbed CA, and the emulated machine's own configuration, data and state folders."""
    state = require(tb_id)
    try:
        net = state.plan().network(network)
    except KeyError as exc:
        raise TestbedError(str(exc).strip("'\"")) from exc
    home = geodb.probe_host(state.folder, net.asn)
    return net.probe_ns, {
        "CENSORWATCH_CA": str(state.ca_file),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_STATE_HOME": str(home / "state"),  # the probe's consent, lock and queue
    }


def exec_argv(
    tb_id: str, network: str, command: list[str], *, defaults: bool = False
) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of ``testbed exec``. With ``defaults``, no
    ``CENSORWATCH_*`` variable but the CA reaches the command (inherited ones are removed)."""
    if defaults:
        ns, env = defaults_environment(tb_id, network)
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("CENSORWATCH_")}
    else:
        ns, env = probe_environment(tb_id, network)
        inherited = dict(os.environ)
    # The censorwatch that runs the testbed is the one found first inside it, too.
    bin_dir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if bin_dir not in path.split(os.pathsep):
        path = os.pathsep.join([bin_dir, path]) if path else bin_dir
    return ["ip", "netns", "exec", ns, *command], {**inherited, **env, "PATH": path}
