"""Thin, logged wrappers over ``ip``, ``iptables`` and ``tc`` inside named namespaces."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


class CommandError(RuntimeError):
    """A system command failed; the message carries the command and what it printed."""


def run(
    args: Sequence[str],
    *,
    ns: str | None = None,
    check: bool = True,
    input_text: str | None = None,
    timeout: float = 30,
) -> subprocess.CompletedProcess:
    if ns and args and args[0] == "ip":
        cmd = ["ip", "-n", ns, *args[1:]]  # one process, no ``netns exec`` mount dance
    else:
        cmd = ["ip", "netns", "exec", ns, *args] if ns else list(args)
    proc = subprocess.run(
        cmd, capture_output=True, text=True, input=input_text, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise CommandError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def list_namespaces() -> list[str]:
    proc = run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]


def add_namespace(name: str) -> None:
    run(["ip", "netns", "add", name])
    run(["ip", "link", "set", "lo", "up"], ns=name)
    keys = ("net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter")
    run(["sysctl", "-q", "-w", *(f"{key}=0" for key in keys)], ns=name)


def enable_forwarding(name: str) -> None:
    run(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"], ns=name)


def veth(ns_a: str, if_a: str, ns_b: str, if_b: str) -> None:
    """A cable between two namespaces; both ends are created directly where they belong."""
    run(
        [
            "ip",
            "link",
            "add",
            if_a,
            "netns",
            ns_a,
            "type",
            "veth",
            "peer",
            "name",
            if_b,
            "netns",
            ns_b,
        ]
    )
    for ns, ifname in ((ns_a, if_a), (ns_b, if_b)):
        run(["ip", "link", "set", ifname, "up"], ns=ns)
        run(["sysctl", "-q", "-w", f"net.ipv4.conf.{ifname}.rp_filter=0"], ns=ns)
        # No IPv6 link-local chatter: the testbed is IPv4 only.
        run(["sysctl", "-q", "-w", f"net.ipv6.conf.{ifname}.disable_ipv6=1"], ns=ns, check=False)


def address(ns: str, ifname: str, cidr: str) -> None:
    run(["ip", "addr", "add", cidr, "dev", ifname], ns=ns)


def route(ns: str, *spec: str) -> None:
    run(["ip", "route", "add", *spec], ns=ns)


def namespace_pids(name: str) -> list[int]:
    proc = run(["ip", "netns", "pids", name], check=False)
    return [int(p) for p in proc.stdout.split() if p.isdigit()]


def kill_pids(pids: list[int], grace: float = 2.0) -> None:
    """TERM, wait a little, then KILL what is left."""
    alive = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
            alive.append(pid)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if _exists(p)]
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def delete_namespace(name: str) -> None:
    kill_pids(namespace_pids(name))
    run(["ip", "netns", "del", name], check=False)
    etc = Path("/etc/netns") / name
    if etc.is_dir():
        for f in etc.iterdir():
            f.unlink(missing_ok=True)
        etc.rmdir()


def set_resolv_conf(ns: str, nameserver: str) -> None:
    """``ip netns exec`` bind-mounts /etc/netns/NS/resolv.conf over /etc/resolv.conf."""
    folder = Path("/etc/netns") / ns
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "resolv.conf").write_text(
        f"# censorwatch testbed: this network's ISP resolver\nnameserver {nameserver}\n"
        "options timeout:2 attempts:1\n"
    )
