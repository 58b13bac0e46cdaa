"""Where a task's rows go: the store (with ingest's cross-layout dedupe) and Parquet parts.

A DuckDB store is written by the client process alone (a DuckDB file has one writer); a
server store (ClickHouse) by the workers themselves; both through ``write_to_store``, which
records each file as done after its rows. Parquet parts are per task
(``day=YYYY-MM-DD/probe_cc=XX/part-<task>.parquet``), each written to a temporary name and
renamed, so a retried task replaces its own parts instead of adding rows; the task's manifest
entry (``_manifest/<task>.json``) is written after all its parts.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from censorwatch.ingest import dedupe
from censorwatch.reprocess.tasks import TaskResult
from censorwatch.store.base import COLUMNS, PUBLIC_COLUMNS, MeasurementRow, Store

MANIFEST = "_manifest"
#: Columns of a part: the published ones but the country, which its folder names.
PART_COLUMNS = tuple(c for c in PUBLIC_COLUMNS if c != "probe_cc")


def write_to_store(store: Store, result: TaskResult) -> int:
    """Store the rows not stored yet under any name, then record the files; the rows added."""
    added = 0
    if result.rows:
        # ``fresh`` reads only ``measurement_uid`` of each item, which a row has.
        keep, duplicates = dedupe.fresh(store, result.rows)  # type: ignore[arg-type]
        result.stats.duplicates += duplicates
        added = len(store.add(keep))  # type: ignore[arg-type]
    result.stats.stored += added
    for f in result.files:
        store.mark_ingested(f.key, f.size, f.accepted, f.errors)
    return added


def write_parts(out: Path, result: TaskResult) -> None:
    """The task's rows as Parquet parts partitioned by day and country, then its manifest."""
    groups: dict[tuple[str, str], list[MeasurementRow]] = defaultdict(list)
    for row, _ in result.rows:
        groups[(row.measurement_start_time.strftime("%Y-%m-%d"), row.probe_cc)].append(row)
    if groups:
        import duckdb

        from censorwatch.store.schema import MEASUREMENTS

        con = duckdb.connect()  # in memory: only the engine that writes Parquet is wanted
        try:
            con.execute(MEASUREMENTS)
            for (day, cc), rows in sorted(groups.items()):
                folder = out / f"day={day}" / f"probe_cc={cc}"
                folder.mkdir(parents=True, exist_ok=True)
                _write_part(con, folder / f"part-{result.task_id}.parquet", rows)
        finally:
            con.close()
    entry = {
        "task": result.task_id,
        "files": [[f.key, f.accepted, f.errors] for f in result.files],
        "rows": len(result.rows),
    }
    manifest = out / MANIFEST
    manifest.mkdir(parents=True, exist_ok=True)
    _replace(manifest / f"{result.task_id}.json", json.dumps(entry).encode())


_INSERT = "INSERT INTO measurements SELECT " + ", ".join(
    f"unnest(${i + 1})" for i in range(len(COLUMNS))
)


def _write_part(con: Any, path: Path, rows: list[MeasurementRow]) -> None:
    """One part, whole or not at all (a temporary name, then renamed over a retry's)."""
    columns: list[list[Any]] = [[] for _ in COLUMNS]
    for row in rows:
        for i, value in enumerate(row.as_tuple()):
            columns[i].append(value)
    con.execute("DELETE FROM measurements")
    con.execute(_INSERT, columns)
    tmp = path.with_name(f".{path.name}.tmp")
    select = ", ".join(PART_COLUMNS)
    quoted = str(tmp).replace("'", "''")
    con.execute(
        f"COPY (SELECT {select} FROM measurements ORDER BY measurement_uid) "
        f"TO '{quoted}' (FORMAT PARQUET)"
    )
    os.replace(tmp, path)


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def finished_in_manifest(out: Path) -> dict[str, str | None]:
    """The files of every task whose parts are all written, with their errors (None: read to
    their end); a re-run skips them."""
    done: dict[str, str | None] = {}
    folder = out / MANIFEST
    if not folder.is_dir():
        return done
    for entry in folder.glob("*.json"):
        try:
            for key, _, errors in json.loads(entry.read_text())["files"]:
                done[key] = errors
        except (OSError, ValueError, KeyError, TypeError):
            continue  # an unreadable entry: its task runs again and replaces its parts
    return done
