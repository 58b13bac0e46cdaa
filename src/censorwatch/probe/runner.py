"""Run many URLs: bounded concurrency, one JSONL line per measurement, progress, a summary.

Each line is written and flushed as soon as its URL finishes, so an interrupted run keeps
every measurement it completed.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from censorwatch.model import utcnow
from censorwatch.probe.config import ProbeConfig, make_report_id
from censorwatch.probe.scrub import Scrubber
from censorwatch.probe.webconnectivity import WebConnectivity
from censorwatch.targets import Target


@dataclass
class RunSummary:
    measured: int = 0
    accessible: int = 0
    blocking: Counter[str] = field(default_factory=Counter)
    control_failures: int = 0
    seconds: float = 0.0

    def add(self, measurement: dict[str, Any]) -> None:
        tk = measurement.get("test_keys") or {}
        self.measured += 1
        if tk.get("accessible"):
            self.accessible += 1
        blocking = tk.get("blocking")
        if blocking:
            self.blocking[str(blocking)] += 1
        if tk.get("control_failure"):
            self.control_failures += 1


def outcome(tk: dict[str, Any]) -> str:
    """A one-phrase account of a measurement, for people reading a terminal."""
    if tk.get("blocking"):
        first = tk.get("http_experiment_failure") or tk.get("dns_experiment_failure")
        return f"blocking={tk['blocking']}" + (f" ({first})" if first else "")
    if tk.get("accessible"):
        return "accessible"
    failure = tk.get("http_experiment_failure") or tk.get("dns_experiment_failure")
    if failure:
        return f"failed: {failure}"
    return "no verdict (no control)" if tk.get("control_failure") else "not accessible"


async def run(
    targets: list[Target],
    config: ProbeConfig,
    out: IO[str],
    *,
    concurrency: int = 4,
    on_done: Callable[[dict[str, Any]], None] | None = None,
) -> RunSummary:
    """Measure every target, writing each measurement to ``out`` as it completes."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    if not config.report_id:
        config.report_id = make_report_id(utcnow(), config.probe_cc, config.probe_asn)
    probe = WebConnectivity(config, Scrubber())
    summary = RunSummary()
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(target: Target) -> None:
        async with gate:
            measurement = await probe.measure(target)
        out.write(json.dumps(measurement, ensure_ascii=False, separators=(",", ":")) + "\n")
        out.flush()
        summary.add(measurement)
        if on_done is not None:
            on_done(measurement)

    await asyncio.gather(*(one(t) for t in targets))
    summary.seconds = loop.time() - started
    return summary


def run_with_progress(
    targets: list[Target], config: ProbeConfig, out: IO[str], *, concurrency: int
) -> RunSummary:
    """``run`` with a rich progress bar on stderr when stderr is a terminal."""
    if not sys.stderr.isatty():
        return asyncio.run(run(targets, config, out, concurrency=concurrency))
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("probing", total=len(targets))

        def done(measurement: dict[str, Any]) -> None:
            progress.advance(task)
            progress.console.print(
                f"[dim]{measurement.get('input')}[/dim] "
                f"{outcome(measurement.get('test_keys') or {})}",
                highlight=False,
            )

        return asyncio.run(run(targets, config, out, concurrency=concurrency, on_done=done))
