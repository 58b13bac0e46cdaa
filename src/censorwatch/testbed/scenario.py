"""The scenario file (TOML): which networks exist, which hosts, and what each censor does when.

The format is a public contract (docs/testbed.md): other tools write these files.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

#: Every censorship method a censor can apply, alone or together.
METHODS: tuple[str, ...] = (
    "dns-nxdomain",
    "dns-bogon",
    "dns-inject",
    "dns-timeout",
    "tcp-drop",
    "tcp-rst",
    "tls-rst",
    "tls-drop",
    "tls-mitm",
    "http-blockpage",
    "http-rst",
    "quic-drop",
    "throttle",
    # Extension: random loss on the path to the targets, for noise that is not censorship.
    "packet-loss",
)

#: The routers of a network's path by name, hop 1 first (docs/testbed.md, "Paths").
HOPS: tuple[str, ...] = ("access", "core", "gateway", "transit")
DEFAULT_HOP = "access"
#: Methods only the ISP's own edge can apply: its resolver answers, its shaper shapes.
ACCESS_ONLY = frozenset({"dns-nxdomain", "dns-bogon", "throttle"})

_ASN = re.compile(r"^AS[1-9][0-9]{0,9}$")
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)?\s*$")
_RATE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(bit|kbit|mbit|gbit)\s*$", re.IGNORECASE)
_HOST = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}$")


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message says where and why."""


@dataclass(frozen=True)
class Network:
    asn: str
    cc: str
    name: str = ""
    # The probe sits behind a NAT, as most do: the internet sees the network's public address,
    # never the probe's own (plan.NetworkPlan.public_ip).
    nat: bool = False


@dataclass(frozen=True)
class Target:
    host: str
    paths: tuple[str, ...] = ("/",)
    # Extensions (docs/testbed.md): fixed addresses and owner, and a site that is down.
    addresses: tuple[str, ...] = ()
    asn: str | None = None
    as_org_name: str | None = None
    down: bool = False


@dataclass(frozen=True)
class Censor:
    network: str
    method: str
    targets: tuple[str, ...]
    start: float = 0.0
    end: float | None = None
    rate: str | None = None
    loss: float | None = None  # packet-loss: the fraction of packets dropped
    hop: str = DEFAULT_HOP  # the router of the network's path that censors (one of HOPS)


@dataclass
class Scenario:
    name: str
    networks: list[Network]
    targets: list[Target]
    censors: list[Censor] = field(default_factory=list)
    source: str = ""

    def network(self, asn: str) -> Network:
        for net in self.networks:
            if net.asn == asn:
                return net
        raise ScenarioError(f"no network {asn} in scenario {self.name!r}")

    def target(self, host: str) -> Target:
        for t in self.targets:
            if t.host == host:
                return t
        raise ScenarioError(f"no target {host!r} in scenario {self.name!r}")


def parse_duration(value: object, where: str) -> float:
    """Seconds from ``"90s"``, ``"2m"``, ``"500ms"``, ``"1h"`` or a bare number of seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ScenarioError(f"{where}: {value!r} is not a duration like '30s', '2m', '1h'")
        number, unit = float(m.group(1)), m.group(2) or "s"
        seconds = number * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    if seconds < 0:
        raise ScenarioError(f"{where}: a duration cannot be negative")
    return seconds


def parse_rate(value: object, where: str) -> str:
    m = _RATE.match(str(value))
    if not m or float(m.group(1)) <= 0:
        raise ScenarioError(f"{where}: {value!r} is not a rate like '1mbit' or '512kbit'")
    return f"{m.group(1)}{m.group(2).lower()}"


def parse_loss(value: object, where: str) -> float:
    """A fraction from ``"5%"`` or ``0.05``."""
    text = str(value).strip()
    try:
        fraction = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise ScenarioError(f"{where}: {value!r} is not a loss like '5%'") from None
    if not 0 < fraction < 1:
        raise ScenarioError(f"{where}: loss must be between 0% and 100%")
    return fraction


def parse_hop(value: object, where: str, method: str | None = None) -> str:
    """A hop by name (``"gateway"``) or by number (``3``, ``"3"``), as its name."""
    text = str(value).strip().lower()
    if isinstance(value, bool):
        text = ""
    if text.isdigit() and 1 <= int(text) <= len(HOPS):
        text = HOPS[int(text) - 1]
    if text not in HOPS:
        choices = ", ".join(f"{n} ({name})" for n, name in enumerate(HOPS, 1))
        raise ScenarioError(f"{where}: hop {value!r} is not a hop of the path; known: {choices}")
    if method in ACCESS_ONLY and text != DEFAULT_HOP:
        raise ScenarioError(
            f"{where}: {method} is applied by the ISP's own resolver or shaper, "
            f"so only at hop 1 (access), not at {text}"
        )
    return text


def normalise_host(host: str) -> str:
    return host.strip().rstrip(".").lower().encode("idna").decode("ascii")


def _require(table: dict, key: str, where: str) -> object:
    if key not in table:
        raise ScenarioError(f"{where}: missing required key {key!r}")
    return table[key]


def _known_keys(table: dict, allowed: set[str], where: str) -> None:
    unknown = set(table) - allowed
    if unknown:
        raise ScenarioError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")


def parse(data: dict, source: str = "<scenario>") -> Scenario:
    """Check and read a decoded TOML document; every error names the table and key."""
    _known_keys(data, {"name", "description", "network", "target", "censor"}, source)
    name = str(data.get("name") or Path(source).stem)
    networks: list[Network] = []
    for i, raw in enumerate(data.get("network", []), 1):
        where = f"{source}: [[network]] #{i}"
        _known_keys(raw, {"asn", "cc", "name", "nat"}, where)
        asn = str(_require(raw, "asn", where)).upper()
        if not _ASN.match(asn):
            raise ScenarioError(f"{where}: asn {asn!r} must look like 'AS17557'")
        cc = str(_require(raw, "cc", where)).upper()
        if not re.fullmatch(r"[A-Z]{2}", cc):
            raise ScenarioError(f"{where}: cc {cc!r} must be a two-letter country code")
        if any(n.asn == asn for n in networks):
            raise ScenarioError(f"{where}: network {asn} is declared twice")
        nat = raw.get("nat", False)
        if not isinstance(nat, bool):
            raise ScenarioError(f"{where}: nat must be true or false, not {nat!r}")
        networks.append(Network(asn, cc, str(raw.get("name", "")), nat))
    if not networks:
        raise ScenarioError(f"{source}: a scenario needs at least one [[network]]")
    if len(networks) > 200:
        raise ScenarioError(f"{source}: at most 200 networks are supported")

    targets: list[Target] = []
    for i, raw in enumerate(data.get("target", []), 1):
        where = f"{source}: [[target]] #{i}"
        _known_keys(raw, {"host", "paths", "addresses", "asn", "as_org_name", "down"}, where)
        host = normalise_host(str(_require(raw, "host", where)))
        if not _HOST.match(host):
            raise ScenarioError(f"{where}: {host!r} is not a host name")
        if any(t.host == host for t in targets):
            raise ScenarioError(f"{where}: host {host} is declared twice")
        paths = tuple(str(p) for p in raw.get("paths", ["/"]))
        if not paths or any(not p.startswith("/") for p in paths):
            raise ScenarioError(f"{where}: paths must be a list of paths starting with '/'")
        asn = raw.get("asn")
        if asn is not None and not _ASN.match(str(asn).upper()):
            raise ScenarioError(f"{where}: asn {asn!r} must look like 'AS13414'")
        targets.append(
            Target(
                host=host,
                paths=paths,
                addresses=tuple(str(a) for a in raw.get("addresses", [])),
                asn=str(asn).upper() if asn else None,
                as_org_name=raw.get("as_org_name"),
                down=bool(raw.get("down", False)),
            )
        )

    known_hosts = {t.host for t in targets}
    censors: list[Censor] = []
    for i, raw in enumerate(data.get("censor", []), 1):
        where = f"{source}: [[censor]] #{i}"
        _known_keys(
            raw, {"network", "method", "targets", "start", "end", "rate", "loss", "hop"}, where
        )
        network = str(_require(raw, "network", where)).upper()
        if network not in {n.asn for n in networks}:
            raise ScenarioError(f"{where}: network {network} is not declared in [[network]]")
        method = str(_require(raw, "method", where))
        if method not in METHODS:
            raise ScenarioError(f"{where}: unknown method {method!r}; known: {', '.join(METHODS)}")
        hosts = tuple(normalise_host(str(h)) for h in _require(raw, "targets", where))
        if not hosts:
            raise ScenarioError(f"{where}: targets is empty")
        undeclared = [h for h in hosts if h not in known_hosts]
        if undeclared:
            raise ScenarioError(
                f"{where}: targets {', '.join(undeclared)} are not declared in [[target]]"
            )
        start = parse_duration(raw.get("start", "0s"), f"{where} start")
        end = parse_duration(raw["end"], f"{where} end") if "end" in raw else None
        if end is not None and end <= start:
            raise ScenarioError(f"{where}: end must come after start")
        rate = None
        if method == "throttle":
            rate = parse_rate(_require(raw, "rate", where), f"{where} rate")
        elif "rate" in raw:
            raise ScenarioError(f"{where}: rate only applies to the throttle method")
        loss = None
        if method == "packet-loss":
            loss = parse_loss(_require(raw, "loss", where), f"{where} loss")
        elif "loss" in raw:
            raise ScenarioError(f"{where}: loss only applies to the packet-loss method")
        hop = parse_hop(raw.get("hop", DEFAULT_HOP), f"{where} hop", method)
        censors.append(Censor(network, method, hosts, start, end, rate, loss, hop))
    return Scenario(name=name, networks=networks, targets=targets, censors=censors, source=source)


def shipped() -> list[str]:
    """Names of the scenarios that come with the package."""
    folder = resources.files("censorwatch.testbed") / "scenarios"
    return sorted(
        p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")
    )


def scenario_population(name: str) -> Path:
    """The user-population estimates shipped beside a scenario (``NAME.population.json``, in
    ``events.population``'s normalised form; illustrative figures for the emulated networks)."""
    path = Path(
        str(resources.files("censorwatch.testbed") / "scenarios" / f"{name}.population.json")
    )
    if not path.is_file():
        raise ScenarioError(f"scenario {name!r} ships no population estimates")
    return path


def load(name_or_path: str) -> Scenario:
    """Read a scenario from a path, or by the name of one shipped with the package."""
    path = Path(name_or_path)
    if path.is_file():
        text, source = path.read_text(encoding="utf-8"), str(path)
    else:
        folder = resources.files("censorwatch.testbed") / "scenarios"
        shipped_file = folder / f"{name_or_path}.toml"
        if not shipped_file.is_file():
            raise ScenarioError(
                f"no scenario file {name_or_path!r} and no shipped scenario of that name "
                f"(shipped: {', '.join(shipped())})"
            )
        text, source = shipped_file.read_text(encoding="utf-8"), f"{name_or_path} (shipped)"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: not valid TOML: {exc}") from exc
    return parse(data, source)
