"""MaxMind-format databases of the testbed's address plan, and each probe host's own files.

A probe told nothing but the CA finds its network the way it does on the internet: STUN, then
a lookup in a MaxMind-format database where ``censorwatch geo sync`` would have put one. The
testbed writes that database from its address plan (with mmdb-writer, in the record layout of
OONI's ``ip2country_as`` files) and gives every probe namespace a home of its own
(``hosts/<ASN>/``: ``XDG_CONFIG_HOME`` and ``XDG_DATA_HOME`` of that emulated machine), holding
the database and a configuration file that says which ranges are public on this emulated
internet. Nothing else of the probe's defaults is changed there.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

DATABASE_NAME = "testbed-ip2country_as.mmdb"


def writer_available() -> bool:
    """Whether mmdb-writer is installed (it comes with the test extra)."""
    import importlib.util

    return importlib.util.find_spec("mmdb_writer") is not None


def write_mmdb(address_plan: dict[str, Any], path: Path) -> Path:
    """Write the plan's networks (AS number, AS name, country) as one IPv4 MaxMind DB."""
    from mmdb_writer import MmdbU32, MMDBWriter
    from netaddr import IPSet

    writer = MMDBWriter(
        ip_version=4,
        database_type="censorwatch-testbed-ip2country_as",
        description="censorwatch testbed address plan",
    )
    # Longest prefixes last, so that a /32 inside a /24 keeps its own record.
    entries = sorted(
        address_plan.get("networks", []),
        key=lambda e: ipaddress.ip_network(e["prefix"], strict=False).prefixlen,
    )
    for entry in entries:
        record: dict[str, Any] = {
            "autonomous_system_number": MmdbU32(int(str(entry["asn"]).removeprefix("AS"))),
            "autonomous_system_organization": entry.get("as_org_name", ""),
        }
        if entry.get("cc"):
            record["country"] = {"iso_code": entry["cc"]}
        writer.insert_network(IPSet([entry["prefix"]]), record)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer.to_db_file(str(path))
    return path


def probe_host(state_folder: Path, asn: str) -> Path:
    """The emulated machine of one network's probe namespace."""
    return state_folder / "hosts" / asn


def write_probe_host(
    state_folder: Path, asn: str, database: Path, public_prefixes: list[str]
) -> Path:
    """The probe host's configuration and data folders (``XDG_CONFIG_HOME``/``XDG_DATA_HOME``)."""
    home = probe_host(state_folder, asn)
    geo = home / "data" / "censorwatch" / "geoip"
    geo.mkdir(parents=True, exist_ok=True)
    link = geo / database.name
    if not link.exists():
        link.symlink_to(database)
    config = home / "config" / "censorwatch" / "probe.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    prefixes = ", ".join(f'"{p}"' for p in public_prefixes)
    config.write_text(
        "# Written by the testbed: this emulated internet uses documentation ranges.\n"
        f"[geolocation]\npublic_prefixes = [{prefixes}]\n",
        encoding="utf-8",
    )
    return home


__all__ = ["DATABASE_NAME", "probe_host", "write_mmdb", "write_probe_host", "writer_available"]
