"""Storage: one interface (``Store``) with DuckDB behind it; see docs/collector.md."""

from __future__ import annotations

from pathlib import Path

from censorwatch.store.base import ArchiveLocation, Filters, MeasurementRow, Store

__all__ = ["ArchiveLocation", "Filters", "MeasurementRow", "Store", "open_store"]


def open_store(db: str | Path, *, read_only: bool = False) -> Store:
    """Open the store named by ``db`` (a DuckDB file path today)."""
    from censorwatch.store.duckdb_store import DuckDBStore

    return DuckDBStore(db, read_only=read_only)
