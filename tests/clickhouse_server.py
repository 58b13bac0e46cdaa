"""A real ClickHouse server for the tests: Debian's ``clickhouse-server`` (18.16) on loopback.

One server per test session, with its own config, data and log directories under a temporary
directory and free ports on 127.0.0.1 (never the system service's 8123/9000). Each test asks
``clickhouse_url`` for a database of its own. Without the binary the tests skip, except in CI
(``CI=true``), which must run them.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

#: Where Debian puts the server (``/usr/sbin`` is not on every user's PATH); newer packages
#: ship one ``clickhouse`` binary run as ``clickhouse server``.
SERVER_COMMANDS: tuple[tuple[str, ...], ...] = (
    ("clickhouse-server",),
    ("/usr/sbin/clickhouse-server",),
    ("clickhouse", "server"),
)
START_TIMEOUT = 60.0

_CONFIG = """<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>{root}/log/server.log</log>
        <errorlog>{root}/log/error.log</errorlog>
        <console>0</console>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>{http_port}</http_port>
    <tcp_port>{tcp_port}</tcp_port>
    <path>{root}/data/</path>
    <tmp_path>{root}/tmp/</tmp_path>
    <user_files_path>{root}/user_files/</user_files_path>
    <format_schema_path>{root}/format_schemas/</format_schema_path>
    <users_config>{root}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mark_cache_size>268435456</mark_cache_size>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <max_concurrent_queries>64</max_concurrent_queries>
    <keep_alive_timeout>30</keep_alive_timeout>
</yandex>
"""

_USERS = """<?xml version="1.0"?>
<yandex>
    <profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas><default><interval>
        <duration>3600</duration><queries>0</queries><errors>0</errors>
        <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time>
    </interval></default></quotas>
</yandex>
"""


def server_command() -> list[str] | None:
    for command in SERVER_COMMANDS:
        found = shutil.which(command[0])
        if found is not None:
            return [found, *command[1:]]
    return None


def _free_ports(n: int) -> list[int]:
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class ClickHouseServer:
    """A running server: its HTTP address and fresh database names for tests."""

    http_port: int
    process: subprocess.Popen[bytes]
    root: Path

    def __post_init__(self) -> None:
        self._names = itertools.count(1)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/"

    def query(self, sql: str) -> str:
        r = httpx.post(self.base_url, content=sql.encode(), timeout=30)
        assert r.status_code == 200, r.text
        return r.text

    def database(self) -> str:
        """A database name no test has used yet (the store creates it)."""
        return f"t{os.getpid()}_{next(self._names)}"

    def url(self, database: str) -> str:
        return f"clickhouse://127.0.0.1:{self.http_port}/{database}"

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


def start_server(root: Path) -> ClickHouseServer:
    command = server_command()
    if command is None:
        message = "clickhouse-server is not installed (bash scripts/run.sh setup installs it)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI must run the ClickHouse tests, but {message}")
        pytest.skip(message)
    for sub in ("log", "data", "tmp", "user_files", "format_schemas"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    http_port, tcp_port = _free_ports(2)
    (root / "users.xml").write_text(_USERS)
    config = root / "config.xml"
    config.write_text(_CONFIG.format(root=root, http_port=http_port, tcp_port=tcp_port))
    with open(root / "log" / "stdout.log", "wb") as out:
        process = subprocess.Popen(
            [*command, f"--config-file={config}"],
            cwd=root,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, killed as one at the end
        )
    server = ClickHouseServer(http_port, process, root)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            logs = "".join(
                p.read_text(errors="replace")[-1500:] for p in sorted((root / "log").glob("*"))
            )
            pytest.fail(f"clickhouse-server exited with {process.returncode}: {logs}")
        try:
            if httpx.get(server.base_url + "ping", timeout=1).text == "Ok.\n":
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop()
    pytest.fail(f"clickhouse-server did not answer /ping within {START_TIMEOUT:.0f}s")


@pytest.fixture(scope="session")
def clickhouse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseServer]:
    """One ClickHouse 18.16 server for the whole test session."""
    server = start_server(tmp_path_factory.mktemp("clickhouse"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def clickhouse_url(clickhouse_server: ClickHouseServer) -> str:
    """``clickhouse://127.0.0.1:PORT/DB`` of a database this test alone uses."""
    return clickhouse_server.url(clickhouse_server.database())
