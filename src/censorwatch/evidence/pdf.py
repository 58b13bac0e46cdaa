"""The bundle's report as a PDF for a court annex: the same template, printed.

A PDF cannot sit inside the bundle whose SHA-256 it prints (adding it would change the hash),
so it goes *beside* the bundle: ``evidence.zip`` and ``evidence.pdf``. Every page carries its
number, the SHA-256 of the bundle file, the signed tree head's root and the command that
verifies the bundle; a reader checks the printed hash with ``sha256sum evidence.zip``. The PDF
is rendered only from a bundle that verifies, and from its contents alone (``print.html``
extends ``report.html``), so it says what the verified report says.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import msgspec

from censorwatch.evidence import bundlezip
from censorwatch.evidence.bundle import (
    FORMAT,
    INDEX_FILE,
    MAX_ENTRIES,
    MAX_FILE_BYTES,
    MAX_TOTAL_BYTES,
    verify_bundle,
)
from censorwatch.evidence.report import render_report
from censorwatch.evidence.scope import IndexRow


class RenderError(Exception):
    """The bundle cannot be printed honestly (it does not verify, or cannot be read)."""


def bundle_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def print_html(bundle: Path) -> str:
    """The print page of a bundle that verifies (``RenderError`` naming the problems if not)."""
    result = verify_bundle(bundle)
    if not result.ok:
        named = "; ".join(str(p) for p in result.problems[:5])
        raise RenderError(f"{bundle} does not verify ({len(result.problems)} problems): {named}")
    limits = bundlezip.ZipLimits(MAX_ENTRIES, MAX_FILE_BYTES, MAX_TOTAL_BYTES)
    files = bundlezip.read_members(bundle, limits).files
    manifest = msgspec.json.decode(files["manifest.json"])

    def load(name: str) -> Any:
        return msgspec.json.decode(files[name]) if name in files else None

    index = None
    if manifest.get("format") == FORMAT:
        index = [IndexRow.from_json(r) for r in load(INDEX_FILE)["rows"]]
    return render_report(
        manifest={k: v for k, v in manifest.items() if k not in ("files", "signature")},
        event=load("event.json"),
        measurements=[load(e["file"]) for e in manifest["measurements"]],
        verdicts=load("verdicts.json"),
        tree_head=load("tree_head.json"),
        index=index,
        template="print.html",
        bundle_sha256=bundle_sha256(bundle),
        bundle_name=bundle.name,
    )


def render_pdf(bundle: Path, out: Path) -> Path:
    """Write the PDF of ``bundle`` to ``out`` (beside the bundle, never inside it)."""
    import weasyprint

    html = print_html(bundle)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    weasyprint.HTML(string=html).write_pdf(tmp)
    tmp.replace(out)
    return out
