"""Defaults every command shares, in one place: where the data lives and where serve listens."""

from __future__ import annotations

from pathlib import Path

#: The derived database, as `serve`, `ingest`, `events --db`, `export` and `evidence` default it
#: (every `--db` takes a store URL, `duckdb:///path/file.duckdb`, or a plain DuckDB file path).
DEFAULT_DB = Path("censorwatch.duckdb")
#: The archive: the durable, append-only truth the database is derived from.
DEFAULT_ARCHIVE = Path("censorwatch-archive")
#: The transparency log lives inside the archive unless told otherwise.
LOG_DIR_NAME = "transparency-log"
#: Per-AS user-population estimates (``censorwatch population load``), read by ``events`` and
#: ``serve`` to say how many people a national block touches.
DEFAULT_POPULATION = Path("censorwatch-population")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024


def log_dir_for(archive: Path, log_dir: Path | None = None) -> Path:
    """The transparency log's directory: ``log_dir`` if given, else ``ARCHIVE/transparency-log``."""
    return log_dir if log_dir is not None else archive / LOG_DIR_NAME
