"""``censorwatch targets sync`` against a real HTTP server on 127.0.0.1 serving Citizen Lab's
own lists (../shared/data/test-lists); never the internet."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from censorwatch.cli import app
from censorwatch.targets import testlists
from censorwatch.targets.sync import ListSyncError, sync_lists

Reply = Callable[[BaseHTTPRequestHandler], None]


def _body(data: bytes, *, length: bool = True) -> Reply:
    def reply(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        if length:
            handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    return reply


def _trickle(data: bytes, pause: float) -> Reply:
    def reply(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.end_headers()
        for line in data.splitlines(keepends=True):
            handler.wfile.write(line)
            handler.wfile.flush()
            time.sleep(pause)

    return reply


class Mirror:
    """Files by name on a loopback HTTP server; a reply may be replaced by a hostile one."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.replies: dict[str, Reply] = {name: _body(data) for name, data in files.items()}
        self.asked: list[str] = []
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = self.path.rsplit("/", 1)[-1]
                mirror.asked.append(name)
                reply = mirror.replies.get(name)
                if reply is None:
                    self.send_error(404)
                    return
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    reply(self)  # a client that gave up, as it should, is no error

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/lists/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def real_lists(shared_data: Path) -> dict[str, bytes]:
    root = shared_data / "test-lists"
    names = ["global.csv", "pk.csv", "00-LEGEND-country_codes.csv"]
    return {name: (root / name).read_bytes() for name in names}


@pytest.fixture()
def mirror(real_lists: dict[str, bytes]) -> Iterator[Mirror]:
    served = Mirror(real_lists)
    yield served
    served.close()


def _urls(path: Path) -> list[str]:
    return [t.url for t in testlists.load(path)]


def test_sync_fetches_global_and_a_country_as_the_reader_reads_them(
    mirror: Mirror, shared_data: Path, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        app, ["targets", "sync", "--cc", "PK", "--url", mirror.url, "--dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    for name in ("global.csv", "pk.csv"):
        synced, real = tmp_path / name, shared_data / "test-lists" / name
        assert synced.read_bytes() == real.read_bytes()
        assert _urls(synced) == _urls(real)
        assert f"{synced}: written ({len(_urls(real))} URLs" in result.output
    assert "https://twitter.com/" in _urls(tmp_path / "global.csv")
    again = CliRunner().invoke(
        app, ["targets", "sync", "--cc", "pk", "--url", mirror.url, "--dir", str(tmp_path)]
    )
    assert again.exit_code == 0 and again.output.count(": unchanged (") == 2


def test_sync_all_follows_the_country_legend(mirror: Mirror, tmp_path: Path) -> None:
    results = sync_lists(tmp_path, ["all"], base_url=mirror.url, timeout=5)
    # every country of the legend was asked for; only those with a list (pk here) are kept
    assert len([n for n in mirror.asked if len(n) == len("pk.csv")]) > 200
    assert sorted(r.path.name for r in results) == ["global.csv", "pk.csv"]


def test_sync_goes_to_the_data_folder_by_default(
    mirror: Mirror, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    result = CliRunner().invoke(app, ["targets", "sync", "--url", mirror.url])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "censorwatch" / "test-lists" / "global.csv").is_file()


@pytest.fixture()
def previous(real_lists: dict[str, bytes], tmp_path: Path) -> dict[str, bytes]:
    """Lists synced earlier: older (shorter) copies than what the mirror now serves."""
    old = {}
    for name in ("global.csv", "pk.csv"):
        old[name] = b"".join(real_lists[name].splitlines(keepends=True)[:40])
        (tmp_path / name).write_bytes(old[name])
    return old


def _html(_: dict[str, bytes]) -> Reply:
    return _body(b"<html><body>Rate limit exceeded</body></html>")


def _status_500(_: dict[str, bytes]) -> Reply:
    def reply(handler: BaseHTTPRequestHandler) -> None:
        handler.send_error(500)

    return reply


def _huge_declared(_: dict[str, bytes]) -> Reply:
    def reply(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(1 << 30))
        handler.end_headers()

    return reply


def _huge_streamed(files: dict[str, bytes]) -> Reply:
    row = b"https://example.org/,NEWS,News Media,2024-01-01,test,\n"
    return _body(files["pk.csv"] + row * (3 * 1024 * 1024 // len(row)), length=False)


def _bad_rows(files: dict[str, bytes]) -> Reply:
    header = files["pk.csv"].split(b"\n", 1)[0] + b"\n"
    return _body(header + b"ftp://nowhere/,NEWS\n" * 50 + b"https://ok.example/,NEWS,News,,,\n")


def _header_only(files: dict[str, bytes]) -> Reply:
    return _body(files["pk.csv"].split(b"\n", 1)[0] + b"\n")


@pytest.mark.parametrize(
    ("broken", "why"),
    [
        (_html, "is not 'url,category_code"),
        (_status_500, "HTTP status 500"),
        (_huge_declared, "is over"),
        (_huge_streamed, "more than"),
        (_bad_rows, "bad rows beside"),
        (_header_only, "no URL the probe can measure"),
    ],
    ids=["html", "http-500", "huge-declared", "huge-streamed", "bad-rows", "empty"],
)
def test_a_broken_country_list_keeps_every_previous_list(
    broken: Callable[[dict[str, bytes]], Reply],
    why: str,
    real_lists: dict[str, bytes],
    previous: dict[str, bytes],
    tmp_path: Path,
) -> None:
    mirror = Mirror(real_lists)
    mirror.replies["pk.csv"] = broken(real_lists)
    try:
        with pytest.raises(ListSyncError, match=why):
            sync_lists(
                tmp_path, ["pk"], base_url=mirror.url, timeout=5, max_file_bytes=2 * 1024 * 1024
            )
    finally:
        mirror.close()
    # global.csv was fetched and valid, but a sync is all or nothing
    assert {n: (tmp_path / n).read_bytes() for n in previous} == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(previous)  # no temporary left


@pytest.mark.slow
def test_a_slow_server_is_cut_at_the_deadline_and_nothing_replaced(
    real_lists: dict[str, bytes], previous: dict[str, bytes], tmp_path: Path
) -> None:
    mirror = Mirror(real_lists)
    mirror.replies["global.csv"] = _trickle(real_lists["global.csv"], pause=0.05)
    started = time.monotonic()
    try:
        result = CliRunner().invoke(
            app,
            ["targets", "sync", "--url", mirror.url, "--dir", str(tmp_path),
             "--timeout", "2", "--max-seconds", "1"],
        )  # fmt: skip
    finally:
        mirror.close()
    assert time.monotonic() - started < 4  # the whole list would take ~90 s
    assert result.exit_code == 1
    assert "took more than 1 s" in result.stderr and "left as they were" in result.stderr
    assert {n: (tmp_path / n).read_bytes() for n in previous} == previous


def test_offline_fails_cleanly(previous: dict[str, bytes], tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["targets", "sync", "--url", "http://127.0.0.1:9/lists/", "--dir", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert "cannot connect (offline?)" in result.stderr
    assert {n: (tmp_path / n).read_bytes() for n in previous} == previous


def test_a_bad_country_code_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ListSyncError, match="two-letter"):
        sync_lists(tmp_path, ["pakistan"], base_url="http://127.0.0.1:9/")
