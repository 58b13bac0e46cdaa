"""Verdicts for people: one rich table, used by ``analyze``, the probe's summary and the demo."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from rich.table import Table
from rich.text import Text

from censorwatch.model import Verdict

VERDICT_STYLES = {"ok": "green", "blocked": "bold red", "down": "yellow", "unknown": "dim"}


def verdict_text(v: Verdict) -> Text:
    label = v.verdict if v.verdict != "blocked" else f"blocked ({v.method})"
    return Text(label, style=VERDICT_STYLES.get(v.verdict, ""))


def verdict_table(verdicts: Iterable[Verdict], *, title: str | None = None) -> Table:
    """One row per verdict: where, what, how sure, and the first pieces of evidence."""
    table = Table(title=title, show_lines=False, expand=False)
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("network", no_wrap=True)
    table.add_column("target", overflow="fold")
    table.add_column("verdict", no_wrap=True)
    table.add_column("conf.", justify="right")
    table.add_column("layers (dns/tcp/tls/http)", no_wrap=True)
    table.add_column("evidence", overflow="fold", ratio=1)
    for v in verdicts:
        layers = "/".join(_layer(getattr(v.layers, name)) for name in ("dns", "tcp", "tls", "http"))
        verdict = verdict_text(v)
        if v.confirmed and v.fingerprint:
            verdict.append(f"\nconfirmed: {v.fingerprint}", style="red")
        evidence = "\n".join(v.evidence[:3]) + ("\n…" if len(v.evidence) > 3 else "")
        table.add_row(
            v.measurement_start_time.replace("T", " ").removesuffix("Z"),
            f"{v.probe_cc} {v.probe_asn}",
            v.target or v.input or "?",
            verdict,
            f"{v.confidence:.2f}",
            layers,
            evidence,
        )
    return table


def summary_line(verdicts: Iterable[Verdict]) -> str:
    """``12 measurements: 7 blocked (tls.reset 5, dns.nxdomain 2), 4 ok, 1 down``."""
    verdicts = list(verdicts)
    kinds = Counter(v.verdict for v in verdicts)
    methods = Counter(v.method for v in verdicts if v.verdict == "blocked")
    parts = []
    for kind in ("blocked", "ok", "down", "unknown"):
        if not kinds[kind]:
            continue
        part = f"{kinds[kind]} {kind}"
        if kind == "blocked" and methods:
            part += " (" + ", ".join(f"{m} {n}" for m, n in methods.most_common()) + ")"
        parts.append(part)
    return f"{len(verdicts)} measurements: " + (", ".join(parts) or "none")


def _layer(state: str | None) -> str:
    return {"ok": "ok", "blocked": "BLK", "down": "down", "unknown": "?"}.get(state or "", "-")
