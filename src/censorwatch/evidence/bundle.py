"""Evidence bundles: one zip that proves, offline, what was measured, by whom, and when.

Layout (every JSON file is canonical JSON, see docs/evidence.md)::

    manifest.json          format, subject, the measurements in log order, SHA-256 of every
                           other file, and the log's signature over all of that
    log_key.json           the log's public key (compare its log_id with the published one)
    tree_head.json         ONE signed tree head; every proof below leads to its root
    checkpoint.txt         the same tree head as a C2SP checkpoint (signed note): the log's
                           signature, then any witness cosignatures gathered at export
    measurements/NNNNN.json  the measurements exactly as logged (``x_signature`` included)
    proofs/NNNNN.json      inclusion proof of measurement NNNNN
    probe_keys.json        the probe public keys that signed measurements
    verdicts.json          the verdicts, in measurement order
    event.json             the event the bundle documents (when exported for one)
    report.html            the story for people; re-rendered and compared by ``verify``

``verify_bundle`` trusts nothing in the zip: it checks every hash, signature and proof, re-runs
the analysis, re-renders the report, and names every item that does not hold. Whether the log
itself is one to trust is the verifier's decision, not the bundle's (``evidence/trust.py``).
"""

from __future__ import annotations

import hashlib
import html
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import markupsafe
import msgspec

from censorwatch import __version__
from censorwatch.evidence import bundlezip, merkle
from censorwatch.evidence.formats import (
    MANIFEST_CONTEXT,
    BatchProof,
    InclusionProof,
    TreeHead,
    checkpoint_origin,
    entry_bytes_of_digest,
    entry_leaf_hash,
    log_id,
    measurement_digest,
)
from censorwatch.evidence.log import TransparencyLog
from censorwatch.evidence.names import country_name, operator_names, platform_name, time_zone
from censorwatch.evidence.note import (
    ED25519_TYPE,
    Checkpoint,
    Note,
    NoteError,
    Signature,
    VerifierKey,
    verify_note_signature,
)
from censorwatch.evidence.report import render_report
from censorwatch.evidence.scope import (
    DEFAULT_MAX_BYTES,
    INDEX_COLUMNS,
    SAMPLE_POLICY,
    IndexRow,
    choose_carried,
)
from censorwatch.model import canonical_json, derive_measurement_uid
from censorwatch.observations.budget import count_items
from censorwatch.signing.encoding import ED25519, b64decode, b64encode, ed25519_verify, key_id
from censorwatch.signing.signatures import SIGNATURE_FIELD, check_signature
from censorwatch.times import rfc3339, utcnow

FORMAT = "censorwatch-evidence-bundle/2"
#: Bundles of the first format (one audit path per measurement, no index) still verify.
FORMAT_V1 = "censorwatch-evidence-bundle/1"
INDEX_FILE = "index.json"
INCLUSION_FILE = "inclusion.json"
#: Bytes a carried measurement adds to the pages beside its own file (see ``_carry_bytes``).
ROW_BYTES = 600
#: Bytes of a bundle besides its measurements, index and inputs (keys, heads, page frame).
FRAME_BYTES = 1 << 20
SAFE_PROBE_IPS = (None, "", "127.0.0.1")
CHECKPOINT_FILE = "checkpoint.txt"
MAX_ENTRIES = 200_000
MAX_FILE_BYTES = 64 << 20
MAX_TOTAL_BYTES = 1 << 30
#: Values and keys one bundle file may decode to, counted on its bytes before decoding
#: (``observations.budget``): a 64 MiB member of ``{},`` would otherwise be 20 million dicts.
MAX_FILE_VALUES = 4_000_000

Analyzer = Callable[[dict[str, Any]], dict[str, Any]]
#: Asks witnesses to cosign the log's checkpoint; returns their signature lines.
Cosigner = Callable[[Note], list[Signature]]

#: Analyzers built from bundled inputs, keyed by the inputs' content: loading fingerprints
#: costs far more than checking a bundle, and identical bytes give an identical analysis.
_ANALYZERS: dict[str, Analyzer] = {}


class ExportError(Exception):
    """The requested bundle cannot be made honestly (unlogged, altered or identifying data)."""


@dataclass(frozen=True)
class Problem:
    item: str
    message: str

    def __str__(self) -> str:
        return f"{self.item}: {self.message}"


@dataclass
class Verification:
    """What ``verify_bundle`` found: ``ok`` only when no problem at all was found."""

    problems: list[Problem] = field(default_factory=list)
    measurements: int = 0
    signed: int = 0
    unsigned: int = 0
    tree_size: int | None = None
    root_hash: str | None = None
    log_id: str | None = None
    tree_head_time: int | None = None
    #: The bundle's checkpoint (log signature and cosignatures), once checked against the
    #: tree head and the log key; ``None`` for bundles made before checkpoints.
    checkpoint: Note | None = None
    probe_keys: list[str] = field(default_factory=list)
    #: What a reader should know although nothing failed (e.g. how the report was checked).
    notes: list[str] = field(default_factory=list)
    #: True when report.html was byte-identical to this version's rendering of the contents.
    report_rerendered: bool = False
    #: Measurements the bundle lists (index.json), proven present by the batch proof.
    listed: int = 0
    #: Of those, the ones whose raw signed copy travels: re-checked and re-analysed.
    carried: int = 0
    #: Verdicts re-derived from carried measurements.
    rederived: int = 0
    #: What was re-derived and what only proved present, in words (``verify`` prints it).
    coverage: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, item: str, message: str) -> None:
        self.problems.append(Problem(item, message))


def make_analyzer(fingerprints_dir: Path | None, asn_db: Path | None) -> Analyzer:
    """``analysis.analyze`` bound to exactly these inputs (nothing read from the environment)."""
    from censorwatch.analysis import Fingerprints, analyze
    from censorwatch.geo import ip_database
    from censorwatch.netinfo import AddressPlan

    fps = Fingerprints.load(fingerprints_dir) if fingerprints_dir else Fingerprints.empty()
    plan = ip_database(asn_db) if asn_db else AddressPlan()  # .mmdb, TSV or address plan

    def run(measurement: dict[str, Any]) -> dict[str, Any]:
        return analyze(measurement, fingerprints=fps, plan=plan).to_record()

    return run


def _analysis_files(
    fingerprints_dir: Path | None, asn_db: Path | None
) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The analysis inputs to embed, so that ``verify`` re-runs the very same analysis."""
    from censorwatch.analysis.fingerprints import FILE_NAMES

    files: dict[str, bytes] = {}
    if fingerprints_dir:
        root = Path(fingerprints_dir)
        for p in sorted(root.rglob("*")):
            if p.name in FILE_NAMES and p.is_file():
                files[f"analysis/fingerprints/{p.relative_to(root).as_posix()}"] = p.read_bytes()
    asn_name = None
    if asn_db:
        asn_name = f"analysis/asn_db/{Path(asn_db).name}"
        files[asn_name] = Path(asn_db).read_bytes()
    meta = {
        "asn_db": asn_name,
        "fingerprints": sorted(n for n in files if n.startswith("analysis/fingerprints/")),
        "software": f"censorwatch {__version__}",
    }
    return files, meta


def _bundled_analyzer(
    files: dict[str, bytes], manifest: dict[str, Any], workdir: Path, result: Verification
) -> Analyzer | None:
    meta = manifest.get("analysis")
    if not isinstance(meta, dict):
        result.fail("manifest.json", "does not say which analysis inputs were used")
        return None
    names = list(meta.get("fingerprints") or [])
    if meta.get("asn_db"):
        names.append(meta["asn_db"])
    digest = hashlib.sha256()
    for name in names:
        if not isinstance(name, str) or not name.startswith("analysis/") or name not in files:
            result.fail("manifest.json", f"analysis input {name!r} is missing from the bundle")
            return None
        digest.update(hashlib.sha256(name.encode() + b"\x00" + files[name]).digest())
    key = f"{digest.hexdigest()}:{bool(meta.get('fingerprints'))}:{meta.get('asn_db')}"
    if key in _ANALYZERS:
        return _ANALYZERS[key]
    for name in names:
        target = workdir / name
        if not target.resolve().is_relative_to(workdir.resolve()):
            result.fail("manifest.json", f"analysis input {name!r} has an unsafe name")
            return None
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(files[name])
    try:
        analyzer = make_analyzer(
            workdir / "analysis" / "fingerprints" if meta.get("fingerprints") else None,
            workdir / meta["asn_db"] if meta.get("asn_db") else None,
        )
    except ImportError:
        result.fail("verdicts.json", "not re-derived: the analysis is not installed here")
    except (OSError, ValueError) as exc:
        result.fail("manifest.json", f"analysis inputs unusable: {exc}")
    else:
        if len(_ANALYZERS) > 8:
            _ANALYZERS.clear()
        _ANALYZERS[key] = analyzer
        return analyzer
    return None


def measurement_uid_of(measurement: dict[str, Any]) -> str:
    uid = measurement.get("measurement_uid")
    return uid if isinstance(uid, str) and uid else derive_measurement_uid(measurement)


def reveals_probe_ip(measurement: dict[str, Any]) -> bool:
    return measurement.get("probe_ip") not in SAFE_PROBE_IPS


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _manifest_payload(manifest: dict[str, Any]) -> bytes:
    return canonical_json({k: v for k, v in manifest.items() if k != "signature"})


# -- export ----------------------------------------------------------------------------------------


def export_bundle(
    out: str | Path,
    *,
    log: TransparencyLog,
    measurements: Iterable[dict[str, Any]],
    event: dict[str, Any] | None = None,
    subject: dict[str, Any] | None = None,
    fingerprints_dir: Path | None = None,
    asn_db: Path | None = None,
    created_at: str | None = None,
    cosigner: Cosigner | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> dict[str, Any]:
    """Write a bundle of ``measurements`` (all must be in ``log``); returns the manifest.

    Every measurement is listed in ``index.json`` and proven present by one batch inclusion
    proof; their raw signed copies travel while the bundle stays under ``max_bytes``, else
    the sample of ``scope.choose_carried`` does (the event's bracketing measurements always).
    The verdicts come from ``analysis.analyze`` with the given fingerprints and address plan,
    which travel in the bundle so that anyone can re-derive them. ``cosigner`` gathers
    witness cosignatures on the checkpoint before the manifest binds it.
    """
    analyzer = make_analyzer(fingerprints_dir, asn_db)
    inputs, analysis_meta = _analysis_files(fingerprints_dir, asn_db)
    chosen: dict[str, tuple[int, dict[str, Any], dict[str, Any]]] = {}
    problems: list[str] = []
    for measurement in measurements:
        uid = measurement_uid_of(measurement)
        record = {**measurement, "measurement_uid": uid}
        index = log.index_of(uid)
        if index is None:
            problems.append(f"{uid} is not in the log")
        elif log.leaf(index) != entry_leaf_hash(uid, record):
            problems.append(f"{uid}: this copy differs from what the log recorded")
        elif reveals_probe_ip(record):
            problems.append(f"{uid} carries a probe IP address; it cannot go in a bundle")
        elif check_signature(record).status == "invalid":
            problems.append(f"{uid} has an invalid signature; it is not evidence of anything")
        elif uid not in chosen:
            chosen[uid] = (index, record, analyzer(record))
    if problems:
        raise ExportError("; ".join(problems[:20]) + (" ..." if len(problems) > 20 else ""))
    if not chosen:
        raise ExportError("no measurements to export")
    ordered = sorted(chosen.values(), key=lambda item: item[0])
    rows = [_index_row(index, record, verdict) for index, record, verdict in ordered]
    always = set(event.get("evidence") or []) if event else set()
    head = log.publish_head()
    proof = log.batch_inclusion_for([r.leaf_index for r in rows], head)
    index_file = canonical_json(
        {"columns": list(INDEX_COLUMNS), "rows": [r.to_json() for r in rows]}
    )
    proof_file = canonical_json(proof.to_json())
    # What the bundle weighs besides the carried measurements: the index, its proof, the
    # analysis inputs and the pages' frame (uncompressed: the zip only makes it lighter).
    inputs_bytes = sum(len(data) for data in inputs.values())
    budget = max_bytes - len(index_file) - len(proof_file) - inputs_bytes - FRAME_BYTES
    carried = choose_carried(rows, always & {r.measurement_uid for r in rows}, max(budget, 0))
    if always - carried:
        raise ExportError(
            f"the event's bracketing measurements alone exceed --max-size {max_bytes:,} bytes"
        )
    checkpoint = log.checkpoint_for(head)
    if cosigner is not None:
        checkpoint = Note(checkpoint.text, checkpoint.signatures + tuple(cosigner(checkpoint)))

    files: dict[str, bytes] = {CHECKPOINT_FILE: str(checkpoint).encode("utf-8")}
    entries: list[dict[str, Any]] = []
    verdicts: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    probe_keys: dict[str, dict[str, str]] = {}
    for index, record, verdict in ordered:
        uid = record["measurement_uid"]
        if uid not in carried:
            continue
        name = f"measurements/{len(entries):05d}.json"
        files[name] = canonical_json(record)
        entries.append({"file": name, "leaf_index": index, "measurement_uid": uid})
        verdicts.append(verdict)
        records.append(record)
        sig = record.get(SIGNATURE_FIELD)
        if isinstance(sig, dict) and "key_id" in sig:
            probe_keys[sig["key_id"]] = {"alg": ED25519, "public_key": sig["public_key"]}
    files[INDEX_FILE] = index_file
    files[INCLUSION_FILE] = proof_file
    files["verdicts.json"] = canonical_json(verdicts)
    files["tree_head.json"] = canonical_json(head.to_json())
    files["log_key.json"] = canonical_json(
        {"alg": ED25519, "log_id": log.log_id, "public_key": b64encode(log.public_key)}
    )
    files["probe_keys.json"] = canonical_json({"keys": probe_keys})
    if event is not None:
        files["event.json"] = canonical_json(event)
    files.update(inputs)
    manifest: dict[str, Any] = {
        "analysis": analysis_meta,
        "coverage": {
            "budget_bytes": max(budget, 0),
            "carried": len(entries),
            "listed": len(rows),
            "max_bytes": max_bytes,
            "policy": SAMPLE_POLICY,
            "whole": len(entries) == len(rows),
        },
        "created_at": created_at or rfc3339(utcnow()),
        "format": FORMAT,
        "log_id": log.log_id,
        "measurements": entries,
        "names": _names(rows, event, asn_db),
        "subject": subject or ({"event_id": event.get("event_id")} if event else {}),
    }
    files["report.html"] = render_report(
        manifest=manifest,
        event=event,
        measurements=records,
        verdicts=verdicts,
        tree_head=head.to_json(),
        index=rows,
    ).encode("utf-8")
    manifest["files"] = {name: _sha256(data) for name, data in sorted(files.items())}
    manifest["signature"] = b64encode(log.sign_manifest(_manifest_payload(manifest)))

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    members = [("manifest.json", canonical_json(manifest)), *sorted(files.items())]
    try:
        bundlezip.write_members(tmp, members)
    except bundlezip.MemberNameError as exc:
        raise ExportError(f"cannot be written as a bundle: {exc}") from None
    if tmp.stat().st_size > max_bytes:
        size = tmp.stat().st_size
        tmp.unlink()
        raise ExportError(f"the bundle would weigh {size:,} bytes, over --max-size {max_bytes:,}")
    tmp.replace(out)
    return manifest


def _index_row(index: int, record: dict[str, Any], verdict: dict[str, Any]) -> IndexRow:
    def text(value: Any) -> str:
        return value if isinstance(value, str) else ""

    return IndexRow(
        leaf_index=index,
        measurement_uid=record["measurement_uid"],
        measurement_sha256=measurement_digest(record),
        bytes=_carry_bytes(record, verdict),
        probe_asn=text(record.get("probe_asn")),
        probe_cc=text(record.get("probe_cc")),
        measurement_start_time=text(record.get("measurement_start_time")),
        input=text(record.get("input")) or text(verdict.get("target")),
        verdict=text(verdict.get("verdict")),
        method=text(verdict.get("method")),
    )


def _carry_bytes(record: dict[str, Any], verdict: dict[str, Any]) -> int:
    """What carrying one measurement adds: its file, its verdict and its line of the page."""
    return len(canonical_json(record)) + len(canonical_json(verdict)) + ROW_BYTES


def _names(rows: list[IndexRow], event: dict[str, Any] | None, asn_db: Path | None) -> dict:
    """The names the pages use (``names``): operators from the bundled IP database."""
    asns = sorted({r.probe_asn for r in rows} | set((event or {}).get("asns") or []))
    cc = (event or {}).get("cc") or (rows[0].probe_cc if rows else "")
    zone, zones = time_zone(cc) if cc else ("", 0)
    return {
        "country": country_name(cc) if cc else "",
        "networks": _operator_names(asn_db, asns),
        "target": platform_name(str(event.get("target"))) if event else "",
        "time_zone": zone,
        "time_zones_in_country": zones,
    }


def _operator_names(asn_db: Path | None, asns: list[str]) -> dict[str, str]:
    from censorwatch.geo import ip_database

    return operator_names(ip_database(asn_db), asns) if asn_db else {}


# -- verify ----------------------------------------------------------------------------------------


def _read_zip(source: str | Path | bytes, result: Verification) -> dict[str, bytes] | None:
    """The members that pass the container's rules (``bundlezip``); each refusal is a problem."""
    limits = bundlezip.ZipLimits(MAX_ENTRIES, MAX_FILE_BYTES, MAX_TOTAL_BYTES)
    read = bundlezip.read_members(source, limits)
    for refusal in read.refusals:
        result.fail(refusal.member, refusal.rule)
    return read.files if read.readable else None


def _load_json(files: dict[str, bytes], name: str, result: Verification) -> Any:
    """Parse a bundle file, requiring canonical JSON (one value has one spelling)."""
    data = files.get(name)
    if data is None:
        result.fail(name, "missing from the bundle")
        return None
    if len(data) > MAX_FILE_VALUES and count_items(data, MAX_FILE_VALUES) > MAX_FILE_VALUES:
        result.fail(name, f"holds more than {MAX_FILE_VALUES:,} JSON values (not read)")
        return None
    try:
        value = msgspec.json.decode(data)
    except (msgspec.DecodeError, ValueError) as exc:  # ValueError: invalid UTF-8
        result.fail(name, f"not valid JSON: {exc}")
        return None
    except RecursionError:
        result.fail(name, "not valid JSON: nested too deeply")
        return None
    if canonical_json(value) != data:
        result.fail(name, "not in canonical JSON form (altered after export)")
    return value


def verify_bundle(
    path: str | Path | bytes,
    *,
    log_public_key: bytes | None = None,
    require_signatures: bool = False,
    analyzer: Analyzer | None = None,
) -> Verification:
    """Check everything a bundle claims, offline, and name every item that does not hold.

    The verdicts are re-derived with the analysis inputs the bundle carries (``analyzer``
    replaces that, e.g. to test a newer analysis against old evidence).
    """
    result = Verification()
    try:
        _verify(path, result, log_public_key, require_signatures, analyzer)
    except Exception as exc:  # fail closed: a crafted bundle must never pass by crashing a check
        result.fail("bundle", f"verification could not complete: {type(exc).__name__}: {exc}")
    return result


def _verify(
    path: str | Path | bytes,
    result: Verification,
    log_public_key: bytes | None,
    require_signatures: bool,
    analyzer: Analyzer | None,
) -> None:
    files = _read_zip(path, result)
    if files is None:
        return

    manifest = _load_json(files, "manifest.json", result)
    if not isinstance(manifest, dict):
        if manifest is not None:
            result.fail("manifest.json", "not a JSON object")
        return
    if manifest.get("format") not in (FORMAT, FORMAT_V1):
        result.fail("manifest.json", f"unknown format {manifest.get('format')!r}")
        return
    batched = manifest.get("format") == FORMAT

    log_pub = _check_log_key(files, manifest, log_public_key, result)
    _check_manifest(files, manifest, log_pub, result)
    head = _check_tree_head(files, log_pub, result)
    _check_checkpoint(files, log_pub, head, result)

    entries = manifest.get("measurements")
    if not isinstance(entries, list):
        result.fail("manifest.json", "has no list of measurements")
        return
    index = _check_index(files, head, result) if batched else None
    probe_keys = _load_json(files, "probe_keys.json", result)
    listed_keys = probe_keys.get("keys") if isinstance(probe_keys, dict) else None
    if not isinstance(listed_keys, dict):
        result.fail("probe_keys.json", "has no 'keys' object")
        listed_keys = {}
    for kid, entry in sorted(listed_keys.items()):
        try:
            ok = entry["alg"] == ED25519 and key_id(b64decode(entry["public_key"], 32)) == kid
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            result.fail("probe_keys.json", f"key {kid} is malformed or misnamed")
    result.probe_keys = sorted(listed_keys)

    measurements: list[dict[str, Any]] = []
    uids: list[str] = []
    used_keys: set[str] = set()
    last_index = -1
    for n, entry in enumerate(entries):
        record = _check_measurement(
            files, n, entry, head, used_keys, result, require_signatures, index
        )
        if record is None:
            continue
        uid, leaf, measurement = record
        if leaf <= last_index:
            result.fail(uid, f"out of log order (leaf {leaf} after leaf {last_index})")
        last_index = max(last_index, leaf)
        uids.append(uid)
        measurements.append(measurement)
    if len(set(uids)) != len(uids):
        result.fail("manifest.json", "lists a measurement more than once")
    for kid in sorted(used_keys - set(listed_keys)):
        result.fail("probe_keys.json", f"does not list key {kid} that signed a measurement")
    for kid in sorted(set(listed_keys) - used_keys):
        result.fail("probe_keys.json", f"lists key {kid} that signed no measurement")
    result.measurements = result.carried = len(measurements)
    result.listed = len(index) if index is not None else len(measurements)

    with tempfile.TemporaryDirectory(prefix="cw-verify-") as workdir:
        if analyzer is None:
            analyzer = _bundled_analyzer(files, manifest, Path(workdir), result)
        verdicts = _check_verdicts(files, uids, measurements, analyzer, result)
        if batched:
            _check_names(files, manifest, index or {}, Path(workdir), result)
    made_by = _made_by_another_version(manifest)
    if made_by and any(
        p.item == "verdicts.json" and "does not follow" in p.message for p in result.problems
    ):
        result.fail(
            "verdicts.json",
            f"note: the verdicts were made by {made_by}, this is censorwatch {__version__}; "
            "verify with that version to reproduce them",
        )
    event = _check_event(files, manifest, set(uids), result)
    rows = list(index.values()) if index is not None else None
    if rows is not None:
        _check_coverage(manifest, rows, measurements, verdicts, event, result)
    _check_report(files, manifest, event, measurements, verdicts, result, rows)


def _check_index(
    files: dict[str, bytes], head: TreeHead | None, result: Verification
) -> dict[str, IndexRow] | None:
    """index.json's rows by UID, once the batch proof shows every one of them in the log."""
    doc = _load_json(files, INDEX_FILE, result)
    if not isinstance(doc, dict) or doc.get("columns") != list(INDEX_COLUMNS):
        if doc is not None:
            result.fail(INDEX_FILE, f"is not an index with the columns {list(INDEX_COLUMNS)}")
        return None
    raw_rows = doc.get("rows")
    if not isinstance(raw_rows, list) or not raw_rows:
        result.fail(INDEX_FILE, "has no rows")
        return None
    rows: dict[str, IndexRow] = {}
    last = -1
    for n, raw in enumerate(raw_rows):
        try:
            row = IndexRow.from_json(raw)
        except ValueError as exc:
            result.fail(INDEX_FILE, f"row {n} is malformed: {exc}")
            return None
        if row.leaf_index <= last:
            result.fail(INDEX_FILE, f"row {n} ({row.measurement_uid}) is out of log order")
            return None
        if row.measurement_uid in rows:
            result.fail(INDEX_FILE, f"lists {row.measurement_uid} more than once")
            return None
        last = row.leaf_index
        rows[row.measurement_uid] = row
    proof_doc = _load_json(files, INCLUSION_FILE, result)
    if proof_doc is None:
        return rows
    try:
        proof = BatchProof.from_json(proof_doc)
    except ValueError as exc:
        result.fail(INCLUSION_FILE, f"malformed batch proof: {exc}")
        return rows
    if head is None:
        return rows
    if proof.tree_size != head.tree_size:
        result.fail(INCLUSION_FILE, "is not against the bundle's tree head")
        return rows
    leaves = [
        merkle.leaf_hash(entry_bytes_of_digest(r.measurement_uid, r.measurement_sha256))
        for r in rows.values()
    ]
    indexes = [r.leaf_index for r in rows.values()]
    if not merkle.verify_batch_inclusion(
        indexes, leaves, head.tree_size, proof.hashes, head.root_hash
    ):
        result.fail(
            INCLUSION_FILE,
            f"the batch proof of the {len(rows)} measurements index.json lists does not lead "
            "to the signed root (an entry was dropped, added or altered)",
        )
    return rows


def _check_coverage(
    manifest: dict[str, Any],
    rows: list[IndexRow],
    measurements: list[dict[str, Any]],
    verdicts: list[dict[str, Any]],
    event: dict[str, Any] | None,
    result: Verification,
) -> None:
    """The carried measurements agree with their rows, and are the sample the policy draws."""
    by_uid = {r.measurement_uid: r for r in rows}
    for m, v in zip(measurements, verdicts, strict=False):
        row = by_uid.get(m.get("measurement_uid"))
        if row is None:
            continue  # named by _check_measurement
        stated = (row.verdict, row.method)
        derived = (v.get("verdict") or "", v.get("method") or "")
        if stated != derived:
            result.fail(INDEX_FILE, f"{row.measurement_uid} is listed {stated}, its verdict is "
                        f"{derived}")  # fmt: skip
        if row.bytes != _carry_bytes(m, v):
            result.fail(INDEX_FILE, f"{row.measurement_uid}: its size is not the one listed")
    coverage = manifest.get("coverage")
    if not isinstance(coverage, dict) or coverage.get("policy") != SAMPLE_POLICY:
        result.fail("manifest.json", f"does not say it follows the sample policy {SAMPLE_POLICY}")
        return
    if coverage.get("listed") != len(rows) or coverage.get("carried") != len(measurements):
        result.fail(
            "manifest.json",
            f"says {coverage.get('listed')} listed and {coverage.get('carried')} carried; the "
            f"bundle lists {len(rows)} and carries {len(measurements)}",
        )
    budget = coverage.get("budget_bytes")
    if type(budget) is not int or budget < 0:
        result.fail("manifest.json", "has no byte budget for the sample")
        return
    always = set((event or {}).get("evidence") or []) & set(by_uid)
    drawn = choose_carried(rows, always, budget)
    carried = {m.get("measurement_uid") for m in measurements}
    for uid in sorted(drawn - carried):
        result.fail(INDEX_FILE, f"{uid} belongs to the sample, but its measurement is missing")
    for uid in sorted(u for u in carried - drawn if u in by_uid):
        result.fail(INDEX_FILE, f"{uid} is carried, but is not in the sample the policy draws")
    if coverage.get("whole") is not (len(carried) == len(rows)):
        result.fail("manifest.json", "says whole or sample wrongly")
    result.rederived = len(verdicts)
    proved_only = len(rows) - len(measurements)
    result.coverage = (
        f"re-derived {len(measurements)} of the {len(rows)} listed measurements from their "
        "carried copies (signature, leaf, verdict); "
        + (
            f"the other {proved_only:,} are only proved present in the log (UID and SHA-256, "
            "by the batch proof); their verdicts are as the log's signed manifest states them"
            if proved_only
            else "the bundle carries the whole event"
        )
    )


def _check_names(
    files: dict[str, bytes],
    manifest: dict[str, Any],
    index: dict[str, IndexRow],
    workdir: Path,
    result: Verification,
) -> None:
    """The operator names the pages print follow from the bundled IP database."""
    names = manifest.get("names")
    if not isinstance(names, dict) or not isinstance(names.get("networks"), dict):
        result.fail("manifest.json", "has no names for the networks")
        return
    db = (manifest.get("analysis") or {}).get("asn_db")
    expected: dict[str, str] = {}
    if isinstance(db, str) and db in files and db.startswith("analysis/asn_db/"):
        target = workdir / "names" / Path(db).name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(files[db])
        event = _load_json(files, "event.json", Verification()) if "event.json" in files else {}
        asns = sorted({r.probe_asn for r in index.values()} | set((event or {}).get("asns") or []))
        try:
            expected = _operator_names(target, asns)
        except (OSError, ValueError) as exc:
            result.fail(db, f"cannot be read for operator names: {exc}")
            return
    if names["networks"] != expected:
        result.fail("manifest.json", "names operators the bundled IP database does not")


def _check_log_key(
    files: dict[str, bytes],
    manifest: dict[str, Any],
    pinned: bytes | None,
    result: Verification,
) -> bytes | None:
    doc = _load_json(files, "log_key.json", result)
    try:
        if not isinstance(doc, dict) or doc.get("alg") != ED25519:
            raise ValueError("expected an ed25519 key")
        pub = b64decode(doc.get("public_key"), 32)
    except ValueError as exc:
        result.fail("log_key.json", f"unusable: {exc}")
        return None
    if doc.get("log_id") != log_id(pub) or manifest.get("log_id") != log_id(pub):
        result.fail("log_key.json", "log_id does not name this key")
    if pinned is not None and pinned != pub:
        result.fail("log_key.json", "is not the log key you asked to trust")
    result.log_id = log_id(pub)
    return pub


def _check_manifest(
    files: dict[str, bytes], manifest: dict[str, Any], log_pub: bytes | None, result: Verification
) -> None:
    try:
        sig = b64decode(manifest.get("signature"), 64)
    except ValueError as exc:
        result.fail("manifest.json", f"signature unreadable: {exc}")
        sig = None
    payload = MANIFEST_CONTEXT + _manifest_payload(manifest)
    if sig is not None and log_pub is not None and not ed25519_verify(log_pub, sig, payload):
        result.fail("manifest.json", "the log's signature over the manifest does not verify")
    listed = manifest.get("files")
    if not isinstance(listed, dict):
        result.fail("manifest.json", "has no file list")
        return
    for name in sorted(set(files) - {"manifest.json"}):
        if name not in listed:
            result.fail(name, "is not listed in the manifest (added after export)")
        elif _sha256(files[name]) != listed[name]:
            result.fail(name, "SHA-256 differs from the manifest (altered after export)")
    for name in sorted(set(listed) - set(files)):
        result.fail(name, "listed in the manifest but missing from the bundle")


def _check_tree_head(
    files: dict[str, bytes], log_pub: bytes | None, result: Verification
) -> TreeHead | None:
    doc = _load_json(files, "tree_head.json", result)
    if doc is None:
        return None
    try:
        head = TreeHead.from_json(doc)
    except ValueError as exc:
        result.fail("tree_head.json", f"malformed: {exc}")
        return None
    if log_pub is not None and not head.verify(log_pub):
        result.fail("tree_head.json", "signature does not verify with the log key")
    result.tree_size = head.tree_size
    result.root_hash = head.root_hash.hex()
    result.tree_head_time = head.timestamp
    return head


def _check_checkpoint(
    files: dict[str, bytes], log_pub: bytes | None, head: TreeHead | None, result: Verification
) -> None:
    """The checkpoint is the tree head's own statement, signed by the same log key."""
    data = files.get(CHECKPOINT_FILE)
    if data is None:
        result.notes.append(
            f"the bundle has no {CHECKPOINT_FILE} (made before checkpoints): "
            "witness cosignatures cannot be checked"
        )
        return
    try:
        note = Note.parse(data)
        checkpoint = Checkpoint.parse(note.text)
    except NoteError as exc:
        result.fail(CHECKPOINT_FILE, f"malformed: {exc}")
        return
    if log_pub is None:
        return
    origin = checkpoint_origin(log_id(log_pub))
    if checkpoint.origin != origin:
        result.fail(CHECKPOINT_FILE, f"origin {checkpoint.origin!r} is not this log's ({origin})")
        return
    key = VerifierKey(origin, ED25519_TYPE, log_pub)
    signed = note.signed_by(key)
    if not signed or not all(verify_note_signature(note.text, s, key) for s in signed):
        result.fail(CHECKPOINT_FILE, "the log's signature does not verify")
        return
    if head is not None and (checkpoint.tree_size, checkpoint.root_hash) != (
        head.tree_size,
        head.root_hash,
    ):
        result.fail(CHECKPOINT_FILE, "is not the tree head of tree_head.json")
        return
    result.checkpoint = note


def _check_measurement(
    files: dict[str, bytes],
    n: int,
    entry: Any,
    head: TreeHead | None,
    used_keys: set[str],
    result: Verification,
    require_signatures: bool,
    index: dict[str, IndexRow] | None,
) -> tuple[str, int, dict[str, Any]] | None:
    """One carried measurement: its signature, and its leaf (by the index row the batch proof
    covers, or, in the first format, by its own audit path)."""
    keys = {"file", "leaf_index", "measurement_uid"} | (set() if index is not None else {"proof"})
    if not isinstance(entry, dict) or set(entry) != keys:
        result.fail("manifest.json", f"measurement entry {n} is malformed")
        return None
    uid, mfile, pfile = entry["measurement_uid"], entry["file"], entry.get("proof", "")
    if (
        not all(isinstance(v, str) for v in (uid, mfile, pfile))
        or type(entry["leaf_index"]) is not int
    ):
        result.fail("manifest.json", f"measurement entry {n} is malformed")
        return None
    measurement = _load_json(files, mfile, result)
    if not isinstance(measurement, dict):
        if measurement is not None:
            result.fail(mfile, "is not a JSON object")
        return None
    if measurement.get("measurement_uid") != uid:
        result.fail(mfile, f"is not measurement {uid}")
    if reveals_probe_ip(measurement):
        result.fail(mfile, "reveals a probe IP address")

    check = check_signature(measurement)
    if check.status == "invalid":
        result.fail(f"{mfile} x_signature", f"{uid}: {check.reason}")
    elif check.status == "verified":
        result.signed += 1
        used_keys.add(check.key_id or "")
    else:
        result.unsigned += 1
        if require_signatures:
            result.fail(mfile, f"{uid} is not signed")

    if index is not None:
        row = index.get(uid)
        if row is None:
            result.fail(mfile, f"{uid} is not among the measurements index.json lists")
        elif row.leaf_index != entry["leaf_index"]:
            result.fail("manifest.json", f"leaf index of {uid} differs from index.json's")
        elif row.measurement_sha256 != measurement_digest(measurement):
            result.fail(mfile, f"{uid} does not hash to the leaf the log recorded")
        return uid, entry["leaf_index"], measurement
    doc = _load_json(files, pfile, result)
    if doc is None:
        return uid, entry["leaf_index"], measurement
    try:
        proof = InclusionProof.from_json(doc)
    except ValueError as exc:
        result.fail(pfile, f"malformed inclusion proof: {exc}")
        return uid, entry["leaf_index"], measurement
    if proof.measurement_uid != uid:
        result.fail(pfile, f"is the proof of {proof.measurement_uid}, not of {uid}")
    if proof.leaf_index != entry["leaf_index"]:
        result.fail(pfile, "leaf index differs from the manifest's")
    if proof.leaf_hash != entry_leaf_hash(uid, measurement):
        result.fail(mfile, f"{uid} does not hash to the leaf the log recorded")
    if head is not None:
        if proof.tree_size != head.tree_size:
            result.fail(pfile, "is not against the bundle's tree head")
        elif not merkle.verify_inclusion(
            proof.leaf_index, proof.tree_size, proof.leaf_hash, proof.audit_path, head.root_hash
        ):
            result.fail(pfile, f"inclusion proof of {uid} does not lead to the signed root")
    return uid, proof.leaf_index, measurement


def _check_verdicts(
    files: dict[str, bytes],
    uids: list[str],
    measurements: list[dict[str, Any]],
    analyzer: Analyzer | None,
    result: Verification,
) -> list[dict[str, Any]]:
    verdicts = _load_json(files, "verdicts.json", result)
    if not isinstance(verdicts, list):
        if verdicts is not None:
            result.fail("verdicts.json", "is not a list")
        return []
    if len(verdicts) != len(uids):
        result.fail("verdicts.json", f"has {len(verdicts)} verdicts for {len(uids)} measurements")
    for uid, measurement, verdict in zip(uids, measurements, verdicts, strict=False):
        if not isinstance(verdict, dict) or verdict.get("measurement_uid") != uid:
            result.fail("verdicts.json", f"verdict for {uid} is missing or out of order")
            continue
        if analyzer is None:
            continue
        again = msgspec.json.decode(canonical_json(analyzer(measurement)))
        if again != verdict:
            diff = sorted(k for k in set(again) | set(verdict) if again.get(k) != verdict.get(k))
            result.fail(
                "verdicts.json",
                f"verdict for {uid} does not follow from the measurement "
                f"(re-analysis differs in {', '.join(diff)}: "
                f"bundled {verdict.get('verdict')!r}, re-derived {again.get('verdict')!r})",
            )
    return [v for v in verdicts if isinstance(v, dict)]


def _check_event(
    files: dict[str, bytes], manifest: dict[str, Any], uids: set[str], result: Verification
) -> dict[str, Any] | None:
    if "event.json" not in files and "event.json" not in (manifest.get("files") or {}):
        return None
    event = _load_json(files, "event.json", result)
    if not isinstance(event, dict):
        return None
    subject = manifest.get("subject") or {}
    if subject.get("event_id") not in (None, event.get("event_id")):
        result.fail("event.json", "is not the event the manifest names")
    evidence = event.get("evidence")
    if not isinstance(evidence, list):
        result.fail("event.json", "has no evidence list")
        return event
    for uid in evidence:
        if uid not in uids:
            result.fail("event.json", f"cites measurement {uid} that the bundle does not hold")
    return event


def _made_by_another_version(manifest: dict[str, Any]) -> str | None:
    """The software that made the bundle, when it is not this version (``None`` when it is)."""
    made_by = (manifest.get("analysis") or {}).get("software")
    return None if made_by == f"censorwatch {__version__}" else str(made_by)


def _check_report(
    files: dict[str, bytes],
    manifest: dict[str, Any],
    event: dict[str, Any] | None,
    measurements: list[dict[str, Any]],
    verdicts: list[dict[str, Any]],
    result: Verification,
    index: list[IndexRow] | None = None,
) -> None:
    if "report.html" not in files or "tree_head.json" not in files:
        if "report.html" not in files:
            result.fail("report.html", "missing from the bundle")
        return
    try:
        head_json = msgspec.json.decode(files["tree_head.json"])
        expected = render_report(
            manifest={k: v for k, v in manifest.items() if k not in ("files", "signature")},
            event=event,
            measurements=measurements,
            verdicts=verdicts,
            tree_head=head_json,
            index=index,
        ).encode("utf-8")
    except Exception as exc:  # a malformed bundle must still produce a verdict, not a crash
        result.fail("report.html", f"cannot be re-rendered: {type(exc).__name__}: {exc}")
        return
    if expected == files["report.html"]:
        result.report_rerendered = True
        return
    made_by = _made_by_another_version(manifest)
    if not made_by:
        result.fail("report.html", "does not match what the bundle's contents say")
        return
    # Another version renders differently, so its bytes cannot be reproduced here; they are
    # bound by the signed manifest, and the facts a reader relies on must all be stated.
    missing = _facts_missing_from_report(files["report.html"], event, measurements, head_json)
    if missing:
        result.fail("report.html", f"rendered by {made_by}, and does not state {missing}")
        return
    stated = "the tree head, " + ("the event and " if event is not None else "")
    result.notes.append(
        f"report.html was rendered by {made_by}, which this version (censorwatch "
        f"{__version__}) renders differently; its bytes are bound by the signed manifest, "
        f"and it states {stated}all {len(measurements)} measurements"
    )


def _facts_missing_from_report(
    report: bytes,
    event: dict[str, Any] | None,
    measurements: list[dict[str, Any]],
    head: Any,
) -> str | None:
    """The first fact a report must state that it does not (``None`` when all are there)."""
    try:
        text = report.decode("utf-8")
    except UnicodeDecodeError:
        return "anything readable (it is not UTF-8)"
    head = head if isinstance(head, dict) else {}
    facts = [("the tree head's root hash", head.get("root_hash"))]
    if event is not None:
        facts.append(("the event id", event.get("event_id")))
    facts += [(f"measurement {m.get('measurement_uid')}", m.get("measurement_uid"))
              for m in measurements]  # fmt: skip
    for name, value in facts:
        # Reports spell quotes as html.escape does (older versions) or as Jinja2's autoescape
        # does (markupsafe): either spelling states the value.
        if not isinstance(value, str):
            return name
        if html.escape(value) not in text and str(markupsafe.escape(value)) not in text:
            return name
    return None
