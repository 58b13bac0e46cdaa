"""``censorwatch keys`` and ``censorwatch evidence``: thin shells over the evidence modules."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from censorwatch.app.settings import DEFAULT_DB, LOG_DIR_NAME

if TYPE_CHECKING:
    from censorwatch.store.base import Filters

keys_app = typer.Typer(help="Probe signing keys (Ed25519). A key names a device, never a person.")
evidence_app = typer.Typer(
    help="Evidence: offline-verifiable bundles and transparency-log monitoring.",
    no_args_is_help=True,
)

LOG_DIR_ENV = "CENSORWATCH_LOG_DIR"
MAX_EXPORT = 100_000
DEFAULT_MAX_MB = 200.0  # evidence.scope.DEFAULT_MAX_BYTES, in MB


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


# -- keys ------------------------------------------------------------------------------------------


@keys_app.command("init")
def keys_init(
    key: Annotated[
        Path | None,
        typer.Option(
            "--key",
            help="Key file (default $CENSORWATCH_PROBE_KEY or "
            "$XDG_CONFIG_HOME/censorwatch/probe.key).",
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace an existing key; create it (with a warning) in a directory others "
            "can write.",
        ),
    ] = False,
) -> None:
    """Create this probe's signing key (mode 0600); refuses to overwrite one, or to create it
    in a directory other users can write, without --force."""
    from censorwatch.signing.encoding import b64encode, key_id, public_key_bytes
    from censorwatch.signing.keys import (
        KeyFileError,
        default_probe_key_path,
        exposed_directory,
        generate_key_file,
    )

    path = key or default_probe_key_path()
    exposure = exposed_directory(path)
    if exposure is not None:
        if not force:
            raise _fail(
                f"{exposure}: another user could replace or read the key; choose a private "
                "directory (or use --force)"
            )
        typer.echo(f"warning: {exposure}: another user could replace or read the key", err=True)
    try:
        private = generate_key_file(path, force=force)
    except KeyFileError as exc:
        raise _fail(str(exc)) from None
    pub = public_key_bytes(private)
    typer.echo(f"created probe key {key_id(pub)} in {path}")
    typer.echo(f"public key (base64): {b64encode(pub)}")


@keys_app.command("show")
def keys_show(
    key: Annotated[Path | None, typer.Option("--key", help="Key file.")] = None,
) -> None:
    """Print the key id and public key of this probe's key."""
    from censorwatch.signing.encoding import b64encode, key_id, public_key_bytes
    from censorwatch.signing.keys import KeyFileError, default_probe_key_path, load_private_key

    path = key or default_probe_key_path()
    try:
        pub = public_key_bytes(load_private_key(path))
    except KeyFileError as exc:
        raise _fail(str(exc)) from None
    typer.echo(json.dumps({"key_id": key_id(pub), "public_key": b64encode(pub), "path": str(path)}))


# -- measurement sources ---------------------------------------------------------------------------


def _read_objects(paths: list[Path], what: str) -> Iterator[dict[str, Any]]:
    """The JSON objects of files or trees (``observations.reader``); an unreadable file or
    line is named on stderr and skipped."""
    from censorwatch.observations.reader import iter_json_objects

    for item in iter_json_objects(paths, what=what):
        if item.ok and item.record is not None:
            yield item.record
        else:
            typer.echo(f"skipped {item.source}: {item.error}", err=True)


def iter_measurement_files(paths: list[Path]) -> Iterator[dict[str, Any]]:
    """Measurements from JSON, JSON-list, JSONL(.gz) files, or directories of them."""
    return _read_objects(paths, "measurement")


def _find_event(event_id: str, events_file: Path | None, db: Path | None) -> dict[str, Any]:
    """The event record: from the events file when given, else recomputed from the store.

    The collector names each measurement itself (its UID covers the report it was filed
    under), so an event found from probe-side verdicts may cite UIDs the store does not use;
    such an event is looked up again, by its (content-derived) id, among the store's events.
    """
    if events_file is not None:
        record = next(
            (r for r in _read_objects([events_file], "event") if r.get("event_id") == event_id),
            None,
        )
        if record is None:
            raise _fail(f"event {event_id} is not in {events_file}")
        if db is None or _all_stored(db, record.get("evidence") or []):
            return record
        typer.echo(
            f"note: the measurements {events_file} cites for {event_id} are stored under the "
            "collector's UIDs; taking the event as found in the store",
            err=True,
        )
    if db is None:
        raise _fail("--event needs --events FILE.jsonl or --db")
    for record in _events_from_store(db):
        if record["event_id"] == event_id:
            return record
    raise _fail(f"event {event_id} is not among the events found in {db}")


def _all_stored(db: Path, uids: list[str]) -> bool:
    store = _open_store(db)
    try:
        return len(store.existing(list(uids))) == len(set(uids))
    finally:
        store.close()


def _events_from_store(db: Path) -> list[dict[str, Any]]:
    from censorwatch.events.records import with_reports
    from censorwatch.events.tracker import EventTracker

    store = _open_store(db)
    try:
        tracker = EventTracker()
        tracker.update(store.iter_verdicts())
        events = with_reports(tracker.events(), store)  # people's reports around each onset
    finally:
        store.close()
    return [ev.to_record() for ev in events]


def _from_store(
    db: Path, archive: Path, uids: list[str] | None, filters: Filters, limit: int
) -> list[dict[str, Any]]:
    from censorwatch.collector.archive import Archive
    from censorwatch.collector.pipeline import Pipeline

    store = _open_store(db)
    try:
        pipeline = Pipeline(Archive(archive), store, analyzer=lambda m: {})
        if uids is None:
            rows = store.query(filters, limit=limit, offset=0, order="asc")
            uids = [row["measurement_uid"] for row in rows]
        found = []
        for uid in uids:
            m = pipeline.raw(uid)
            if m is None:
                raise _fail(f"measurement {uid} is not in {archive}")
            found.append(m)
        return found
    finally:
        store.close()


def _open_store(db: Path) -> Any:
    from censorwatch.store import StoreNotFoundError, UnsupportedStoreError, open_store

    try:
        return open_store(db, read_only=True)
    except (StoreNotFoundError, UnsupportedStoreError) as exc:
        raise _fail(str(exc)) from None
    except Exception as exc:  # DuckDB reports a live writer as a generic IOException
        raise _fail(f"cannot open {db} ({exc}); is the collector still running?") from None


# -- evidence --------------------------------------------------------------------------------------


@evidence_app.command("export")
def export(
    out: Annotated[Path, typer.Option("--out", help="Bundle to write (zip).")],
    event: Annotated[
        str | None, typer.Option("--event", help="Export the evidence of this event.")
    ] = None,
    events_file: Annotated[
        Path | None, typer.Option("--events", help="Event records (censorwatch events --json).")
    ] = None,
    measurements: Annotated[
        list[Path] | None,
        typer.Option("--measurements", help="Measurement files or directories (repeatable)."),
    ] = None,
    db: Annotated[
        Path | None,
        typer.Option("--db", help="The collector's store (default ./censorwatch.duckdb)."),
    ] = None,
    archive: Annotated[
        Path, typer.Option("--archive", help="The collector's archive (with --db).")
    ] = Path("censorwatch-archive"),
    log_dir: Annotated[
        Path | None,
        typer.Option(
            "--log-dir",
            help=f"Transparency log (default ${LOG_DIR_ENV} or ARCHIVE/{LOG_DIR_NAME}).",
        ),
    ] = None,
    cc: Annotated[str | None, typer.Option("--cc", help="Only this country.")] = None,
    asn: Annotated[str | None, typer.Option("--asn", help="Only this network (AS1234).")] = None,
    input_: Annotated[str | None, typer.Option("--input", help="Only this input (URL).")] = None,
    domain: Annotated[str | None, typer.Option("--domain", help="Only this host name.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="From this time (UTC).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Before this time (UTC).")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many.")] = 10_000,
    fingerprints: Annotated[
        Path | None, typer.Option("--fingerprints", help="Fingerprint directory for verdicts.")
    ] = None,
    asn_db: Annotated[
        Path | None,
        typer.Option("--asn-db", help="IP database (one .mmdb file, iptoasn TSV or address plan)."),
    ] = None,
    witness_url: Annotated[
        list[str] | None,
        typer.Option(
            "--witness-url",
            help="Ask this witness (C2SP tlog-witness URL prefix) to cosign the checkpoint "
            "(repeatable).",
        ),
    ] = None,
    max_size: Annotated[
        float,
        typer.Option(
            "--max-size",
            help="Most the bundle may weigh, in MB; beyond it a stratified sample of the raw "
            "measurements travels and the rest are proven by inclusion.",
        ),
    ] = DEFAULT_MAX_MB,
    pdf: Annotated[
        bool,
        typer.Option("--pdf", help="Also print the report as a PDF beside the bundle (OUT.pdf)."),
    ] = False,
) -> None:
    """Write an offline-verifiable bundle for an event (--event: every measurement of the
    event, its brackets included) or for filtered measurements."""
    from censorwatch.evidence.bundle import ExportError, export_bundle, measurement_uid_of
    from censorwatch.evidence.log import LogBusyError, LogCorruptedError, TransparencyLog
    from censorwatch.store.filters import measurement_matches

    if measurements and db:
        raise _fail("give measurements with either --measurements or --db, not both")
    if not measurements and db is None:
        db = DEFAULT_DB  # what `censorwatch serve` writes when run with its defaults
        if not db.exists():
            raise _fail(f"no store at ./{db}: give --db DB --archive DIR, or --measurements")
    filters = _filters(
        probe_cc=cc, probe_asn=asn, input=input_, domain=domain, since=since, until=until
    )
    if event and not filters.is_empty():
        raise _fail("--event takes the event's own evidence; filters do not apply")
    if max_size <= 0:
        raise _fail("--max-size must be a positive number of MB")
    limit = max(1, min(limit, MAX_EXPORT))
    record = _find_event(event, events_file, db) if event else None
    wanted = list(dict.fromkeys(record.get("evidence") or [])) if record else None
    if record is not None and not wanted:
        raise _fail(f"event {event} cites no measurements")

    if db is not None:
        if record is not None and wanted is not None:
            wanted = _event_uids_in_store(db, record, wanted)
        chosen = _from_store(db, archive, wanted, filters, limit)
    else:
        pool = iter_measurement_files(measurements or [])
        if record is not None and wanted is not None:
            from censorwatch.events.platforms import load_platforms
            from censorwatch.evidence.scope import in_event

            platforms = load_platforms()
            need = set(wanted)
            by_uid = {}
            for m in pool:
                uid = measurement_uid_of(m)
                if uid in need or in_event(record, m, platforms):
                    by_uid[uid] = {**m, "measurement_uid": uid}
            missing = [u for u in wanted if u not in by_uid]
            if missing:
                raise _fail(
                    f"{len(missing)} measurements of the event were not found, e.g. {missing[0]}"
                )
            chosen = list(by_uid.values())
        else:
            chosen = []
            for m in pool:
                if measurement_matches(filters, m):
                    chosen.append(m)
                    if len(chosen) >= limit:
                        break

    fp_dir = fingerprints or _default_fingerprints()
    asn_db = asn_db or (
        Path(os.environ["CENSORWATCH_ASN_DB"]) if os.environ.get("CENSORWATCH_ASN_DB") else None
    )
    if asn_db is not None and asn_db.is_dir():
        # The bundle carries its analysis inputs as single files, so verify re-runs the same.
        raise _fail(f"--asn-db {asn_db}: a bundle carries one IP database file; name the .mmdb")
    subject = {"event_id": event} if event else _subject(filters)
    try:
        with TransparencyLog(log_dir or _log_dir(archive)) as log:
            manifest = export_bundle(
                out,
                log=log,
                measurements=chosen,
                event=record,
                subject=subject,
                fingerprints_dir=fp_dir,
                asn_db=asn_db,
                cosigner=_cosigner(log, witness_url) if witness_url else None,
                max_bytes=int(max_size * 1_000_000),
            )
            head = log.latest_head()
    except (ExportError, LogBusyError, LogCorruptedError) as exc:
        raise _fail(str(exc)) from None
    assert head is not None
    coverage = manifest["coverage"]
    carried = (
        "the whole event"
        if coverage["whole"]
        else f"a sample of {coverage['carried']} raw measurements ({coverage['policy']})"
    )
    typer.echo(
        f"wrote {out}: {coverage['listed']} measurements listed and proven, {carried}",
        err=True,
    )
    if pdf:
        _write_pdf(out, out.with_suffix(".pdf"))
    typer.echo(
        f"wrote {out}: {len(manifest['measurements'])} measurements, proofs against the tree "
        f"head of size {head.tree_size} (root {head.root_hash.hex()}) of log {head.log_id}"
    )


def _event_uids_in_store(db: Path, record: dict[str, Any], cited: list[str]) -> list[str]:
    """Every stored measurement of the event (``evidence.scope.in_event``), the ones its
    brackets cite first."""
    from censorwatch.events.platforms import load_platforms
    from censorwatch.evidence.scope import in_event

    platforms = load_platforms()
    store = _open_store(db)
    try:
        found = [
            v["measurement_uid"]
            for v in store.iter_verdicts(probe_cc=record.get("cc"))
            if in_event(record, v, platforms)
        ]
    finally:
        store.close()
    return list(dict.fromkeys([*cited, *found]))


def _write_pdf(bundle: Path, out: Path) -> None:
    from censorwatch.evidence.pdf import RenderError, render_pdf

    try:
        render_pdf(bundle, out)
    except RenderError as exc:
        raise _fail(str(exc), EXIT_FAILED) from None
    except ImportError:
        raise _fail("--pdf needs WeasyPrint (pip install weasyprint)") from None
    typer.echo(f"wrote {out}: the report for print, beside {bundle.name}", err=True)


@evidence_app.command("render")
def render(
    bundle: Annotated[Path, typer.Argument(help="The bundle (zip).", exists=True, dir_okay=False)],
    pdf: Annotated[Path, typer.Option("--pdf", help="The PDF to write (beside the bundle).")],
) -> None:
    """Print a bundle's report as a PDF: every page carries its number, the bundle's SHA-256,
    the tree head's root and the verification command. Only a bundle that verifies is printed
    (exit 1 otherwise, naming the problems)."""
    if pdf.resolve() == bundle.resolve():
        raise _fail("--pdf must not overwrite the bundle")
    _write_pdf(bundle, pdf)


def _cosigner(log: Any, urls: list[str]) -> Any:
    """Asks each witness in turn; one that cannot be reached or refuses is named, not fatal."""
    from censorwatch.evidence.witness import WitnessError, request_cosignatures

    def gather(note: Any) -> list[Any]:
        size = int(note.text.split("\n")[1])
        lines = []
        for url in urls:
            try:
                got = request_cosignatures(url, note, lambda old: log.consistency_proof(old, size))
            except WitnessError as exc:
                typer.echo(f"warning: no cosignature from {url}: {exc}", err=True)
                continue
            typer.echo(f"cosigned by {', '.join(sorted({s.name for s in got}))} ({url})", err=True)
            lines += got
        return lines

    return gather


#: The export's filter options, as its error messages name them.
_EXPORT_OPTIONS = {
    "probe_cc": "--cc",
    "probe_asn": "--asn",
    "input": "--input",
    "domain": "--domain",
    "since": "--since",
    "until": "--until",
}


def _filters(**options: str | None) -> Filters:
    """The export's filters, read by the one filter parser (as the API reads its own)."""
    from censorwatch.store.filters import FilterError, parse_filters

    try:
        return parse_filters(options, _EXPORT_OPTIONS)
    except FilterError as exc:
        raise _fail(str(exc)) from None


def _subject(filters: Filters) -> dict[str, str]:
    """What a filtered bundle is about, keyed by the export's option names."""
    from censorwatch.times import rfc3339

    subject = {}
    for field, option in _EXPORT_OPTIONS.items():
        value = getattr(filters, field)
        if value is not None:
            subject[option.removeprefix("--")] = (
                rfc3339(value) if isinstance(value, datetime) else str(value)
            )
    return subject


def _log_dir(archive: Path) -> Path:
    env = os.environ.get(LOG_DIR_ENV)
    return Path(env) if env else archive / LOG_DIR_NAME


def _default_fingerprints() -> Path | None:
    from censorwatch.analysis.fingerprints import FILE_NAMES, FINGERPRINTS_ENV, default_dir

    env = os.environ.get(FINGERPRINTS_ENV)
    if env:
        return Path(env)
    root = default_dir()
    if root.is_dir() and any(p.name in FILE_NAMES for p in root.rglob("*")):
        return root
    return None


#: ``evidence verify`` exit codes (docs/evidence.md, "Exit codes").
EXIT_VERIFIED = 0  # consistent, and the log is one you trust
EXIT_FAILED = 1  # something in the bundle does not hold
EXIT_USAGE = 2  # the command itself was wrong (bad option, unreadable trust file)
EXIT_UNTRUSTED = 3  # consistent, but nothing you trust vouches for the log


@evidence_app.command("verify")
def verify(
    bundle: Annotated[Path, typer.Argument(help="The bundle (zip).", exists=True, dir_okay=False)],
    log_id: Annotated[
        str | None,
        typer.Option(
            "--log-id", help="Require the log with this id (as published by its operator)."
        ),
    ] = None,
    witness: Annotated[
        list[str] | None,
        typer.Option(
            "--witness",
            help="A witness's cosigner key (NAME+ID+BASE64, repeatable): trust the log when "
            "a quorum of them cosigned the bundle's checkpoint.",
        ),
    ] = None,
    quorum: Annotated[
        int | None,
        typer.Option("--quorum", help="How many --witness cosignatures suffice (default: all)."),
    ] = None,
    trust_file: Annotated[
        Path | None,
        typer.Option(
            "--trust-file",
            help="Trusted log ids (default $CENSORWATCH_TRUST_FILE or "
            "$XDG_CONFIG_HOME/censorwatch/trusted-logs).",
        ),
    ] = None,
    require_signatures: Annotated[
        bool, typer.Option("--require-signatures", help="Fail on unsigned measurements.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Check a bundle offline: signatures, inclusion proofs, tree head, verdicts, report, and
    whether the log is one you trust (--log-id, the trust file, or --witness quorum).

    Exit 0: VERIFIED (consistent, trusted log); 1: FAILED (every failed item named);
    2: usage error; 3: consistent, but signed by a log you have not said you trust.
    """
    from datetime import UTC, datetime

    from censorwatch.evidence.bundle import verify_bundle
    from censorwatch.evidence.note import NoteError
    from censorwatch.evidence.trust import (
        TrustFileError,
        decide,
        default_trust_file,
        parse_witness_keys,
        read_trust_file,
    )

    try:
        witnesses = parse_witness_keys(witness or [])
        # The trust file decides only when no trust source is named on the command line.
        named = log_id is not None or bool(witnesses)
        trusted = {} if named else read_trust_file(trust_file or default_trust_file())
    except (NoteError, TrustFileError, OSError) as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    if quorum is not None and not 1 <= quorum <= max(len(witnesses), 1):
        raise _fail(f"--quorum must be between 1 and the {len(witnesses)} witnesses given")
    if quorum is not None and not witnesses:
        raise _fail("--quorum counts --witness keys; give at least one")

    result = verify_bundle(bundle, require_signatures=require_signatures)
    trust = decide(
        result.log_id,
        result.checkpoint,
        pinned_log_id=log_id,
        trusted_logs=trusted,
        witnesses=witnesses,
        quorum=quorum,
    )
    for problem in trust.problems:
        item = "checkpoint.txt" if "cosignature" in problem else "log_key.json"
        result.fail(item, problem)
    status = "failed" if not result.ok else "verified" if trust.trusted else "consistent-untrusted"
    code = {"failed": EXIT_FAILED, "verified": EXIT_VERIFIED}.get(status, EXIT_UNTRUSTED)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "ok": result.ok,
                    "status": status,
                    "trusted": trust.trusted,
                    "trust_basis": trust.basis,
                    "untrusted_because": trust.reasons,
                    "bundle": str(bundle),
                    "measurements": result.measurements,
                    "signed": result.signed,
                    "unsigned": result.unsigned,
                    "probe_keys": result.probe_keys,
                    "log_id": result.log_id,
                    "tree_size": result.tree_size,
                    "root_hash": result.root_hash,
                    "cosigned_by": trust.witnesses.cosigned if trust.witnesses else [],
                    "problems": [{"item": p.item, "message": p.message} for p in result.problems],
                    "report_rerendered": result.report_rerendered,
                    "listed": result.listed,
                    "carried": result.carried,
                    "coverage": result.coverage,
                    "notes": result.notes,
                },
                indent=2,
            )
        )
        raise typer.Exit(code)
    if not result.ok:
        typer.echo(f"FAILED {bundle}: {len(result.problems)} problem(s)")
        for p in result.problems:
            typer.echo(f"  - {p}")
        for note in result.notes:
            typer.echo(f"  note: {note}")
        raise typer.Exit(EXIT_FAILED)
    when = datetime.fromtimestamp((result.tree_head_time or 0) / 1000, UTC)
    if trust.trusted:
        typer.echo(f"VERIFIED {bundle}")
    else:
        typer.echo(
            f"CONSISTENT, NOT VERIFIED {bundle}: consistent, but signed by a log you have not "
            f"said you trust: {result.log_id}"
        )
        for reason in trust.reasons:
            typer.echo(f"  - {reason}")
    typer.echo(
        f"  {result.measurements} measurements: {result.signed} signed by "
        f"{len(result.probe_keys)} probe key(s), {result.unsigned} unsigned"
    )
    proofs = (
        "the batch inclusion proof of every listed measurement"
        if result.coverage
        else ("every inclusion proof")
    )
    typer.echo(
        f"  {proofs} leads to root {result.root_hash} of the tree of "
        f"{result.tree_size} entries signed {when:%Y-%m-%d %H:%M:%S} UTC by log "
        f"{result.log_id}"
    )
    report = (
        "report.html matches the contents"
        if result.report_rerendered
        else "report.html states the facts (see note)"
    )
    rederived = (
        "every verdict re-derived from its measurement"
        if result.carried == result.listed
        else "every carried measurement's verdict re-derived"
    )
    typer.echo(f"  {rederived}; {report}")
    if result.coverage:
        typer.echo(f"  {result.coverage}")
    for note in result.notes:
        typer.echo(f"  note: {note}")
    if result.probe_keys:
        typer.echo(f"  probe keys: {', '.join(result.probe_keys)}")
    for basis in trust.basis:
        typer.echo(f"  trusted: {basis}")
    if not trust.trusted:
        typer.echo(
            "  to trust it, compare the id with the one the log's operator publishes, then "
            f"pass --log-id {result.log_id}, or run: censorwatch evidence trust add "
            f"{result.log_id} --name NAME; or verify with --witness KEY --quorum K"
        )
        raise typer.Exit(EXIT_UNTRUSTED)


trust_app = typer.Typer(
    help="The logs `evidence verify` trusts (the trust file in your config directory).",
    no_args_is_help=True,
)
evidence_app.add_typer(trust_app, name="trust")

_TRUST_FILE_OPTION = typer.Option(
    "--trust-file",
    help="Trust file (default $CENSORWATCH_TRUST_FILE or $XDG_CONFIG_HOME/censorwatch/"
    "trusted-logs).",
)


@trust_app.command("add")
def trust_add(
    log_id: Annotated[str, typer.Argument(help="The log id its operator publishes (64 hex).")],
    name: Annotated[str, typer.Option("--name", help="Whose log this is, for you.")] = "",
    trust_file: Annotated[Path | None, _TRUST_FILE_OPTION] = None,
) -> None:
    """Trust a log: bundles it signed then verify (exit 0) without --log-id."""
    from censorwatch.evidence.trust import TrustFileError, default_trust_file, trust_log

    path = trust_file or default_trust_file()
    try:
        new = trust_log(path, log_id, name)
    except (TrustFileError, OSError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"{'trusting' if new else 'already trusted'}: {log_id.lower()} (in {path})")


@trust_app.command("list")
def trust_list(trust_file: Annotated[Path | None, _TRUST_FILE_OPTION] = None) -> None:
    """The trusted log ids, one per line with their names."""
    from censorwatch.evidence.trust import TrustFileError, default_trust_file, read_trust_file

    try:
        trusted = read_trust_file(trust_file or default_trust_file())
    except (TrustFileError, OSError) as exc:
        raise _fail(str(exc)) from None
    for lid, name in sorted(trusted.items()):
        typer.echo(f"{lid} {name}".rstrip())


@trust_app.command("remove")
def trust_remove(
    log_id: Annotated[str, typer.Argument(help="The log id to stop trusting.")],
    trust_file: Annotated[Path | None, _TRUST_FILE_OPTION] = None,
) -> None:
    """Stop trusting a log."""
    from censorwatch.evidence.trust import TrustFileError, default_trust_file, distrust_log

    path = trust_file or default_trust_file()
    try:
        removed = distrust_log(path, log_id)
    except (TrustFileError, OSError) as exc:
        raise _fail(str(exc)) from None
    if not removed:
        raise _fail(f"{log_id} is not in {path}", 1)
    typer.echo(f"no longer trusting {log_id.lower()}")


@evidence_app.command("monitor")
def monitor(
    url: Annotated[str, typer.Argument(help="The collector's base URL, e.g. https://host:8000")],
    state: Annotated[
        Path | None, typer.Option("--state", help="Where the last verified head is kept.")
    ] = None,
    log_id: Annotated[
        str | None, typer.Option("--log-id", help="The log id to expect on first contact.")
    ] = None,
) -> None:
    """Check that the log's current tree head extends the one seen last time (as CT monitors do).

    Exit 0: consistent; 1: the log misbehaved (both heads are saved as evidence); 2: no answer.
    """
    from censorwatch.evidence.monitor import MonitorError, check_log, default_state_path

    state_path = state or default_state_path(url)
    try:
        result = check_log(url, state_path, log_id)
    except MonitorError as exc:
        raise _fail(str(exc)) from None
    for note in result.notes:
        typer.echo(f"  {note}", err=True)
    if not result.ok:
        typer.echo(f"ALERT {url}: {result.message}")
        raise typer.Exit(1)
    head = result.current
    assert head is not None
    typer.echo(f"OK {url}: {result.message} (root {head.root_hash.hex()})")


@evidence_app.command("log-info")
def log_info(
    log_dir: Annotated[
        Path | None,
        typer.Option(
            "--log-dir",
            help=f"Log directory (default ${LOG_DIR_ENV} or ./censorwatch-archive/{LOG_DIR_NAME}).",
        ),
    ] = None,
) -> None:
    """Print the log's id and public key (publish them) and its latest signed tree head."""
    from censorwatch.evidence.log import LogBusyError, LogCorruptedError, TransparencyLog
    from censorwatch.evidence.note import ED25519_TYPE, VerifierKey
    from censorwatch.signing.encoding import b64encode

    directory = log_dir or _log_dir(Path("censorwatch-archive"))
    if not (directory / "log.key").exists():
        raise _fail(f"no log in {directory}")
    try:
        with TransparencyLog(directory) as log:
            head = log.latest_head()
            info = {
                "log_id": log.log_id,
                "public_key": b64encode(log.public_key),
                "checkpoint_origin": log.origin,
                "checkpoint_key": str(VerifierKey(log.origin, ED25519_TYPE, log.public_key)),
                "size": log.size,
                "latest_tree_head": head.to_json() if head else None,
                "tree_heads_published": len(log.heads()),
            }
    except (LogBusyError, LogCorruptedError) as exc:
        raise _fail(f"{exc} (a running collector serves the same at /api/v1/log/key)") from None
    typer.echo(json.dumps(info, indent=2))
