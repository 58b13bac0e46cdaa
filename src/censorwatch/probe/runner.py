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

import msgspec

from censorwatch.observations.schema import MeasurementView, TestKeysView, to_typed
from censorwatch.probe import prepare
from censorwatch.probe.config import ProbeConfig, make_report_id
from censorwatch.probe.webconnectivity import WebConnectivity
from censorwatch.scrub import Scrubber
from censorwatch.targets import Target
from censorwatch.times import utcnow


def typed_test_keys(measurement: dict[str, Any]) -> TestKeysView:
    """The measurement's ``test_keys`` as the observations tier types them (odd values
    pruned, never an error), for the run's summary and progress lines."""
    try:
        typed, _ = to_typed(measurement, MeasurementView)
    except (ValueError, msgspec.ValidationError):
        return TestKeysView()
    tk = typed.test_keys
    return tk if isinstance(tk, TestKeysView) else TestKeysView()


@dataclass
class RunSummary:
    measured: int = 0
    accessible: int = 0
    blocking: Counter[str] = field(default_factory=Counter)
    control_failures: int = 0
    seconds: float = 0.0

    def add(self, measurement: dict[str, Any]) -> None:
        tk = typed_test_keys(measurement)
        self.measured += 1
        if tk.accessible:
            self.accessible += 1
        if tk.blocking:
            self.blocking[str(tk.blocking)] += 1
        if tk.control_failure:
            self.control_failures += 1


def outcome(tk: TestKeysView) -> str:
    """A one-phrase account of a measurement, for people reading a terminal."""
    failure = tk.http_experiment_failure or tk.dns_experiment_failure
    if tk.blocking:
        return f"blocking={tk.blocking}" + (f" ({failure})" if failure else "")
    if tk.accessible:
        return "accessible"
    if failure:
        return f"failed: {failure}"
    return "no verdict (no control)" if tk.control_failure else "not accessible"


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
    targets = await prepare.prepare(config, targets)
    if not config.report_id:
        config.report_id = make_report_id(utcnow(), config.probe_cc, config.probe_asn)
    probe = WebConnectivity(config, Scrubber(config.own_addresses))
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
        task = progress.add_task("probing", total=len(targets) or None)

        def done(measurement: dict[str, Any]) -> None:
            progress.advance(task)
            progress.console.print(
                f"[dim]{measurement.get('input')}[/dim] {outcome(typed_test_keys(measurement))}",
                highlight=False,
            )

        return asyncio.run(run(targets, config, out, concurrency=concurrency, on_done=done))
