"""Analysis throughput on one core, side by side with parse-only on the same bytes.

    .venv/bin/python bench/bench_analysis.py [--count 20000] [--data DIR] [--fingerprints DIR]

Reads OONI's 50 wc05_qa web_connectivity measurements, repeats them to ``--count`` and times,
in one run and on one pinned core: (1) decoding each measurement's bytes with msgspec (the
fastest JSON parser censorwatch uses), (2) ``censorwatch.analysis.core.analyze_json`` on the
same bytes (decoding included) with the full fingerprint database loaded. CPU time (process
time) is what is reported; the rates are measurements per CPU-second. Each loop runs twice
over: on the files as published (no ``measurement_uid``, so the analysis derives it) and with
the UID filled in, as stored measurements carry it.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import time
from collections import Counter
from pathlib import Path

import msgspec

from censorwatch.analysis.core import analyze_json
from censorwatch.analysis.fingerprints import Fingerprints
from censorwatch.model import derive_measurement_uid
from censorwatch.netinfo import AddressPlan

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def _timed(fn, items: list[bytes]) -> float:
    gc.collect()
    start = time.process_time()
    fn(items)
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--data", type=Path, default=SHARED / "ooni" / "wc05_qa")
    parser.add_argument("--fingerprints", type=Path, default=SHARED / "fingerprints")
    parser.add_argument("--rounds", type=int, default=3, help="best of N for each loop")
    args = parser.parse_args()

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})
    files = sorted(args.data.glob("*.json"))
    raw = [f.read_bytes() for f in files]
    items = [raw[i % len(raw)] for i in range(args.count)]
    fps = Fingerprints.load(args.fingerprints)
    plan = AddressPlan().freeze()
    decoder = msgspec.json.Decoder()
    decode = decoder.decode

    def parse_only(batch: list[bytes]) -> None:
        for b in batch:
            decode(b)

    verdicts: Counter[str] = Counter()

    def parse_and_analyze(batch: list[bytes]) -> None:
        verdicts.clear()
        for b in batch:
            v = analyze_json(b, fingerprints=fps, plan=plan)
            verdicts[v.method or v.verdict] += 1

    # The same measurements as a collector or OONI's API stores them: with measurement_uid
    # (then the analysis need not derive it, a content hash over the canonical JSON).
    with_uid = []
    for b in raw:
        m = decode(b)
        m["measurement_uid"] = derive_measurement_uid(m)
        with_uid.append(msgspec.json.encode(m))
    items_uid = [with_uid[i % len(with_uid)] for i in range(args.count)]

    parse_and_analyze(items[: len(raw)])  # warm caches the same way for every loop
    rows = []
    for label, batch in (
        ("as published (no measurement_uid)", items),
        ("with measurement_uid", items_uid),
    ):
        parse_s = min(_timed(parse_only, batch) for _ in range(args.rounds))
        analyze_s = min(_timed(parse_and_analyze, batch) for _ in range(args.rounds))
        rows.append((label, len(batch) / parse_s, len(batch) / analyze_s))
    mean_bytes = sum(len(b) for b in items) / len(items)

    print(
        f"machine: {platform.processor() or platform.machine()}, Python "
        f"{platform.python_version()}, msgspec {msgspec.__version__}, one pinned core"
    )
    print(
        f"input: {len(items)} measurements ({len(files)} distinct wc05_qa files, "
        f"mean {mean_bytes:,.0f} bytes), {len(fps)} fingerprints loaded, best of "
        f"{args.rounds}"
    )
    print()
    print("| input | parse only (msgspec) /s | parse + analyze /s | µs per analysis | ratio |")
    print("|---|---:|---:|---:|---:|")
    for label, parse_rate, analyze_rate in rows:
        print(
            f"| {label} | {parse_rate:,.0f} | {analyze_rate:,.0f} | "
            f"{1e6 / analyze_rate:.0f} | {analyze_rate / parse_rate:.0%} |"
        )
    print()
    print("verdicts per round: " + ", ".join(f"{k} {n}" for k, n in verdicts.most_common()))


if __name__ == "__main__":
    main()
