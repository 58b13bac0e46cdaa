"""The whole event in one bundle: every measurement listed and proven by one batch proof, the
raw ones carried while they fit, a reproducible stratified sample beyond; and the PDF.

Measurements are real OONI ones (``shared/data/ooni/wc05_qa``) placed on an event's networks
and days; the log, the analysis, the zip and the PDF are the product's own.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import subprocess
import zipfile
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from censorwatch.cli import app
from censorwatch.evidence import merkle
from censorwatch.evidence.bundle import export_bundle, verify_bundle
from censorwatch.evidence.log import TransparencyLog
from censorwatch.evidence.pdf import RenderError, bundle_sha256, render_pdf
from censorwatch.evidence.scope import IndexRow, choose_carried, stratum
from censorwatch.model import canonical_json, derive_measurement_uid

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TEMPLATES = {
    "dnsBlockingNXDOMAIN": "AS17557",
    "tlsBlockingConnectionResetWithConsistentDNS": "AS9541",
    "tcpBlockingConnectTimeout": "AS135407",
    "successWithHTTPS": None,  # any network, before the onset and after the end
}
NETWORKS = ["AS17557", "AS9541", "AS135407"]
OPERATORS = {"AS17557": "PTCL", "AS9541": "Cybernet"}  # AS135407: no name in the database


def address_plan(path: Path) -> Path:
    """The IP database of the event's networks, as the testbed writes one."""
    networks = [
        {"prefix": f"100.64.{i}.0/24", "asn": int(asn[2:]), "as_org_name": OPERATORS.get(asn, asn)}
        for i, asn in enumerate(NETWORKS)
    ]
    path.write_text(json.dumps({"networks": networks, "public_prefixes": []}))
    return path


def synthetic_event(n: int, days: int = 3) -> tuple[list[dict], dict]:
    """``n`` measurements over ``days`` days on three networks: ok before the onset (day 0,
    00:00-02:00) and after the end (last day, 22:00 on), blocked in between, each network by
    its own method. Shallow copies of four real measurements, so 100,000 stay small."""
    templates = {
        name: json.loads((SHARED / "ooni" / "wc05_qa" / f"{name}.json").read_text())
        for name in TEMPLATES
    }
    blocking = {asn: name for name, asn in TEMPLATES.items() if asn}
    span = days * 86400
    out = []
    for i in range(n):
        asn = NETWORKS[i % 3]
        second = (i * span) // n
        normal = second < 7200 or second >= span - 7200
        name = "successWithHTTPS" if normal else blocking[asn]
        day, rest = divmod(second, 86400)
        when = f"2024-02-{17 + day:02d} {rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
        m = {**templates[name], "probe_asn": asn, "probe_cc": "PK"}
        m["measurement_start_time"] = when
        m["report_id"] = f"20240217T000000Z_webconnectivity_PK_{asn[2:]}_n1_{i:012d}"
        m["measurement_uid"] = derive_measurement_uid(m)
        out.append(m)
    first_blocked = next(m for m in out if m["measurement_start_time"] >= "2024-02-17 02:00")
    last_ok = [m for m in out if m["measurement_start_time"] < "2024-02-17 02:00"][-1]
    end_ok = next(
        (m for m in out if m["measurement_start_time"] >= f"2024-02-{16 + days} 22:00:00"),
        out[-1],
    )
    event = {
        "event_id": "evt_synthetic",
        "scope": "national",
        "cc": "PK",
        "asns": NETWORKS,
        "target": "x",
        "methods": ["dns.nxdomain", "tls.reset", "tcp.timeout"],
        "onset": {"after": "2024-02-17T00:00:00Z", "before": "2024-02-17T02:00:00Z"},
        "end": {"after": f"2024-02-{16 + days}T21:59:00Z", "before": "2024-03-01T00:00:00Z"},
        "status": "ended",
        "confidence": 0.9,
        "measurements": {"networks_measured": 4, "networks_blocked": 3},
        "evidence": list(
            dict.fromkeys(m["measurement_uid"] for m in (out[0], first_blocked, last_ok, end_ok))
        ),
    }
    return out, event


def export(tmp: Path, n: int, max_bytes: int, **extra) -> tuple[Path, list[dict], dict]:
    measurements, event = synthetic_event(n)
    event.update(extra)
    with TransparencyLog(tmp / "log") as log:
        log.append_many((f"other-{i}", {"i": i}) for i in range(7))
        log.append_many((m["measurement_uid"], m) for m in measurements)
        log.append_many((f"later-{i}", {"i": i}) for i in range(5))
        out = tmp / "evidence.zip"
        export_bundle(
            out,
            log=log,
            measurements=measurements,
            event=event,
            fingerprints_dir=SHARED / "fingerprints",
            asn_db=address_plan(tmp / "plan.json"),
            created_at="2024-04-01T00:00:00Z",
            max_bytes=max_bytes,
        )
    return out, measurements, event


def members(path: Path | bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(path if isinstance(path, Path) else io.BytesIO(path)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def rezip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


# -- the batch proof ------------------------------------------------------------------------------


def test_a_batch_proof_equals_the_root_for_any_set_of_leaves_and_only_for_it() -> None:
    rng = random.Random(9162)
    leaves = [merkle.leaf_hash(str(i).encode()) for i in range(300)]
    for size in (1, 2, 3, 7, 8, 9, 64, 100, 300):
        subtree = merkle.list_subtree(leaves[:size])
        root = merkle.root_from_leaves(leaves[:size])
        for _ in range(20):
            chosen = sorted(rng.sample(range(size), rng.randint(1, size)))
            hashes = merkle.batch_inclusion_hashes(chosen, size, subtree)
            proven = [leaves[i] for i in chosen]
            assert merkle.verify_batch_inclusion(chosen, proven, size, hashes, root)
            # Each leaf's own audit path leads to the same root: the batch proof says no more.
            i = chosen[0]
            path = merkle.inclusion_path(i, size, subtree)
            assert merkle.verify_inclusion(i, size, leaves[i], path, root)
            altered = [*proven[:-1], merkle.leaf_hash(b"altered")]
            assert not merkle.verify_batch_inclusion(chosen, altered, size, hashes, root)
            if len(chosen) > 1:  # a leaf dropped from the set no longer adds up
                assert not merkle.verify_batch_inclusion(chosen[1:], proven[1:], size, hashes, root)
    # A run of consecutive leaves costs about log2(n) hashes, not one path per leaf.
    subtree = merkle.list_subtree(leaves)
    assert len(merkle.batch_inclusion_hashes(list(range(40, 240)), 300, subtree)) <= 16


# -- whole and sample -----------------------------------------------------------------------------


def test_the_whole_event_travels_when_it_fits(tmp_path: Path, shared_data) -> None:
    out, _, _ = export(tmp_path, 120, 200_000_000)
    result = verify_bundle(out)
    assert result.ok, result.problems
    assert result.listed == result.carried == 120
    assert "the bundle carries the whole event" in result.coverage
    files = members(out)
    manifest = json.loads(files["manifest.json"])
    assert manifest["coverage"]["whole"] is True
    assert manifest["names"]["networks"] == OPERATORS
    html = files["report.html"].decode()
    for expected in ("X (Twitter) blocked in Pakistan", "PTCL (AS17557)", "Cybernet (AS9541)",
                     "PKT, UTC+05:00", "Measurements per network and day",
                     "name said not to exist", "How these measurements were made"):  # fmt: skip
        assert expected in html, expected
    # An event that carries no impact, reach or reports shows none of their sections.
    assert "Users affected" not in html and "still gets through" not in html


def test_sections_other_work_adds_appear_when_the_event_carries_them(
    tmp_path: Path, shared_data
) -> None:
    out, _, _ = export(
        tmp_path, 30, 200_000_000, impact={"users": 1_200_000, "source": "estimate"},
        still_reachable=["www.dawn.com"],
    )  # fmt: skip
    html = members(out)["report.html"].decode()
    assert "Users affected" in html and "users: 1200000" in html
    assert "What still gets through" in html and "www.dawn.com" in html
    assert "People&#39;s reports" not in html and "People's reports" not in html
    assert verify_bundle(out).ok


def test_the_sample_is_stratified_reproducible_and_keeps_the_brackets() -> None:
    rng = random.Random(5)
    rows = [
        IndexRow(i, f"uid-{i}", "0" * 64, rng.randint(3000, 9000), f"AS{1 + i % 4}", "PK",
                 f"2024-02-{17 + i % 3} 10:00:00", "https://x.com/",
                 "blocked" if i % 5 else "ok", ("dns.forged", "tls.reset")[i % 2] if i % 5 else "")
        for i in range(5000)
    ]  # fmt: skip
    always = {"uid-7", "uid-4999"}
    chosen = choose_carried(rows, always, 2_000_000)
    assert chosen == choose_carried(list(reversed(rows)), always, 2_000_000)
    assert always <= chosen and 200 < len(chosen) < 5000
    assert sum(r.bytes for r in rows if r.measurement_uid in chosen) <= 2_000_000
    assert {stratum(r) for r in rows} == {stratum(r) for r in rows if r.measurement_uid in chosen}
    # Strata share the budget evenly: no stratum has two more than another still offering.
    per = Counter(stratum(r) for r in rows if r.measurement_uid in chosen)
    assert max(per.values()) - min(per.values()) <= 2


@pytest.mark.slow
def test_a_100000_measurement_event_exports_a_sample_under_the_cap_and_verifies(
    tmp_path: Path, shared_data
) -> None:
    cap = 60_000_000
    out, _, event = export(tmp_path, 100_000, cap)
    assert out.stat().st_size <= cap
    result = verify_bundle(out)
    assert result.ok, result.problems
    assert result.listed == 100_000 and 1000 < result.carried < 100_000
    assert f"the other {100_000 - result.carried:,} are only proved present" in result.coverage
    files = members(out)
    rows = json.loads(files["index.json"])["rows"]
    carried = {json.loads(files[n])["measurement_uid"] for n in files
               if n.startswith("measurements/")}  # fmt: skip
    assert set(event["evidence"]) <= carried
    strata = {(r[4], r[6][:10], r[9] or r[8]) for r in rows}
    assert strata == {(r[4], r[6][:10], r[9] or r[8]) for r in rows if r[1] in carried}
    assert len({r[9] for r in rows if r[1] in carried}) == 4  # the three methods and ok ("")

    # A dropped carried measurement is named; so is an altered one, by its UID.
    names = sorted(n for n in files if n.startswith("measurements/"))
    dropped = dict(files)
    del dropped[names[3]]
    problems = [str(p) for p in verify_bundle(rezip(dropped)).problems]
    assert any(p.startswith(names[3]) for p in problems), problems[:5]
    altered = dict(files)
    m = json.loads(altered[names[5]])
    m["software_version"] = "9.9.9-altered"
    altered[names[5]] = canonical_json(m)
    problems = [str(p) for p in verify_bundle(rezip(altered)).problems]
    assert any(names[5] in p and m["measurement_uid"] in p for p in problems), problems[:5]
    # A row dropped from the index, even with the manifest's hashes fixed up, breaks the proof.
    index = json.loads(files["index.json"])
    index["rows"].pop(50_000)
    cut = {**files, "index.json": canonical_json(index)}
    manifest = json.loads(cut["manifest.json"])
    manifest["files"]["index.json"] = hashlib.sha256(cut["index.json"]).hexdigest()
    cut["manifest.json"] = canonical_json(manifest)
    items = {p.item for p in verify_bundle(rezip(cut)).problems}
    assert {"inclusion.json", "manifest.json"} <= items, items


# -- the PDF --------------------------------------------------------------------------------------


def pdf_pages(pdf: Path) -> list[str]:
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, timeout=60,
        check=True,
    ).stdout  # fmt: skip
    return [page for page in text.split("\f") if page.strip()]


@pytest.mark.slow
def test_the_pdf_has_the_summary_first_and_the_hash_root_and_command_on_every_page(
    tmp_path: Path, shared_data
) -> None:
    out, _, _ = export(tmp_path, 60, 200_000_000)
    pdf = tmp_path / "evidence.pdf"
    done = CliRunner().invoke(app, ["evidence", "render", str(out), "--pdf", str(pdf)])
    assert done.exit_code == 0, done.output
    pages = pdf_pages(pdf)
    assert len(pages) >= 2
    digest = bundle_sha256(out)
    root = json.loads(members(out)["tree_head.json"])["root_hash"]
    for n, page in enumerate(pages, 1):
        flat = " ".join(page.split())
        assert f"Bundle SHA-256 {digest}" in flat, n
        assert f"Page {n} of {len(pages)}" in flat, n
        assert f"Tree head root {root}" in flat, n
        assert "censorwatch evidence verify evidence.zip --log-id" in flat, n
    first = " ".join(pages[0].split())
    assert "Summary" in first and "X (Twitter) was blocked in Pakistan" in first
    everything = " ".join(" ".join(pages).split())
    assert "PTCL (AS17557)" in everything and "Cybernet (AS9541)" in everything
    # The pages are real pages: the first one rasterises to an image with ink on it.
    subprocess.run(["pdftoppm", "-r", "30", "-png", "-f", "1", "-l", "1", str(pdf),
                    str(tmp_path / "page")], check=True, timeout=60)  # fmt: skip
    png = next(tmp_path.glob("page*.png"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


@pytest.mark.slow
def test_a_tampered_bundle_prints_another_hash_or_is_refused(tmp_path: Path, shared_data) -> None:
    out, _, _ = export(tmp_path, 30, 200_000_000)
    files = members(out)
    # The same members written by another zip writer still verify, but are other bytes:
    # the pages print the hash of the file they came from.
    other = tmp_path / "rewritten.zip"
    other.write_bytes(rezip(files))
    assert verify_bundle(other).ok
    render_pdf(out, tmp_path / "a.pdf")
    render_pdf(other, tmp_path / "b.pdf")
    a, b = pdf_pages(tmp_path / "a.pdf")[0], pdf_pages(tmp_path / "b.pdf")[0]
    assert bundle_sha256(out) in a and bundle_sha256(other) in b
    assert bundle_sha256(out) not in b
    # A bundle whose contents were altered does not verify, and is not printed.
    files["report.html"] = files["report.html"].replace(b"Pakistan", b"Pakistam", 1)
    bad = tmp_path / "bad.zip"
    bad.write_bytes(rezip(files))
    with pytest.raises(RenderError, match=r"report\.html"):
        render_pdf(bad, tmp_path / "bad.pdf")
    assert not (tmp_path / "bad.pdf").exists()
