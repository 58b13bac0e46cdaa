"""Everything a probe run needs to know, from options or, as defaults, the environment.

Inside ``censorwatch testbed exec`` the testbed sets the ``CENSORWATCH_*`` variables below, so
``censorwatch probe --url https://x.com/`` finds its CA, control and resolvers unaided.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from censorwatch.geo import ip_database
from censorwatch.netinfo import ASN_DB_ENV, AddressPlan
from censorwatch.probe.budget import Budgets
from censorwatch.probe.defaults import ProbeDefaults, default_geo_dir
from censorwatch.probe.dns import parse_hostport
from censorwatch.probe.geolocate import Location, ResolverFacts, with_public_ranges
from censorwatch.probe.tls import TrustAnchors
from censorwatch.times import compact_stamp

ENV_CA = "CENSORWATCH_CA"
ENV_CONTROL = "CENSORWATCH_CONTROL"
ENV_UDP_RESOLVER = "CENSORWATCH_UDP_RESOLVER"
ENV_DOH_URL = "CENSORWATCH_DOH_URL"
ENV_PROBE_ASN = "CENSORWATCH_PROBE_ASN"
ENV_PROBE_CC = "CENSORWATCH_PROBE_CC"
ENV_PROBE_NETWORK_NAME = "CENSORWATCH_PROBE_NETWORK_NAME"
ENV_REFERENCE_URL = "CENSORWATCH_REFERENCE_URL"
ENV_TESTBED = "CENSORWATCH_TESTBED"

SOFTWARE_NAME = "censorwatch"
TEST_VERSION = "0.5.28-cw"


def system_resolver(resolv_conf: str | Path = "/etc/resolv.conf") -> tuple[str, int] | None:
    """The first ``nameserver`` of resolv.conf (what the operating system would ask)."""
    try:
        text = Path(resolv_conf).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            return parts[1].split("%", 1)[0], 53
    return None


def default_state_dir() -> Path:
    """Where the probe keeps what outlives a run (consent, lock, queue, log, unattended
    measurements): ``$STATE_DIRECTORY`` when systemd gives one (``StateDirectory=``), else
    ``$XDG_STATE_HOME/censorwatch/probe`` (``~/.local/state`` when unset)."""
    given = os.environ.get("STATE_DIRECTORY", "").split(":", 1)[0]
    if given:
        return Path(given)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "censorwatch" / "probe"


def make_report_id(start: datetime, cc: str, asn: str) -> str:
    """OONI-like: ``YYYYMMDDThhmmssZ_webconnectivity_CC_ASN_n1_random``."""
    stamp = compact_stamp(start)
    number = asn.upper().removeprefix("AS") or "0"
    return f"{stamp}_webconnectivity_{cc.upper()}_{number}_n1_{secrets.token_urlsafe(12)}"


@dataclass
class ProbeConfig:
    """Resolvers, control, trust anchors, metadata and budgets for one run."""

    system_resolver: tuple[str, int] | None = None
    udp_resolver: tuple[str, int] | None = None
    doh_url: str | None = None
    control_url: str | None = None
    cafile: str | None = None
    testbed: str | None = None
    probe_asn: str = "AS0"
    probe_cc: str = "ZZ"
    probe_network_name: str = ""
    reference_url: str | None = None
    throughput: bool = False
    quic: bool = True
    # Try the ways around a block once one is seen (probe/workarounds.py).
    workarounds: bool = True
    budgets: Budgets = field(default_factory=Budgets)
    plan: AddressPlan = field(default_factory=lambda: ip_database(None))
    report_id: str = ""
    software_version: str = ""
    _anchors: TrustAnchors | None = None
    signing_key: object = None  # an Ed25519 private key: each measurement is signed when set
    # Further controls, tried in order after ``control_url`` when it does not answer.
    fallback_controls: list[str] = field(default_factory=list)
    stun_servers: list[str] = field(default_factory=list)
    checkin_urls: list[str] = field(default_factory=list)
    # True when neither options nor environment said where the probe is: it finds out.
    locate: bool = False
    location: Location | None = None
    resolver: ResolverFacts | None = None
    # Addresses of this host learned before measuring (STUN): scrubbed from everything.
    own_addresses: set[str] = field(default_factory=set)
    defaults_sources: tuple[str, ...] = ()
    geo_database: str = ""  # what the plan was opened from ("" when none)
    control_named: bool = False  # by an option or the environment: check-in does not replace it
    unattended: bool = False  # a scheduled run (check-in's run_type "timed")
    checkin_note: dict[str, Any] | None = None  # annotations.x_checkin: service, failure
    # ``--locate``: find the hop of the path where the censor sits (probe/locate.py).
    locate_censor: bool = False
    # The defaults (with the user's configuration file) whose public resolvers the ways
    # around a block may also ask (probe/workarounds.py); None, as with ``--no-defaults``:
    # only the resolvers options and environment named.
    resolver_defaults: ProbeDefaults | None = None

    def for_another_run(self) -> ProbeConfig:
        """A copy with nothing a run learns: location, check-in's controls, report id and
        addresses start afresh, so each cycle of an unattended probe finds them again (a
        laptop moves between networks). Call it on a configuration no run has used."""
        return dataclasses.replace(
            self,
            fallback_controls=list(self.fallback_controls),
            stun_servers=list(self.stun_servers),
            checkin_urls=list(self.checkin_urls),
            own_addresses=set(self.own_addresses),
            location=None,
            resolver=None,
            checkin_note=None,
            report_id="",
        )

    @property
    def controls(self) -> list[str]:
        """Every control, in the order they are tried."""
        first = [self.control_url] if self.control_url else []
        return first + [c for c in self.fallback_controls if c != self.control_url]

    @property
    def anchors(self) -> TrustAnchors:
        """The ``--ca`` file, plus the system store except in testbed mode."""
        if self._anchors is None:
            self._anchors = TrustAnchors(self.cafile, system=not self.testbed)
        return self._anchors

    @classmethod
    def from_env(
        cls,
        *,
        system_resolver_opt: str | None = None,
        udp_resolver: str | None = None,
        doh_url: str | None = None,
        control_url: str | None = None,
        cafile: str | None = None,
        testbed: str | None = None,
        probe_asn: str | None = None,
        probe_cc: str | None = None,
        probe_network_name: str | None = None,
        reference_url: str | None = None,
        asn_db: str | None = None,
        throughput: bool = False,
        quic: bool = True,
        workarounds: bool | None = None,
        budgets: Budgets | None = None,
        env: dict[str, str] | None = None,
        defaults: ProbeDefaults | None = None,
    ) -> ProbeConfig:
        """Options win over ``CENSORWATCH_*`` variables, which win over ``defaults`` (the
        configuration file, :mod:`censorwatch.probe.defaults`).

        Without ``defaults``, or in testbed mode, nothing is filled in: the probe contacts
        only what it was told to (a testbed names everything it has).
        """
        env = dict(os.environ) if env is None else env
        from censorwatch import __version__

        testbed = testbed or env.get(ENV_TESTBED) or None
        d = defaults if defaults is not None and not testbed else ProbeDefaults()
        udp = udp_resolver or env.get(ENV_UDP_RESOLVER) or next(iter(d.udp_resolvers), None)
        control = control_url or env.get(ENV_CONTROL) or None
        controls = [c for c in d.control_urls if c != control]
        asn = probe_asn or env.get(ENV_PROBE_ASN)
        cc = probe_cc or env.get(ENV_PROBE_CC)
        database = asn_db or env.get(ASN_DB_ENV) or d.geo_database
        if not database and defaults is not None and not testbed:
            geo_dir = default_geo_dir()
            database = str(geo_dir) if geo_dir.is_dir() and any(geo_dir.glob("*.mmdb")) else ""
        plan = ip_database(database) if database else ip_database(None)
        if d.public_prefixes:
            plan = with_public_ranges(plan, d.public_prefixes)
        return cls(
            system_resolver=parse_hostport(system_resolver_opt)
            if system_resolver_opt
            else system_resolver(),
            udp_resolver=parse_hostport(udp) if udp else None,
            doh_url=doh_url or env.get(ENV_DOH_URL) or next(iter(d.doh_urls), None),
            control_url=control or next(iter(controls), None),
            fallback_controls=[] if control else controls[1:],  # a named control stands alone
            cafile=cafile or env.get(ENV_CA) or None,
            testbed=testbed,
            probe_asn=(asn or "AS0").upper(),
            probe_cc=(cc or "ZZ").upper(),
            probe_network_name=probe_network_name or env.get(ENV_PROBE_NETWORK_NAME) or "",
            reference_url=reference_url or env.get(ENV_REFERENCE_URL) or d.reference_url or None,
            throughput=throughput,
            quic=quic,
            workarounds=d.workarounds if workarounds is None else workarounds,
            budgets=budgets or Budgets(),
            plan=plan,  # .mmdb, a directory of them, TSV or address plan
            software_version=str(__version__),
            stun_servers=list(d.stun_servers),
            checkin_urls=list(d.checkin_urls),
            locate=not (asn and cc),
            defaults_sources=d.sources,
            geo_database=database or "",
            control_named=bool(control),
            # Kept in testbed mode too: the testbed serves the defaults' resolvers.
            resolver_defaults=defaults,
        )
