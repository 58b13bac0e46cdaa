"""End-to-end analysis throughput: `censorwatch analyze --json` as a user runs it, per CPU-second.

    .venv/bin/python bench/bench_analysis.py [--count 20000] [--rounds 3] [--data DIR]
                                             [--fingerprints DIR]

Reads OONI's 50 wc05_qa web_connectivity measurements, repeats them to ``--count`` and writes
two JSONL corpora: the measurements as published (no ``measurement_uid``, so the analysis
derives it) and the same measurements with the UID filled in, as stored measurements carry it.
For each corpus it times, each in its own subprocess on one pinned core:

1. a msgspec parse-only loop over the same file (read line by line, decode each line);
2. the whole ``censorwatch analyze --json --fingerprints DIR FILE`` process: interpreter
   start, imports, the fingerprint database, reading, analysis, JSONL verdicts (to
   ``/dev/null``).

CPU time (user + system) comes from ``resource.getrusage(RUSAGE_CHILDREN)``; the best of
``--rounds`` runs counts. The rates are measurements per CPU-second.

``--stages`` adds where the time goes: the process with a one-measurement file (start-up,
with and without the fingerprint database) and, in this process on the corpus with UIDs, each
stage of the road per measurement (reading, typed decode, observations, the verdict logic,
the verdict record and its JSON), and the UID derivation the corpus without UIDs adds.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from censorwatch.model import derive_measurement_uid

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"

PARSE_ONLY = """
import sys
import msgspec

decode = msgspec.json.Decoder().decode
with open(sys.argv[1], "rb") as fh:
    for line in fh:
        if line.strip():
            decode(line)
"""


def _pinned() -> list[str]:
    """A prefix that pins a child process to one core (the last one), where taskset exists."""
    taskset = shutil.which("taskset")
    if taskset and hasattr(os, "sched_getaffinity"):
        return [taskset, "-c", str(sorted(os.sched_getaffinity(0))[-1])]
    return []


def _child_env() -> dict[str, str]:
    """The environment a user's shell gives: Python caches compiled modules (``.pyc``).

    Some machines set ``PYTHONDONTWRITEBYTECODE``, which makes every start compile every module
    from source again (~30 ms here); an installed censorwatch never runs that way.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _child_cpu_seconds(argv: list[str]) -> float:
    """CPU seconds (user + system) one child process took, from start to exit."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=_child_env())
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def write_corpora(data: Path, count: int, out: Path) -> tuple[Path, Path, int, float]:
    """The two JSONL corpora (as published; with UIDs), the files used, the mean line size."""
    files = sorted(data.glob("*.json"))
    docs = [msgspec.json.decode(f.read_bytes()) for f in files]
    published = [msgspec.json.encode(d) for d in docs]  # one line each, key order kept
    with_uid = []
    for d in docs:
        stored = {**d, "measurement_uid": derive_measurement_uid(d)}
        with_uid.append(msgspec.json.encode(stored))
    paths = []
    for name, lines in (("published.jsonl", published), ("with_uid.jsonl", with_uid)):
        path = out / name
        with path.open("wb") as fh:
            for i in range(count):
                fh.write(lines[i % len(lines)] + b"\n")
        paths.append(path)
    mean = sum(len(b) for b in published) / len(published)
    return paths[0], paths[1], len(files), mean


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--data", type=Path, default=SHARED / "ooni" / "wc05_qa")
    parser.add_argument("--fingerprints", type=Path, default=SHARED / "fingerprints")
    parser.add_argument("--rounds", type=int, default=3, help="best of N for each loop")
    parser.add_argument("--stages", action="store_true", help="also show where the time goes")
    args = parser.parse_args()

    cli = Path(sys.executable).with_name("censorwatch")
    command = [str(cli)] if cli.exists() else [sys.executable, "-m", "censorwatch"]
    pin = _pinned()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-analysis-") as tmp:
        published, with_uid, nfiles, mean = write_corpora(args.data, args.count, Path(tmp))
        parse_script = Path(tmp) / "parse_only.py"
        parse_script.write_text(PARSE_ONLY)
        for label, corpus in (
            ("as published (no `measurement_uid`)", published),
            ("with `measurement_uid`", with_uid),
        ):
            parse_argv = [*pin, sys.executable, str(parse_script), str(corpus)]
            analyze_argv = [
                *pin,
                *command,
                "analyze",
                "--json",
                "--fingerprints",
                str(args.fingerprints),
                str(corpus),
            ]
            parse_s = min(_child_cpu_seconds(parse_argv) for _ in range(args.rounds))
            analyze_s = min(_child_cpu_seconds(analyze_argv) for _ in range(args.rounds))
            rows.append((label, parse_s, analyze_s))
        if args.stages:
            one = Path(tmp) / "one.jsonl"
            one.write_bytes(with_uid.read_bytes().split(b"\n", 1)[0] + b"\n")
            base = [*pin, *command, "analyze", "--json"]
            startup = [
                (
                    "process start-up (one measurement), fingerprints loaded",
                    min(
                        _child_cpu_seconds(
                            [*base, "--fingerprints", str(args.fingerprints), str(one)]
                        )
                        for _ in range(args.rounds)
                    ),
                ),
                (
                    "process start-up (one measurement), no fingerprints",
                    min(_child_cpu_seconds([*base, str(one)]) for _ in range(args.rounds)),
                ),
            ]
            stages = _stages(with_uid, published, args.fingerprints, args.rounds)

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, msgspec {msgspec.__version__}"
        + (", each child pinned to one core" if pin else "")
    )
    print(
        f"input: {args.count} measurements ({nfiles} distinct wc05_qa files, mean "
        f"{mean:,.0f} bytes a line); best of {args.rounds}; whole processes, CPU seconds"
    )
    print(f"command: {' '.join(command[-1:])} analyze --json --fingerprints DIR FILE")
    print()
    print(
        "| input | parse only (msgspec): CPU s, /CPU-s | `censorwatch analyze --json`: "
        "CPU s, /CPU-s | analyze / parse-only |"
    )
    print("|---|---:|---:|---:|")
    for label, parse_s, analyze_s in rows:
        print(
            f"| {label} | {parse_s:.2f} s, {args.count / parse_s:,.0f} | "
            f"{analyze_s:.2f} s, {args.count / analyze_s:,.0f} | {parse_s / analyze_s:.0%} |"
        )
    if args.stages:
        print()
        print("| where the time goes | CPU |")
        print("|---|---:|")
        for label, seconds in startup:
            print(f"| {label} | {seconds:.2f} s |")
        for label, micros in stages:
            print(f"| {label} | {micros:.1f} µs per measurement |")


def _stages(with_uid: Path, published: Path, fingerprints: Path, rounds: int):
    """Each stage of the road, per measurement, in this process (best of ``rounds``)."""
    from censorwatch.analysis.core import _ENVELOPE, analyze_raw, derived_uid
    from censorwatch.analysis.fingerprints import Fingerprints
    from censorwatch.analysis.walk import analyze_web
    from censorwatch.netinfo import AddressPlan
    from censorwatch.observations.builder import observe
    from censorwatch.observations.reader import iter_measurements

    fps = Fingerprints.load(fingerprints)
    plan = AddressPlan().freeze()
    lines = [i.raw for i in iter_measurements([with_uid], decode=False)][:5000]
    plain = [i.raw for i in iter_measurements([published], decode=False)][:5000]
    envs = [_ENVELOPE.decode(b) for b in lines]
    obs = [observe(e.test_keys) for e in envs]
    outcomes = [
        analyze_web(o, e.input, e.probe_cc, fps, plan) for o, e in zip(obs, envs, strict=True)
    ]
    verdicts = [analyze_raw(b, fps, plan).verdict for b in lines]
    encode = msgspec.json.Encoder().encode
    decode_any = msgspec.json.Decoder().decode
    gc.freeze()

    def per_item(fn, n: int) -> float:
        best = float("inf")
        for _ in range(rounds):
            start = time.process_time()
            fn()
            best = min(best, time.process_time() - start)
        return best / n * 1e6

    def read() -> None:
        for _ in iter_measurements([with_uid], decode=False):
            pass

    def each(fn, items) -> Callable[[], None]:
        def loop() -> None:
            for item in items:
                fn(item)  # the result is dropped, as the command drops it

        return loop

    n = len(lines)
    with_uid_count = sum(1 for _ in iter_measurements([with_uid], decode=False))
    pairs = list(zip(obs, envs, strict=True))
    built = list(zip(envs, outcomes, strict=True))
    return [
        ("reading the JSONL (`iter_measurements(decode=False)`)", per_item(read, with_uid_count)),
        ("typed decode", per_item(each(_ENVELOPE.decode, lines), n)),
        ("observations (`observe`)", per_item(each(lambda e: observe(e.test_keys), envs), n)),
        (
            "verdict logic (`analyze_web`)",
            per_item(
                each(lambda p: analyze_web(p[0], p[1].input, p[1].probe_cc, fps, plan), pairs), n
            ),
        ),
        ("verdict record", per_item(each(lambda p: _verdict_of(*p), built), n)),
        ("its JSON line", per_item(each(encode, verdicts), n)),
        (
            "the road in all (`analyze_raw` + JSON)",
            per_item(each(lambda b: encode(analyze_raw(b, fps, plan).verdict), lines), n),
        ),
        (
            "no UID: the generic decode and `derived_uid` this adds",
            per_item(each(lambda b: derived_uid(decode_any(b)), plain), n),
        ),
    ]


def _verdict_of(env, outcome):
    from censorwatch.analysis.core import _build

    return _build(
        env.measurement_uid,
        env.report_id,
        env.input,
        env.probe_cc,
        env.probe_asn,
        env.measurement_start_time,
        outcome,
    )


if __name__ == "__main__":
    main()
