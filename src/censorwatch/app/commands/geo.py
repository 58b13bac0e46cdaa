"""`censorwatch geo sync|lookup`: thin shells over ``censorwatch.geo``."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(
    help="MaxMind-format IP databases (DB-IP Lite, GeoLite2, OONI's ip2country_as): "
    "fetch them, ask them.",
    no_args_is_help=True,
)


@app.command("sync")
def sync(
    directory: Path | None = typer.Option(
        None, "--dir", help="Where to write [default: $XDG_DATA_HOME/censorwatch/geoip]"
    ),
    source: list[str] | None = typer.Option(
        None,
        "--source",
        help="URL of a .mmdb or .mmdb.gz file (repeatable) "
        "[default: DB-IP Lite ASN and country, OONI's ip2country_as, this month's]",
    ),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds without progress."),
    max_seconds: float = typer.Option(600.0, "--max-seconds", help="Seconds per file in all."),
) -> None:
    """Fetch current free IP databases (needs a network); a bad file replaces nothing."""
    from censorwatch.app.geo_sync import (
        GeoSyncError,
        SyncResult,
        default_geo_dir,
        source_from_url,
        sync_databases,
    )

    try:
        sources = [source_from_url(url) for url in source] if source else None
    except GeoSyncError as exc:
        raise typer.BadParameter(str(exc), param_hint="--source") from None
    target = directory or default_geo_dir()
    results = sync_databases(target, sources, timeout=timeout, deadline_seconds=max_seconds)
    failed = 0
    for result in results:
        if isinstance(result, SyncResult):
            typer.echo(f"{result.path}: {result.status} ({result.database_type})")
        else:
            failed += 1
            typer.echo(f"error: {result}", err=True)
    if failed:
        typer.echo(f"{failed} of {len(results)} database(s) not synced", err=True)
        raise typer.Exit(1)
    typer.echo(f"use with: --asn-db {target}")


@app.command("lookup")
def lookup(
    addresses: list[str] = typer.Argument(..., help="IP addresses (IPv4 or IPv6)."),
    asn_db: Path | None = typer.Option(
        None, "--asn-db", help="A .mmdb file or a directory of them [env CENSORWATCH_ASN_DB]"
    ),
    when: str | None = typer.Option(
        None, "--date", help="Answer as on this day (a measurement's start time) [today]"
    ),
) -> None:
    """Show each address's AS, organisation and country, and which file answered."""
    from censorwatch.geo import GeoDatabaseError, IPFacts, MaxMindPlan, ip_database

    try:
        plan = ip_database(asn_db).at(when)
    except (OSError, ValueError) as exc:
        typer.echo(f"error: cannot read the IP database: {exc}", err=True)
        raise typer.Exit(2) from None
    unknown = 0
    for address in addresses:
        try:
            if isinstance(plan, MaxMindPlan):
                facts = plan.facts(address)
            else:  # an iptoasn TSV or an address plan: AS facts only
                info = plan.lookup(address)
                facts = IPFacts(info.asn, info.as_org_name, info.cc) if info else None
        except GeoDatabaseError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        if facts is None:
            unknown += 1
            typer.echo(f"{address}: not in the database")
            continue
        asn = f"AS{facts.asn}" if facts.asn else "AS?"
        org = f" {facts.as_org_name}" if facts.as_org_name else ""
        source = f" [{facts.source}]" if facts.source else ""
        typer.echo(f"{address}: {asn}{org} {facts.cc or '??'}{source}")
    if unknown == len(addresses):
        raise typer.Exit(1)
