"""How the transparency log and bundles scale: appends, reopen, proofs, export and verify.

    .venv/bin/python bench/evidence_log.py [--leaves 1000000] [--bundle 1000]

Prints a Markdown table (the figures in docs/benchmarks.md come from it).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

from censorwatch.evidence import merkle
from censorwatch.evidence.bundle import export_bundle, verify_bundle
from censorwatch.evidence.log import TransparencyLog
from censorwatch.model import derive_measurement_uid
from censorwatch.signing.keys import generate_key_file
from censorwatch.signing.signatures import sign_measurement

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def timed(fn):
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--bundle", type=int, default=1000)
    args = parser.parse_args()
    rows: list[tuple[str, str]] = []
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as d:
        directory = Path(d) / "log"
        with TransparencyLog(directory) as log:

            def append_all() -> None:
                for start in range(0, args.leaves, args.batch):
                    stop = min(start + args.batch, args.leaves)
                    log.append_many((f"uid-{i}", {"i": i}) for i in range(start, stop))

            _, seconds = timed(append_all)
            rows.append((f"append {args.leaves:,} leaves, fsync per {args.batch}",
                         f"{seconds:.1f} s ({args.leaves / seconds:,.0f} leaves/s)"))  # fmt: skip
            _, seconds = timed(lambda: [log.append(f"one-{i}", {"i": i}) for i in range(200)])
            rows.append(("append one leaf with its own fsync", f"{seconds / 200 * 1000:.2f} ms"))
            head, seconds = timed(log.publish_head)
            rows.append(("sign and persist a tree head", f"{seconds * 1000:.2f} ms"))
            n = head.tree_size
            sample = [rng.randrange(n) for _ in range(2000)]

            def proofs() -> None:
                for i in sample:
                    path = log.inclusion_proof(i, n)
                    assert merkle.verify_inclusion(i, n, log.leaf(i), path, head.root_hash)

            _, seconds = timed(proofs)
            rows.append((f"inclusion proof + verify at {n:,} leaves",
                         f"{seconds / len(sample) * 1e6:.0f} µs each"))  # fmt: skip

            def consistency() -> None:
                for m in sample[:500]:
                    path = log.consistency_proof(m, n)
                    assert merkle.verify_consistency(m, n, log.root(m), head.root_hash, path)

            _, seconds = timed(consistency)
            rows.append((f"consistency proof + verify at {n:,} leaves",
                         f"{seconds / 500 * 1e6:.0f} µs each"))  # fmt: skip
        size = (directory / "leaves.bin").stat().st_size
        rows.append(("leaf storage", f"{size / n:.0f} bytes/leaf ({size / 2**20:.0f} MiB)"))
        log, seconds = timed(lambda: TransparencyLog(directory))
        rows.append((f"reopen (re-read, re-check every head, rebuild cache) at {n:,}",
                     f"{seconds:.2f} s"))  # fmt: skip
        log.close()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rows.append(("peak RSS of this process", f"{rss:.0f} MiB"))

        # A bundle of real measurements (re-addressed copies of OONI's QA files), half signed.
        files = sorted((SHARED / "ooni" / "wc05_qa").glob("*.json"))
        key = generate_key_file(Path(d) / "probe.key")
        measurements = []
        for i in range(args.bundle):
            m = json.loads(files[i % len(files)].read_text())
            m["probe_cc"], m["probe_asn"] = "PK", f"AS{9541 + i % 4}"
            m["measurement_start_time"] = f"2024-02-{17 + i // 1440 % 10:02d} " \
                f"{i // 60 % 24:02d}:{i % 60:02d}:00"  # fmt: skip
            if i % 2:
                m = sign_measurement(m, key)
            m["measurement_uid"] = derive_measurement_uid(m)
            measurements.append(m)
        with TransparencyLog(Path(d) / "log2") as log:
            log.append_many((m["measurement_uid"], m) for m in measurements)
            out = Path(d) / "bundle.zip"
            _, seconds = timed(lambda: export_bundle(
                out, log=log, measurements=measurements,
                fingerprints_dir=SHARED / "fingerprints"))  # fmt: skip
        rows.append((f"export a bundle of {args.bundle:,} measurements",
                     f"{seconds:.2f} s, {out.stat().st_size / 2**20:.1f} MiB"))  # fmt: skip
        result, seconds = timed(lambda: verify_bundle(out))
        assert result.ok, result.problems[:5]
        rows.append(("verify it offline (signatures, proofs, re-analysis, report)",
                     f"{seconds:.2f} s"))  # fmt: skip
    sys.stdout.write("| step | measured |\n|---|---|\n")
    for step, figure in rows:
        sys.stdout.write(f"| {step} | {figure} |\n")


if __name__ == "__main__":
    main()
