"""`censorwatch analyze` and `censorwatch fingerprints sync|match|status`: thin shells."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

fingerprints_app = typer.Typer(
    help="Blockpage and censor-DNS fingerprints (OONI, Censored Planet): fetch and try them.",
    no_args_is_help=True,
)

FINGERPRINTS_HELP = (
    "Directory searched recursively for fingerprints_dns.csv, fingerprints_http.csv, "
    "blockpage_signatures.json, false_positive_signatures.json "
    "[env CENSORWATCH_FINGERPRINTS; default: where `fingerprints sync` writes]"
)
ASN_DB_HELP = (
    "IP database: a .mmdb file, a directory of dated .mmdb files (each measurement uses the "
    "one valid on its day), an iptoasn TSV or an address plan (JSON) [env CENSORWATCH_ASN_DB]"
)


def _load_fingerprints(directory: Path | None):  # -> Fingerprints
    from censorwatch.analysis.fingerprints import Fingerprints

    try:
        return Fingerprints.default(directory)
    except FileNotFoundError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def analyze(
    paths: list[Path] = typer.Argument(
        ..., help="Measurement files or directories (JSON, JSONL, .gz), '-' for stdin."
    ),
    json_out: bool = typer.Option(False, "--json", help="Write JSONL verdict records."),
    fingerprints: Path | None = typer.Option(None, "--fingerprints", help=FINGERPRINTS_HELP),
    asn_db: Path | None = typer.Option(None, "--asn-db", help=ASN_DB_HELP),
) -> None:
    """Say for each measurement: ok, blocked (and how), down, or unknown, with the evidence."""
    import gc

    import msgspec

    from censorwatch.analysis.core import analyze_files
    from censorwatch.geo import ip_database

    fps = _load_fingerprints(fingerprints)
    try:
        plan = ip_database(asn_db)
    except (OSError, ValueError) as exc:
        typer.echo(f"error: cannot read the ASN database: {exc}", err=True)
        raise typer.Exit(2) from None

    # What is loaded now (modules, fingerprints) lives as long as the process: keep it out of
    # the garbage collector's generations, which then scan only one measurement's objects.
    gc.freeze()
    encode = msgspec.json.Encoder().encode
    write = sys.stdout.buffer.write
    out = sys.stdout.buffer
    verdicts = []
    read = errors = 0
    testbeds: dict[str, int] = {}
    for source, result, problem in analyze_files(paths, fps, plan):
        if result is None:
            errors += 1
            typer.echo(f"{source}: {problem}", err=True)
            continue
        read += 1
        if result.testbed is not None:
            testbeds[result.testbed] = testbeds.get(result.testbed, 0) + 1
        if json_out:
            write(encode(result.verdict) + b"\n")
        else:
            verdicts.append(result.verdict)
    if json_out:
        out.flush()
    else:
        from censorwatch.analysis.render import summary_line, verdict_table
        from censorwatch.console import table_console

        console = table_console()
        if verdicts:
            console.print(verdict_table(verdicts))
            console.print(summary_line(verdicts))
        if not len(fps):
            console.print(
                "[dim]no fingerprints loaded: nothing can be confirmed "
                "(use --fingerprints DIR or `censorwatch fingerprints sync`)[/dim]"
            )
    if read == 0:
        typer.echo("error: no measurement could be read", err=True)
        raise typer.Exit(1)
    if errors:
        typer.echo(f"{errors} item(s) could not be read (see above)", err=True)
    if testbeds and not plan.public_prefixes:
        from censorwatch.testbed.state import TestbedState

        running = TestbedState.for_id(min(testbeds)).address_plan_file
        typer.echo(_TESTBED_WITHOUT_PLAN.format(
            count=sum(testbeds.values()), ids=", ".join(sorted(testbeds)), running=running,
        ), err=True)  # fmt: skip


_TESTBED_WITHOUT_PLAN = (
    "warning: {count} measurement(s) come from the emulated network (testbed {ids}) but no "
    "address plan was given, so its public-internet addresses count as bogons (a forged DNS "
    "answer then reads as dns.bogon). Pass --asn-db with the testbed's address plan: "
    "{running} while it runs, or the "
    "address-plan.json that `censorwatch demo` keeps next to its measurements."
)


@fingerprints_app.command("match")
def match(
    files: list[Path] = typer.Argument(..., help="Saved HTML pages (or raw HTTP responses)."),
    fingerprints: Path | None = typer.Option(None, "--fingerprints", help=FINGERPRINTS_HELP),
    cc: str | None = typer.Option(None, "--cc", help="Probe country, for country-scoped ones."),
) -> None:
    """Show which fingerprint, if any, each page matches (false positives checked first)."""
    from censorwatch.analysis.fingerprints import split_raw_response

    fps = _load_fingerprints(fingerprints)
    if not len(fps):
        typer.echo("error: no fingerprints loaded (use --fingerprints DIR)", err=True)
        raise typer.Exit(2)
    matched = 0
    for path in files:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            typer.echo(f"{path}: cannot read: {exc}", err=True)
            continue
        headers, body = split_raw_response(raw)
        result = fps.classify_http(body, headers, cc)
        if result.blockpage is True:
            matched += 1
            fp = result.fingerprint
            where = f" [{fp.source}, {fp.scope or 'unscoped'}]" if fp else ""
            typer.echo(f"{path}: blockpage {result.name}{where}")
        elif result.blockpage is False:
            typer.echo(f"{path}: known false positive {result.name} (not a blockpage)")
        else:
            typer.echo(f"{path}: no match")
    if len(files) > 1:
        typer.echo(f"{matched}/{len(files)} matched a blockpage fingerprint")


@fingerprints_app.command("sync")
def sync(
    dest: Path | None = typer.Option(
        None, "--dest", help="Where to write [default: $XDG_DATA_HOME/censorwatch/fingerprints]"
    ),
    source: str | None = typer.Option(
        None, "--source", help="Base URL that serves the four files (default: upstream)."
    ),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds per file."),
) -> None:
    """Fetch the current upstream fingerprint files (needs a network)."""
    from censorwatch.analysis.sync import SyncError, sync_fingerprints

    try:
        written = sync_fingerprints(dest, source=source, timeout=timeout)
    except SyncError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    for path, count in written:
        typer.echo(f"{path}: {count} entries")


@fingerprints_app.command("status")
def status(
    fingerprints: Path | None = typer.Option(None, "--fingerprints", help=FINGERPRINTS_HELP),
) -> None:
    """Which fingerprint files would be used, and how many of each kind they hold."""
    fps = _load_fingerprints(fingerprints)
    if not len(fps):
        typer.echo("no fingerprints found")
        raise typer.Exit(1)
    for src in fps.sources:
        typer.echo(src)
    counts = fps.counts()
    typer.echo(
        f"{counts['dns']} DNS, {counts['http']} HTTP, {counts['false_positive']} false-positive"
    )
