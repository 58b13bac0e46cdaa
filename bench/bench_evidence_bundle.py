"""Bundle size and verify time for events of 1,000, 10,000 and 100,000 measurements.

Each event is real OONI measurements (``shared/data/ooni/wc05_qa``) spread over three
networks and three days, logged in a fresh transparency log among other entries, exported
with ``evidence.bundle.export_bundle`` under the default size cap (200 MB) and checked with
``verify_bundle``: the product's own export and verify, nothing re-implemented.

    .venv/bin/python bench/bench_evidence_bundle.py [--sizes 1000,10000,100000] [--max-mb 200]

Prints one Markdown row per size (docs/benchmarks.md, "Evidence bundles").
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from censorwatch.evidence.bundle import export_bundle, verify_bundle
from censorwatch.evidence.log import TransparencyLog
from censorwatch.model import derive_measurement_uid

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TEMPLATES = {
    "AS17557": "dnsBlockingNXDOMAIN",
    "AS9541": "tlsBlockingConnectionResetWithConsistentDNS",
    "AS135407": "tcpBlockingConnectTimeout",
}
NORMAL = "successWithHTTPS"


def event_measurements(n: int, days: int = 3) -> list[dict]:
    """``n`` measurements: normal for the first and last two hours, blocked in between."""
    names = [*TEMPLATES.values(), NORMAL]
    templates = {
        name: json.loads((SHARED / "ooni" / "wc05_qa" / f"{name}.json").read_text())
        for name in names
    }
    asns = list(TEMPLATES)
    span = days * 86400
    out = []
    for i in range(n):
        asn = asns[i % len(asns)]
        second = (i * span) // n
        name = NORMAL if second < 7200 or second >= span - 7200 else TEMPLATES[asn]
        day, rest = divmod(second, 86400)
        m = {**templates[name], "probe_asn": asn, "probe_cc": "PK"}
        m["measurement_start_time"] = (
            f"2024-02-{17 + day:02d} {rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
        )
        m["report_id"] = f"20240217T000000Z_webconnectivity_PK_{asn[2:]}_n1_{i:012d}"
        m["measurement_uid"] = derive_measurement_uid(m)
        out.append(m)
    return out


def run(n: int, max_bytes: int, workdir: Path) -> dict[str, float | int | bool]:
    measurements = event_measurements(n)
    event = {
        "event_id": f"evt_bench_{n}",
        "scope": "national",
        "cc": "PK",
        "asns": list(TEMPLATES),
        "target": "x",
        "methods": ["dns.nxdomain", "tls.reset", "tcp.timeout"],
        "onset": {"after": "2024-02-17T01:59:00Z", "before": "2024-02-17T02:01:00Z"},
        "end": None,
        "status": "ongoing",
        "confidence": 0.9,
        "measurements": {},
        "evidence": [measurements[0]["measurement_uid"]],
    }
    out = workdir / f"event-{n}.zip"
    with TransparencyLog(workdir / f"log-{n}") as log:
        log.append_many((f"other-{i}", {"i": i}) for i in range(1000))
        log.append_many((m["measurement_uid"], m) for m in measurements)
        started = time.perf_counter()
        manifest = export_bundle(
            out,
            log=log,
            measurements=measurements,
            event=event,
            fingerprints_dir=SHARED / "fingerprints",
            created_at="2024-04-01T00:00:00Z",
            max_bytes=max_bytes,
        )
        export_s = time.perf_counter() - started
    started = time.perf_counter()
    result = verify_bundle(out)
    verify_s = time.perf_counter() - started
    if not result.ok:
        raise SystemExit(f"bundle of {n} does not verify: {result.problems[:3]}")
    coverage = manifest["coverage"]
    return {
        "listed": coverage["listed"],
        "carried": coverage["carried"],
        "whole": coverage["whole"],
        "bytes": out.stat().st_size,
        "export_s": export_s,
        "verify_s": verify_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--max-mb", type=float, default=200.0)
    args = parser.parse_args()
    print("| measurements | carried | bundle | export | verify |")
    print("|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="cw-bench-bundle-") as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            r = run(n, int(args.max_mb * 1_000_000), Path(tmp))
            carried = "all" if r["whole"] else f"{r['carried']:,} (sample)"
            print(
                f"| {r['listed']:,} | {carried} | {r['bytes'] / 1e6:.1f} MB | "
                f"{r['export_s']:.1f} s | {r['verify_s']:.1f} s |",
                flush=True,
            )


if __name__ == "__main__":
    main()
