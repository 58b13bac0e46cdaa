"""Before the first URL: find out where the probe is, and check in with the probe services.

Kept apart from the flow of one URL so that a run learns its network, its controls and its
test list once, and every measurement of the run carries the same answer.
"""

from __future__ import annotations

from censorwatch import failures
from censorwatch.probe import checkin, geolocate
from censorwatch.probe.config import ProbeConfig
from censorwatch.scrub import Scrubber
from censorwatch.targets import Target


async def prepare(cfg: ProbeConfig, targets: list[Target]) -> list[Target]:
    """Locate the probe, check in, and return what to measure: the given targets, or the
    check-in's list when none were given."""
    await locate(cfg)
    if not cfg.checkin_urls:
        return targets
    loc = cfg.location
    body = checkin.request_body(
        cfg.software_version,
        cfg.probe_asn,
        cfg.probe_cc,
        run_type="timed" if cfg.unattended else "manual",
    )
    learner = Scrubber(cfg.own_addresses)
    answer, failure = await checkin.check_in(
        cfg.checkin_urls, body, verify=cfg.anchors.ssl_context(), scrubber=learner
    )
    cfg.own_addresses |= set(learner.addresses)
    cfg.checkin_note = {"service": answer.service if answer else None, "failure": failure}
    if answer is None:
        return targets
    if loc is not None and not loc.known and answer.asn != "AS0" and answer.cc != "ZZ":
        found = geolocate.Location(
            asn=answer.asn,
            cc=answer.cc,
            network_name=answer.network_name,
            method=geolocate.METHOD_CHECKIN,
            stun_answers=loc.stun_answers,
        )
        apply(cfg, found)
    if answer.controls and not cfg.control_named:
        fresh = answer.controls + [c for c in cfg.controls if c not in answer.controls]
        cfg.control_url, cfg.fallback_controls = fresh[0], fresh[1:]
    return targets or answer.targets


async def locate(cfg: ProbeConfig) -> None:
    """Fill ``probe_asn``/``probe_cc``/``probe_network_name`` and the resolver's network from
    STUN and the databases, when options and environment did not name them."""
    if not cfg.locate:
        return
    address, answers, failure = await geolocate.public_address(cfg.stun_servers)
    if address is not None:
        cfg.own_addresses.add(address)
    loc = geolocate.locate(cfg.plan, address, geolocate.METHOD_STUN)
    loc.stun_answers = answers
    if failure is not None:
        loc.failure = failure
    elif not cfg.geo_database and not loc.known:
        loc.failure = failures.GEOLOCATION_NO_DATABASE
    apply(cfg, loc)
    cfg.resolver = await geolocate.resolver_facts(
        cfg.plan, cfg.system_resolver, cfg.plan.public_prefixes
    )


def apply(cfg: ProbeConfig, loc: geolocate.Location) -> None:
    """Write a location into the run's metadata (only what it knows)."""
    cfg.location = loc
    cfg.probe_asn, cfg.probe_cc = loc.asn, loc.cc
    cfg.probe_network_name = loc.network_name
