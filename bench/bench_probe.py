"""How many web_connectivity measurements per second the probe makes, on loopback.

Builds the test suite's little internet on 127.77.0.0/16 (censoring and clean resolvers, DoH,
HTTPS sites, the control service) and measures a mix of URLs with the runner:

    .venv/bin/python bench/bench_probe.py --urls 300 --concurrency 16

Prints a Markdown table (the figures in docs/benchmarks.md come from it).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import probe_loopback as pl
from censorwatch.control.server import BackgroundServer, ControlApp
from censorwatch.probe.runner import run
from censorwatch.targets import Target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    net = pl.build_internet(Path(tempfile.mkdtemp(prefix="cw-bench-")))
    try:
        with BackgroundServer(ControlApp(pl.control_settings(net)), host=pl.CONTROL) as ctl:
            mix = [
                net.https("site.test"),  # everything works
                net.http("redirect.test"),  # two hops
                net.https("censored.test"),  # NXDOMAIN from the system resolver
                net.https("inject.test"),  # injected answer
                f"https://blocked.test:{net.proxy_port}/",  # SNI reset, two SNI probes
            ]
            targets = [Target(mix[i % len(mix)]) for i in range(args.urls)]
            config = pl.probe_config(net, ctl.url)
            out = io.StringIO()
            started = time.monotonic()
            summary = asyncio.run(run(targets, config, out, concurrency=args.concurrency))
            elapsed = time.monotonic() - started
    finally:
        net.close()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    runtimes = sorted(m["test_runtime"] for m in lines)
    sizes = [len(line) for line in out.getvalue().splitlines()]
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    blocked = ", ".join(f"{k} {v}" for k, v in sorted(summary.blocking.items()))
    print(
        f"`.venv/bin/python bench/bench_probe.py --urls {args.urls} "
        f"--concurrency {args.concurrency}`\n"
    )
    print("| figure | measured |\n|---|---|")
    print(f"| measurements | {len(lines)} (accessible {summary.accessible}; {blocked}) |")
    print(f"| wall time | {elapsed:.1f} s ({len(lines) / elapsed:.1f} measurements/s) |")
    print(
        f"| per-URL runtime p50 / p95 / max | {statistics.median(runtimes):.2f} / "
        f"{runtimes[int(0.95 * (len(runtimes) - 1))]:.2f} / {runtimes[-1]:.2f} s |"
    )
    print(
        f"| measurement size mean / max | {statistics.mean(sizes) / 1024:.1f} / "
        f"{max(sizes) / 1024:.1f} KiB |"
    )
    print(f"| peak RSS (probe, control and servers in one process) | {peak_mib:.0f} MiB |")


if __name__ == "__main__":
    main()
