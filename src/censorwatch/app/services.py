"""Building the services from settings: the analyzer, the pipeline, and what ``serve`` runs."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from censorwatch.collector.derive import Analyzer


def build_analyzer(fingerprints: Path | None, asn_db: Path | None) -> Analyzer:
    """The analysis function the collector, ingest and rebuild run, from command-line options."""
    from censorwatch.collector.derive import load_analyzer

    fps = None
    if fingerprints is not None:
        from censorwatch.analysis.fingerprints import Fingerprints

        fps = Fingerprints.load(fingerprints)
    plan = None
    if asn_db is not None:
        from censorwatch.netinfo import address_plan

        plan = address_plan(asn_db)
    return load_analyzer(fps, plan)


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
