"""Switches censors on and off at the times the scenario gives, counted from ``testbed up``.

python -m censorwatch.testbed.scheduler STATE_DIR
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from censorwatch.console import service_logging
from censorwatch.testbed import censor
from censorwatch.testbed.state import TestbedState

log = logging.getLogger("scheduler")


Switch = tuple[float, str, str, tuple[str, ...], bool, str | None, float | None, str]


def timeline(state: TestbedState) -> list[Switch]:
    """(offset, network, method, targets, on, rate, loss, hop) for every scheduled switch
    after t=0."""
    events = []
    for c in state.scenario().censors:
        if c.start > 0:
            events.append((c.start, c.network, c.method, c.targets, True, c.rate, c.loss, c.hop))
        if c.end is not None:
            events.append((c.end, c.network, c.method, c.targets, False, c.rate, c.loss, c.hop))
    return sorted(events, key=lambda e: (e[0], not e[4]))


def run(state: TestbedState) -> None:
    plan = state.plan()
    started = state.info()["started_at"]
    for offset, network, method, targets, on, rate, loss, hop in timeline(state):
        delay = started + offset - time.time()
        if delay > 0:
            time.sleep(delay)
        if not state.exists():
            return  # the testbed went down under us
        censor.set_censor(state, plan, network, method, list(targets), on, rate, loss, hop)
        log.info(
            "t=%.1fs %s %s %s on %s",
            time.time() - started,
            "on" if on else "off",
            method,
            ",".join(targets),
            network,
        )


def main(argv: list[str]) -> None:
    service_logging()
    run(TestbedState(Path(argv[0])))


if __name__ == "__main__":
    main(sys.argv[1:])
