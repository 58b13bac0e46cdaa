"""Ingest OONI raw files: each measurement is archived, analysed and stored like a submission.

Incremental: each file is remembered (by its key) once all its measurements are stored, so a
second run only reads new files. A run interrupted mid-file re-reads that file next time; the
measurements already stored are recognised by their UID and not stored twice.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from censorwatch.collector.pipeline import Pending, Pipeline
from censorwatch.ingest.sources import RawFile, Selection, Source
from censorwatch.times import parse_time

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 64 * 1024 * 1024


@dataclass
class IngestStats:
    files: int = 0
    skipped_files: int = 0  # already ingested by an earlier run
    measurements: int = 0  # read and accepted
    stored: int = 0  # new to the store
    invalid: int = 0  # unreadable lines or lines without the required fields


def _usable(m: Any) -> bool:
    if not isinstance(m, dict):
        return False
    for key in ("test_name", "probe_cc", "probe_asn", "measurement_start_time"):
        if not isinstance(m.get(key), str):
            return False
    try:
        parse_time(m["measurement_start_time"])
    except ValueError:
        return False
    return True


def ingest(
    source: Source,
    pipeline: Pipeline,
    selection: Selection,
    *,
    batch: int = 1000,
    on_file: Callable[[RawFile], None] | None = None,
    on_measurements: Callable[[int], None] | None = None,
) -> IngestStats:
    stats = IngestStats()
    store = pipeline.store
    for f in source.files(selection):
        key = f"{source.name.rstrip('/')}/{f.key}"
        if store.ingested(key):
            stats.skipped_files += 1
            continue
        if on_file is not None:
            on_file(f)
        pending: list[Pending] = []
        count = 0

        def flush() -> None:
            nonlocal pending
            outcomes = pipeline.commit(pending)
            stats.stored += sum(o.stored for o in outcomes)
            if on_measurements is not None:
                on_measurements(len(pending))
            pending = []

        with source.open(f) as raw, gzip.open(raw, "rb") as lines:
            for line in lines:
                if len(line) > MAX_LINE_BYTES or not line.strip():
                    stats.invalid += bool(line.strip())
                    continue
                try:
                    m = msgspec.json.decode(line)
                except (msgspec.DecodeError, RecursionError):
                    stats.invalid += 1
                    continue
                if not _usable(m):
                    stats.invalid += 1
                    continue
                pending.append(pipeline.prepare(m, source="ooni", keep_uid=True))
                count += 1
                if len(pending) >= batch:
                    flush()
        if pending:
            flush()
        store.mark_ingested(key, f.size, count)
        stats.files += 1
        stats.measurements += count
    return stats
