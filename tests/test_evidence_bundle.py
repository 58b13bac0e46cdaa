"""Bundles: export real OONI measurements, verify offline, and the tamper matrix.

Every tamper case runs twice: as is, and with the manifest's file hashes recomputed (an
attacker who edits the bundle and fixes up the unsigned parts). Both must fail and name the
item. ``python tests/test_evidence_bundle.py`` prints the matrix as a Markdown table.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import re
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from censorwatch.cli import app
from censorwatch.evidence.bundle import ExportError, export_bundle, verify_bundle
from censorwatch.evidence.log import TransparencyLog
from censorwatch.model import canonical_json, derive_measurement_uid
from censorwatch.signing.keys import generate_key_file
from censorwatch.signing.signatures import sign_measurement

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SCENARIOS = [
    "dnsBlockingNXDOMAIN",
    "tlsBlockingConnectionResetWithConsistentDNS",
    "successWithHTTPS",
    "dnsBlockingBOGON",
    "httpBlockingConnectionReset",
    "tcpBlockingConnectTimeout",
    "successWithHTTP",
    "tlsBlockingConnectionResetWithInconsistentDNS",
    "websiteDownNXDOMAIN",
    "dnsHijackingToProxyWithHTTPSURL",
    "httpDiffWithConsistentDNS",
    "throttlingWithHTTPS",
]
NETWORKS = ["AS9541", "AS17557", "AS135407"]


@dataclass
class Built:
    bundle: bytes
    uids: list[str]
    event: dict
    log_dir: Path
    foreign: dict  # a genuinely signed and logged measurement from another log
    foreign_proof: dict
    earlier_head: dict


def build(workdir: Path) -> Built:
    """A log with unrelated entries around 12 real measurements (8 signed by two probes)."""
    keys = [generate_key_file(workdir / f"probe{i}.key") for i in range(2)]
    measurements = []
    for i, name in enumerate(SCENARIOS):
        m = json.loads((SHARED / "ooni" / "wc05_qa" / f"{name}.json").read_text())
        m["probe_cc"] = "PK"
        m["probe_asn"] = NETWORKS[i % 3]
        m["measurement_start_time"] = f"2024-02-17 {6 + i:02d}:{7 * i % 60:02d}:00"
        if i % 3 != 2:
            m = sign_measurement(m, keys[i % 2], signed_at=f"2024-02-17T{6 + i:02d}:30:00Z")
        m["measurement_uid"] = derive_measurement_uid(m)
        measurements.append(m)
    log_dir = workdir / "log"
    with TransparencyLog(log_dir) as log:
        log.append_many((f"other-{i}", {"i": i}) for i in range(25))
        for m in measurements[:6]:
            log.append(m["measurement_uid"], m)
        earlier = log.publish_head().to_json()
        log.append_many((f"other-{i}", {"i": i}) for i in range(25, 31))
        for m in measurements[6:]:
            log.append(m["measurement_uid"], m)
        log.append_many((f"other-{i}", {"i": i}) for i in range(31, 40))
        uids = [m["measurement_uid"] for m in measurements]
        event = {
            "event_id": "evt_test_national",
            "scope": "national",
            "cc": "PK",
            "asns": NETWORKS,
            "target": "x",
            "methods": ["dns.nxdomain", "tls.reset"],
            "onset": {"after": "2024-02-17T07:00:00Z", "before": "2024-02-17T08:00:00Z"},
            "end": None,
            "status": "ongoing",
            "confidence": 0.9,
            "measurements": {"blocked": 8, "ok": 4},
            "evidence": uids[:8],
        }
        out = workdir / "bundle.zip"
        export_bundle(
            out,
            log=log,
            measurements=measurements,
            event=event,
            fingerprints_dir=SHARED / "fingerprints",
            created_at="2024-04-01T00:00:00Z",
        )
    # A measurement signed by a third probe and logged in a *different* log.
    other_key = generate_key_file(workdir / "probe-foreign.key")
    foreign = json.loads((SHARED / "ooni" / "wc05_qa" / "dnsBlockingNXDOMAIN.json").read_text())
    foreign["probe_cc"], foreign["probe_asn"] = "PK", "AS9541"
    foreign = sign_measurement(foreign, other_key)
    foreign["measurement_uid"] = derive_measurement_uid(foreign)
    with TransparencyLog(workdir / "foreign-log") as other:
        other.append_many((f"f-{i}", {"i": i}) for i in range(40))
        other.append(foreign["measurement_uid"], foreign)
        proof = other.inclusion_for(foreign["measurement_uid"], other.publish_head()).to_json()
    return Built(out.read_bytes(), uids, event, log_dir, foreign, proof, earlier)


@pytest.fixture(scope="module")
def built(tmp_path_factory, shared_data) -> Built:
    return build(tmp_path_factory.mktemp("bundle"))


# -- zip surgery -----------------------------------------------------------------------------------


def unzip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def rezip(files: dict[str, bytes], extra: list[tuple[str, bytes]] = ()) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w") as zf:
        warnings.simplefilter("ignore")  # duplicate names are one of the tamper cases
        for name, data in [*files.items(), *extra]:
            zf.writestr(name, data)
    return buf.getvalue()


def fix_hashes(files: dict[str, bytes]) -> None:
    """What an attacker can do without the log key: make the manifest's hashes match again."""
    manifest = json.loads(files["manifest.json"])
    manifest["files"] = {
        n: hashlib.sha256(d).hexdigest() for n, d in sorted(files.items()) if n != "manifest.json"
    }
    files["manifest.json"] = canonical_json(manifest)


def flip(files: dict[str, bytes], name: str, position: int, xor: int) -> None:
    data = bytearray(files[name])
    data[position % len(data)] ^= xor
    files[name] = bytes(data)


def edit_json(files: dict[str, bytes], name: str, change: Callable[[object], object]) -> None:
    value = msgspec.json.decode(files[name])
    change(value)
    files[name] = canonical_json(value)


# -- the happy path --------------------------------------------------------------------------------


def test_a_fresh_bundle_verifies(built: Built) -> None:
    result = verify_bundle(built.bundle)
    assert result.ok, result.problems
    assert result.measurements == 12
    assert (result.signed, result.unsigned) == (8, 4)
    assert len(result.probe_keys) == 2
    assert result.tree_size == 25 + 6 + 6 + 6 + 9
    files = unzip(built.bundle)
    assert sorted(n for n in files if n.startswith("measurements/")) == [
        f"measurements/{i:05d}.json" for i in range(12)
    ]
    verdicts = json.loads(files["verdicts.json"])
    assert [v["measurement_uid"] for v in verdicts] == built.uids
    assert {v["verdict"] for v in verdicts} >= {"blocked", "ok"}
    # The verdicts are the analysis' own: e.g. the NXDOMAIN scenario is a DNS block.
    assert verdicts[0]["verdict"] == "blocked" and verdicts[0]["method"] == "dns.nxdomain"


def test_the_report_tells_the_story_offline(built: Built) -> None:
    html = unzip(built.bundle)["report.html"].decode()
    # People's names: the platform's display name and the country's, not their codes.
    assert "X (Twitter) blocked in Pakistan" in html
    for asn in NETWORKS:
        assert asn in html
    assert "<svg" in html and "<circle" in html  # the timeline chart, inline
    assert "Step that failed" in html and "What the control saw" in html
    assert "dns_nxdomain_error" in html and "connection_reset" in html
    # Nothing is fetched from anywhere: no external scripts, styles, images or fonts.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<script" not in html and "@import" not in html


def test_nothing_in_the_bundle_reveals_a_probe_ip(built: Built) -> None:
    for name, data in unzip(built.bundle).items():
        if name.startswith("measurements/"):
            assert json.loads(data).get("probe_ip") in (None, "", "127.0.0.1")


def test_export_refuses_measurements_that_would_reveal_a_probe(tmp_path: Path, shared_data) -> None:
    m = json.loads((SHARED / "ooni" / "wc05_qa" / "successWithHTTPS.json").read_text())
    m["probe_ip"] = "198.51.100.23"
    with TransparencyLog(tmp_path / "log") as log:
        log.append(derive_measurement_uid(m), m)
        with pytest.raises(ExportError, match="probe IP"):
            export_bundle(tmp_path / "b.zip", log=log, measurements=[m])
        other = {**m, "probe_ip": "127.0.0.1"}
        with pytest.raises(ExportError, match="not in the log"):
            export_bundle(tmp_path / "b.zip", log=log, measurements=[other])
    assert not (tmp_path / "b.zip").exists()


def _built_by_another_version(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, restyle: Callable[[str], str]
) -> bytes:
    """A bundle whose manifest names an older censorwatch whose renderer differed."""
    from censorwatch.evidence import bundle as bundle_module

    original = bundle_module.render_report
    with monkeypatch.context() as patch:
        patch.setattr(bundle_module, "__version__", "0.0.9")
        patch.setattr(bundle_module, "render_report", lambda **kw: restyle(original(**kw)))
        return build(workdir).bundle


def test_a_report_from_another_version_is_checked_by_the_facts_it_states(
    tmp_path: Path, shared_data, monkeypatch: pytest.MonkeyPatch
) -> None:
    restyled = _built_by_another_version(
        tmp_path / "a", monkeypatch, lambda html: html.replace("<h2>", "<h2 class='old'>")
    )
    files = unzip(restyled)
    assert b"class='old'" in files["report.html"]
    assert json.loads(files["manifest.json"])["analysis"]["software"] == "censorwatch 0.0.9"
    result = verify_bundle(restyled)
    assert result.ok, result.problems
    assert not result.report_rerendered
    assert len(result.notes) == 1 and "rendered by censorwatch 0.0.9" in result.notes[0]
    assert "all 12 measurements" in result.notes[0]
    bundle_path = tmp_path / "restyled.zip"
    bundle_path.write_bytes(restyled)
    # VERIFIED needs a trust source: the id of the log, as its operator publishes it.
    pinned = published_log_id(tmp_path / "a" / "log")
    out = CliRunner().invoke(app, ["evidence", "verify", str(bundle_path), "--log-id", pinned])
    assert out.exit_code == 0
    assert "note: report.html was rendered by censorwatch 0.0.9" in out.output

    # A report of another version that leaves out one measurement is not accepted.
    dropped = _built_by_another_version(
        tmp_path / "b", monkeypatch, lambda html: html.replace(built_uid(html), "(omitted)")
    )
    result = verify_bundle(dropped)
    assert [p.item for p in result.problems] == ["report.html"]
    assert "rendered by censorwatch 0.0.9, and does not state measurement" in str(
        result.problems[0]
    )
    # The same version's report must match byte for byte.
    assert verify_bundle(build(tmp_path / "c").bundle).report_rerendered


def published_log_id(log_dir: Path) -> str:
    """The log id its operator publishes (``evidence log-info``), read from the log itself."""
    with TransparencyLog(log_dir) as log:
        return log.log_id


def built_uid(html: str) -> str:
    """The last measurement UID the report lists."""
    return re.findall(r"<tr><td><code>([^<]+)</code>", html)[-1]


def test_cli_verify_exit_codes(built: Built, tmp_path: Path) -> None:
    good = tmp_path / "good.zip"
    good.write_bytes(built.bundle)
    runner = CliRunner()
    # VERIFIED needs a trust source: the id of the log, as its operator publishes it.
    pinned = published_log_id(built.log_dir)
    ok = runner.invoke(app, ["evidence", "verify", str(good), "--log-id", pinned])
    assert ok.exit_code == 0, ok.output
    assert ok.output.startswith("VERIFIED") and "12 measurements: 8 signed" in ok.output
    files = unzip(built.bundle)
    flip(files, "tree_head.json", 40, 0x01)
    bad = tmp_path / "bad.zip"
    bad.write_bytes(rezip(files))
    failed = runner.invoke(app, ["evidence", "verify", str(bad)])
    assert failed.exit_code == 1
    assert "FAILED" in failed.output and "tree_head.json" in failed.output
    pinned = runner.invoke(app, ["evidence", "verify", str(good), "--log-id", "ab" * 32])
    assert pinned.exit_code == 1 and "log_key.json" in pinned.output
    strict = runner.invoke(app, ["evidence", "verify", str(good), "--require-signatures"])
    assert strict.exit_code == 1 and "is not signed" in strict.output
    as_json = json.loads(runner.invoke(app, ["evidence", "verify", str(good), "--json"]).output)
    assert as_json["ok"] and as_json["measurements"] == 12


def test_cli_export_from_measurement_files_and_event_records(built: Built, tmp_path: Path) -> None:
    files = unzip(built.bundle)
    folder = tmp_path / "measurements"
    folder.mkdir()
    for name, data in files.items():
        if name.startswith("measurements/"):
            (folder / Path(name).name).write_bytes(data)
    events = tmp_path / "events.jsonl"
    events.write_text(
        json.dumps({**built.event, "event_id": "evt_other"}) + "\n" + json.dumps(built.event) + "\n"
    )
    out = tmp_path / "event.zip"
    runner = CliRunner()
    args = ["evidence", "export", "--event", "evt_test_national", "--events", str(events),
            "--measurements", str(folder), "--log-dir", str(built.log_dir), "--out", str(out),
            "--fingerprints", str(SHARED / "fingerprints")]  # fmt: skip
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    result = verify_bundle(out)
    assert result.ok and result.measurements == 8

    filtered = tmp_path / "as9541.zip"
    done = runner.invoke(app, ["evidence", "export", "--asn", "AS9541", "--measurements",
                               str(folder), "--log-dir", str(built.log_dir), "--out",
                               str(filtered)])  # fmt: skip
    assert done.exit_code == 0, done.output
    result = verify_bundle(filtered)
    assert result.ok and result.measurements == 4


# -- the tamper matrix -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    description: str
    change: Callable[[dict[str, bytes], Built], list[tuple[str, bytes]] | None]
    expect: tuple[str, ...]  # items that must be named (prefix match)
    expect_fixed: tuple[str, ...] | None = None  # when hashes are fixed up, if different


def _sig_byte(files: dict[str, bytes], built: Built) -> None:
    name = "measurements/00001.json"
    data = files[name]
    at = data.index(b'"sig":"') + len(b'"sig":"') + 10
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    replacement = alphabet[(alphabet.index(data[at]) + 1) % 64]
    files[name] = data[:at] + bytes([replacement]) + data[at + 1 :]


def _pubkey_swap(files: dict[str, bytes], built: Built) -> None:
    other = msgspec.json.decode(files["measurements/00001.json"])["x_signature"]
    edit_json(files, "measurements/00000.json",
              lambda m: m["x_signature"].update(public_key=other["public_key"],
                                                key_id=other["key_id"]))  # fmt: skip


def _remove_entirely(files: dict[str, bytes], built: Built) -> None:
    del files["measurements/00003.json"]
    edit_json(files, "manifest.json", lambda m: m["measurements"].pop(3))
    edit_json(files, "verdicts.json", lambda v: v.pop(3))
    edit_json(files, "index.json", lambda i: i["rows"].pop(3))


def _add_foreign(files: dict[str, bytes], built: Built) -> None:
    from censorwatch.evidence.formats import measurement_digest

    files["measurements/00012.json"] = canonical_json(built.foreign)
    leaf = built.foreign_proof["leaf_index"] + 10**6
    entry = {
        "file": "measurements/00012.json",
        "leaf_index": leaf,
        "measurement_uid": built.foreign["measurement_uid"],
    }
    edit_json(files, "manifest.json", lambda m: m["measurements"].append(entry))
    uid = built.foreign["measurement_uid"]
    row = [leaf, uid, measurement_digest(built.foreign), 0, "AS9541", "PK",
           "2024-02-17 20:00:00", "https://x.com/", "blocked", "dns.nxdomain"]  # fmt: skip
    edit_json(files, "index.json", lambda i: i["rows"].append(row))
    verdicts = json.loads(files["verdicts.json"])
    verdicts.append({**verdicts[0], "measurement_uid": built.foreign["measurement_uid"]})
    files["verdicts.json"] = canonical_json(verdicts)


def _swap(a: str, b: str) -> Callable[[dict[str, bytes], Built], None]:
    def change(files: dict[str, bytes], built: Built) -> None:
        files[a], files[b] = files[b], files[a]

    return change


def _batch_hashes_swapped(files: dict[str, bytes], built: Built) -> None:
    def swap(proof: dict) -> None:
        hashes = proof["hashes"]
        hashes[0], hashes[-1] = hashes[-1], hashes[0]

    edit_json(files, "inclusion.json", swap)


def _reorder_manifest(files: dict[str, bytes], built: Built) -> None:
    def swap(m: dict) -> None:
        ms = m["measurements"]
        ms[1], ms[4] = ms[4], ms[1]

    edit_json(files, "manifest.json", swap)


def _earlier_head(files: dict[str, bytes], built: Built) -> None:
    files["tree_head.json"] = canonical_json(built.earlier_head)


def _verdict_changed(files: dict[str, bytes], built: Built) -> None:
    edit_json(files, "verdicts.json", lambda v: v[0].update(verdict="ok", method=None))


def _probe_ip(files: dict[str, bytes], built: Built) -> None:
    edit_json(files, "measurements/00002.json", lambda m: m.update(probe_ip="203.0.113.77"))


def _duplicate_entry(files: dict[str, bytes], built: Built) -> list[tuple[str, bytes]]:
    verdicts = json.loads(files["verdicts.json"])
    verdicts[1]["verdict"] = "ok"
    return [("verdicts.json", canonical_json(verdicts))]


def _remove_file(files: dict[str, bytes], built: Built) -> None:
    del files["measurements/00005.json"]


def _event_cites_more(files: dict[str, bytes], built: Built) -> None:
    edit_json(files, "event.json", lambda e: e["evidence"].append(built.uids[9]))


STRUCTURAL = [
    Case("signature byte", "one base64 character of a probe signature changed", _sig_byte,
         ("measurements/00001.json x_signature",)),
    Case("signature key swapped", "another probe's public key and key id put in", _pubkey_swap,
         ("measurements/00000.json x_signature",)),
    Case("measurement removed (file)", "measurement file deleted", _remove_file,
         ("measurements/00005.json",)),
    Case("measurement removed (all traces)",
         "file, index row, manifest entry and verdict removed",
         _remove_entirely, ("measurements/00003.json", "inclusion.json"),
         ("manifest.json", "event.json", "inclusion.json")),
    Case("foreign measurement added", "genuinely signed and logged, but in another log",
         _add_foreign, ("measurements/00012.json", "inclusion.json", "manifest.json"),
         ("inclusion.json", "manifest.json", "probe_keys.json")),
    Case("measurements reordered", "two measurement files swapped",
         _swap("measurements/00001.json", "measurements/00004.json"),
         ("measurements/00001.json", "measurements/00004.json")),
    Case("manifest reordered", "two measurement entries swapped in the manifest",
         _reorder_manifest, ("manifest.json",), ("manifest.json", "verdicts.json")),
    Case("batch proof reordered", "two hashes of the batch inclusion proof exchanged",
         _batch_hashes_swapped, ("inclusion.json",)),
    Case("older tree head", "replaced by an earlier, genuinely signed head of the same log",
         _earlier_head, ("tree_head.json",), ("inclusion.json",)),
    Case("verdict changed", "a 'blocked' verdict turned into 'ok'", _verdict_changed,
         ("verdicts.json",)),
    Case("probe IP inserted", "a measurement made to carry an address", _probe_ip,
         ("measurements/00002.json",)),
    Case("duplicate zip entry", "a second verdicts.json appended to the zip",
         _duplicate_entry, ("verdicts.json",)),
    Case("event cites more", "event claims a measurement it does not have evidence for",
         _event_cites_more, ("event.json",), ("manifest.json",)),
]  # fmt: skip

#: The files whose every byte matters, and what must be named when one changes.
BYTE_TARGETS = {
    "measurements/00000.json": ("measurements/00000.json",),
    "measurements/00002.json": ("measurements/00002.json",),  # unsigned: the log protects it
    "inclusion.json": ("inclusion.json",),
    "index.json": ("index.json",),
    "tree_head.json": ("tree_head.json",),
    "log_key.json": ("log_key.json",),
    "probe_keys.json": ("probe_keys.json",),
    "verdicts.json": ("verdicts.json",),
    "report.html": ("report.html",),
    "manifest.json": ("manifest.json",),
    "event.json": ("event.json",),
}
# Only the log's manifest signature binds these once their hashes are fixed up.
BYTE_FIXED = {"event.json": ("manifest.json",), "index.json": ("manifest.json",)}
# Fixing up hashes after editing the manifest itself would just overwrite the edit, so the
# manifest's own bytes are tested as is (its signature covers all of them).
NO_FIXUP = {"manifest.json"}
POSITIONS_PER_FILE = 12


def byte_cases(built_files: dict[str, bytes]) -> list[tuple[str, int, int]]:
    rng = random.Random(20240217)
    cases = []
    for name in BYTE_TARGETS:
        size = len(built_files[name])
        positions = {0, size - 1, size // 2} | {rng.randrange(size) for _ in range(9)}
        cases += [(name, p, rng.randrange(1, 256)) for p in sorted(positions)]
    return cases


def named(result, items: tuple[str, ...]) -> list[str]:
    """The expected items that the result does NOT name."""
    return [i for i in items if not any(p.item.startswith(i) for p in result.problems)]


def run_case(built: Built, change, fixed: bool):
    files = unzip(built.bundle)
    extra = change(files, built) or []
    if fixed and "manifest.json" in files:
        fix_hashes(files)
    return verify_bundle(rezip(files, extra))


@pytest.mark.parametrize("fixed", [False, True], ids=["as-is", "hashes-fixed"])
@pytest.mark.parametrize("case", STRUCTURAL, ids=[c.name for c in STRUCTURAL])
def test_structural_tampering_is_caught_and_named(built: Built, case: Case, fixed: bool) -> None:
    result = run_case(built, case.change, fixed)
    assert not result.ok
    expect = case.expect_fixed if fixed and case.expect_fixed else case.expect
    assert not named(result, expect), [str(p) for p in result.problems]


BYTE_RUNS = [(n, f) for n in BYTE_TARGETS for f in (False, True) if not (f and n in NO_FIXUP)]


@pytest.mark.parametrize(
    ("name", "fixed"),
    BYTE_RUNS,
    ids=[f"{n}-{'hashes-fixed' if f else 'as-is'}" for n, f in BYTE_RUNS],
)
def test_any_byte_of_any_item_is_caught_and_named(built: Built, name: str, fixed: bool) -> None:
    files = unzip(built.bundle)
    expect = BYTE_FIXED.get(name, BYTE_TARGETS[name]) if fixed else BYTE_TARGETS[name]
    for target, position, xor in byte_cases(files):
        if target != name:
            continue
        result = run_case(built, lambda f, b, p=position, x=xor: flip(f, name, p, x), fixed)
        assert not result.ok, (name, position)
        assert not named(result, expect), (name, position, [str(p) for p in result.problems])


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
@pytest.mark.slow
def test_hypothesis_any_byte_anywhere_fails_verification(built: Built, data) -> None:
    files = unzip(built.bundle)
    name = data.draw(st.sampled_from(sorted(files)))
    position = data.draw(st.integers(0, len(files[name]) - 1))
    xor = data.draw(st.integers(1, 255))
    fixed = data.draw(st.booleans()) and name not in NO_FIXUP
    result = run_case(built, lambda f, b: flip(f, name, position, xor), fixed)
    assert not result.ok
    if not fixed:
        assert any(p.item.startswith(name) for p in result.problems)


# -- the printed matrix ----------------------------------------------------------------------------


def matrix(built: Built) -> list[tuple[str, str, str, str]]:
    rows = []
    for case in STRUCTURAL:
        for fixed in (False, True):
            result = run_case(built, case.change, fixed)
            items = sorted({p.item.split(" ")[0] for p in result.problems})
            rows.append((case.name, "hashes fixed" if fixed else "as is",
                         "FAIL (caught)" if not result.ok else "PASSED (missed!)",
                         ", ".join(items)))  # fmt: skip
    files = unzip(built.bundle)
    for name, fixed in BYTE_RUNS:
        caught = total = 0
        items: set[str] = set()
        for target, position, xor in byte_cases(files):
            if target != name:
                continue
            total += 1
            result = run_case(
                built, lambda f, b, n=name, p=position, x=xor: flip(f, n, p, x), fixed
            )
            caught += not result.ok
            items |= {p.item.split(" ")[0] for p in result.problems}
        mode = "hashes fixed" if fixed else "as is"
        rows.append(
            (f"any byte of {name}", mode, f"{caught}/{total} caught", ", ".join(sorted(items)))
        )
    return rows


EXHAUSTIVE = [
    "tree_head.json",
    "inclusion.json",
    "log_key.json",
    "probe_keys.json",
    "measurements/00001.json",
]


def exhaustive(built: Built) -> list[tuple[str, str, str, str]]:
    """Every byte of the core items, each flipped (xor 0x01 and 0x80) with hashes fixed up."""
    rows = []
    files = unzip(built.bundle)
    for name in EXHAUSTIVE:
        caught = total = itemized = 0
        items: set[str] = set()
        for position in range(len(files[name])):
            for xor in (0x01, 0x80):
                total += 1
                result = run_case(
                    built, lambda f, b, n=name, p=position, x=xor: flip(f, n, p, x), True
                )
                caught += not result.ok
                mine = {p.item for p in result.problems if p.item.startswith(name)}
                itemized += bool(mine)
                items |= mine
        rows.append((f"every byte of {name} (x2)", "hashes fixed",
                     f"{caught}/{total} caught, {itemized}/{total} name the item",
                     ", ".join(sorted(items))))  # fmt: skip
    return rows


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as d:
        b = build(Path(d))
        assert verify_bundle(b.bundle).ok
        sys.stdout.write("| tampering | mode | verify | items named |\n|---|---|---|---|\n")
        rows = matrix(b) + (exhaustive(b) if "--exhaustive" in sys.argv else [])
        for row in rows:
            sys.stdout.write("| " + " | ".join(row) + " |\n")
