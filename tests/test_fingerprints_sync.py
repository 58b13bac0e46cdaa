"""`fingerprints sync` against a real HTTP server on 127.0.0.1 (never the internet)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from censorwatch.analysis.fingerprints import FILE_NAMES, Fingerprints
from censorwatch.analysis.sync import SyncError, sync_fingerprints
from censorwatch.cli import app


def _serve(files: dict[str, bytes]) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            name = self.path.rsplit("/", 1)[-1]
            body = files.get(name)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/mirror"


@pytest.fixture()
def upstream_files(shared_data: Path) -> dict[str, bytes]:
    root = shared_data / "fingerprints"
    return {name: next(root.rglob(name)).read_bytes() for name in FILE_NAMES}


@pytest.fixture()
def mirror(upstream_files) -> Iterator[str]:
    server, url = _serve(upstream_files)
    yield url
    server.shutdown()


def test_sync_writes_loadable_files(tmp_path: Path, mirror: str, shared_data: Path):
    written = sync_fingerprints(tmp_path / "fp", source=mirror, timeout=5)
    assert sorted(p.name for p, _ in written) == sorted(FILE_NAMES)
    assert all(count > 100 for _, count in written)
    synced = Fingerprints.load(tmp_path / "fp")
    direct = Fingerprints.load(shared_data / "fingerprints")
    assert synced.counts() == direct.counts()


def test_sync_is_all_or_nothing(tmp_path: Path, upstream_files: dict[str, bytes]):
    partial = dict(upstream_files)
    del partial["false_positive_signatures.json"]
    server, url = _serve(partial)
    try:
        with pytest.raises(SyncError, match="404"):
            sync_fingerprints(tmp_path / "fp", source=url, timeout=5)
    finally:
        server.shutdown()
    assert not (tmp_path / "fp").exists()


def test_sync_refuses_files_that_hold_no_fingerprints(tmp_path: Path):
    server, url = _serve({name: b"<html>not a fingerprint file</html>" for name in FILE_NAMES})
    try:
        with pytest.raises(SyncError, match="no fingerprints"):
            sync_fingerprints(tmp_path / "fp", source=url, timeout=5)
    finally:
        server.shutdown()


def test_sync_command_then_default_location(tmp_path: Path, mirror: str, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.delenv("CENSORWATCH_FINGERPRINTS", raising=False)
    runner = CliRunner()
    result = runner.invoke(app, ["fingerprints", "sync", "--source", mirror, "--timeout", "5"])
    assert result.exit_code == 0, result.output
    assert "fingerprints_http.csv" in result.output
    assert (tmp_path / "censorwatch" / "fingerprints" / "fingerprints_dns.csv").is_file()
    status = runner.invoke(app, ["fingerprints", "status"])
    assert status.exit_code == 0 and "HTTP" in status.output


def test_sync_unreachable_source_fails_cleanly(tmp_path: Path):
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "fingerprints",
            "sync",
            "--source",
            "http://127.0.0.1:9/none",
            "--dest",
            str(tmp_path / "fp"),
            "--timeout",
            "2",
        ],
    )
    assert result.exit_code == 1
    assert "error:" in result.output
    assert not (tmp_path / "fp").exists()
