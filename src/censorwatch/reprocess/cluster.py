"""The cluster a run uses: a scheduler's address, or a LocalCluster of this machine's cores."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: Seconds to wait for a scheduler to answer, and for a local cluster's workers to start.
CONNECT_TIMEOUT = 30


class ClusterUnreachable(Exception):
    """The scheduler did not answer (wrong address, not running, a firewall)."""


@contextmanager
def connect(scheduler: str | None) -> Iterator[Any]:
    """A ``distributed.Client``; without ``scheduler``, a ``LocalCluster`` of one worker
    process per core on loopback (processes, not threads: the analysis is Python and holds the
    GIL), stopped when the run ends."""
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=f"{CONNECT_TIMEOUT}s")
        except (OSError, TimeoutError) as exc:
            raise ClusterUnreachable(f"cannot reach the scheduler {scheduler}: {exc}") from None
        with client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=os.cpu_count() or 1,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster, timeout=f"{CONNECT_TIMEOUT}s") as client,
    ):
        yield client
