"""Building the services from settings: the analyzer, the store, the log, the pipeline over them
and the collector ``serve`` runs. ``serve``, ``ingest`` and ``store rebuild`` all build them here,
so every road into the archive commits the same way (archive, then log, then database)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from censorwatch.app.settings import DEFAULT_MAX_BODY_BYTES, log_dir_for

if TYPE_CHECKING:
    from censorwatch.collector.derive import Analyzer
    from censorwatch.collector.pipeline import Pipeline
    from censorwatch.collector.service import Collector
    from censorwatch.evidence.log import TransparencyLog
    from censorwatch.store import Store


def build_analyzer(fingerprints: Path | None, asn_db: Path | None) -> Analyzer:
    """The analysis function the collector, ingest and rebuild run, from command-line options."""
    from censorwatch.collector.derive import load_analyzer

    fps = None
    if fingerprints is not None:
        from censorwatch.analysis.fingerprints import Fingerprints

        fps = Fingerprints.load(fingerprints)
    from censorwatch.geo import ip_database

    # A .mmdb file, a directory of dated ones, an iptoasn TSV or an address plan; without
    # --asn-db, CENSORWATCH_ASN_DB (each measurement then uses the file valid on its day).
    return load_analyzer(fps, ip_database(asn_db))


@dataclass
class Services:
    """What one writer process runs: the store, the transparency log, the pipeline that
    commits to archive + log + store, and (for ``serve``) the collector in front of it."""

    store: Store
    pipeline: Pipeline
    log: TransparencyLog | None = None
    collector: Collector | None = None
    _closed: bool = field(default=False, repr=False)

    def routers(self) -> list[Any]:
        """Routes beside the application's own: the log's, when there is a log."""
        if self.log is None:
            return []
        from censorwatch.evidence.api import log_router

        return [log_router(self.log)]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.pipeline.close()
        finally:
            try:
                if self.log is not None:
                    self.log.close()
            finally:
                self.store.close()

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_services(
    db: str | os.PathLike[str],
    archive: Path,
    *,
    fingerprints: Path | None = None,
    asn_db: Path | None = None,
    log_dir: Path | None = None,
    writer: bool = True,
    collector: bool = False,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> Services:
    """Open the store named by ``db`` (a store URL), the archive, and, for a ``writer``, the
    transparency log (``log_dir`` or ``ARCHIVE/transparency-log``; one writing process per
    log: ``LogBusyError`` when another holds it). ``collector`` adds the collector ``serve``
    runs. Nothing is accepted before ``Pipeline.recover`` (the first commit runs it)."""
    from censorwatch.collector.archive import Archive
    from censorwatch.collector.pipeline import Pipeline
    from censorwatch.signing.signatures import verify_signature
    from censorwatch.store import open_store

    analyzer = build_analyzer(fingerprints, asn_db)
    store = open_store(db)
    log = None
    try:
        if writer:
            from censorwatch.evidence.log import TransparencyLog

            log = TransparencyLog(log_dir_for(archive, log_dir))
        pipeline = Pipeline(
            Archive(archive),
            store,
            analyzer=analyzer,
            verify_signature=verify_signature,
            log=log,
        )
        front = None
        if collector and writer:
            from censorwatch.collector.reports import load_key
            from censorwatch.collector.service import Collector

            front = Collector(pipeline, load_key(archive), max_body=max_body_bytes)
    except BaseException:
        if log is not None:
            log.close()
        store.close()
        raise
    return Services(store, pipeline, log, front)


def listen_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket; created with IPPROTO_TCP so asyncio sets TCP_NODELAY on the
    connections it accepts (without it, small responses wait for delayed ACKs: ~40 ms each)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
