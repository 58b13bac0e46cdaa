"""How the ClickHouse backend reaches an engine: one call, ``execute(sql, data) -> bytes``.

The store writes SQL and reads ``FORMAT JSONEachRow`` text; it never knows whether the engine
is a server over HTTP (``HTTPTransport``, what ``clickhouse://`` URLs open) or ClickHouse
embedded in this process (``ChdbTransport``, which the tests use to hold the SQL to today's
engine while a Debian server holds it to 18.16). Plain HTTP rather than a driver: the
``clickhouse-connect`` driver cannot open a session with an 18.x server (it reads a
``system.settings`` column those servers lack), while the HTTP interface is the same on both.
"""

from __future__ import annotations

import re
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Protocol

import httpx

from censorwatch.store.errors import StoreUnavailableError

#: Settings every query runs with, valid on 18.16 and on current servers: 64-bit integers
#: as JSON numbers (offsets), not strings.
COMMON_SETTINGS: dict[str, str] = {"output_format_json_quote_64bit_integers": "0"}
#: Servers before 19.x allow ``LowCardinality`` columns only behind this setting (which later
#: versions no longer know, so it is sent to old servers only).
OLD_SERVER_SETTINGS: dict[str, str] = {"allow_experimental_low_cardinality_type": "1"}
#: The largest answer read (a page of rows, the events detector's state); more is an error.
MAX_RESPONSE_BYTES = 1024 * 1024 * 1024
_FORMAT_TAIL = re.compile(r"\s+FORMAT\s+(\w+)\s*$")


class ClickHouseError(RuntimeError):
    """The engine refused a statement; the message is the engine's own first line."""


class ClickHouseUnreachableError(StoreUnavailableError):
    """No ClickHouse server answers at the URL (after the retries)."""


class Transport(Protocol):
    """One statement in, the engine's answer out (empty for statements without output)."""

    def execute(self, sql: str, data: bytes | None = None) -> bytes: ...

    def describe(self) -> str: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Budget:
    """Time limits of every request and how often a failed connection is retried."""

    connect: float = 5.0
    request: float = 120.0
    attempts: int = 3
    backoff: float = 0.25  # seconds before the second attempt, doubled after each


def _first_line(body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    return text.splitlines()[0][:500] if text else "(empty answer)"


class HTTPTransport:
    """ClickHouse's HTTP interface (port 8123): the statement in the body, settings as query
    parameters, a retry with backoff when the connection fails.

    Retrying an ``INSERT`` is safe here: the measurement table collapses duplicate UIDs, and
    the small tables are read as "any row" or "greatest row" (clickhouse_store.py).
    """

    def __init__(
        self,
        base_url: str,
        *,
        user: str | None = None,
        password: str | None = None,
        budget: Budget = Budget(),
    ) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self.budget = budget
        headers = {"X-ClickHouse-User": user} if user else {}
        if password:
            headers["X-ClickHouse-Key"] = password
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(budget.request, connect=budget.connect),
            trust_env=False,
        )
        self._settings = dict(COMMON_SETTINGS)
        try:
            self.version = self.execute("SELECT version()").decode().strip()
        except BaseException:
            self._client.close()
            raise
        if _major(self.version) < 19:
            self._settings.update(OLD_SERVER_SETTINGS)

    def describe(self) -> str:
        return f"ClickHouse {self.version} at {self.base_url}"

    def execute(self, sql: str, data: bytes | None = None) -> bytes:
        body = sql.encode() if data is None else sql.encode() + b"\n" + data
        delay = self.budget.backoff
        for attempt in range(1, self.budget.attempts + 1):
            try:
                return self._post(body)
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                if attempt == self.budget.attempts:
                    reason = str(exc) or type(exc).__name__
                    raise ClickHouseUnreachableError(
                        f"cannot reach ClickHouse at {self.base_url} ({reason}; {attempt} attempts)"
                    ) from None
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    def _post(self, body: bytes) -> bytes:
        with self._client.stream(
            "POST", self.base_url, params=self._settings, content=body
        ) as response:
            chunks = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > MAX_RESPONSE_BYTES:
                    raise ClickHouseError(f"answer larger than {MAX_RESPONSE_BYTES} bytes")
                chunks.append(chunk)
        answer = b"".join(chunks)
        if response.status_code != 200:
            raise ClickHouseError(_first_line(answer))
        return answer

    def close(self) -> None:
        self._client.close()


class ChdbTransport:
    """Today's ClickHouse engine inside this process (``chdb``), on a data directory of its own.

    chdb keeps one engine per process, so statements are serialised by a lock.
    """

    def __init__(self, path: str) -> None:
        from chdb import session

        self._session = session.Session(path)
        self._lock = threading.Lock()
        for name, value in COMMON_SETTINGS.items():
            self.execute(f"SET {name} = {value}")
        self.version = self.execute("SELECT version()").decode().strip()

    def describe(self) -> str:
        return f"ClickHouse {self.version} (embedded)"

    def execute(self, sql: str, data: bytes | None = None) -> bytes:
        with self._lock:
            if data is None:
                return self._query(sql)
            # Inline data would have to be text; a file carries any bytes (RowBinary blobs).
            with tempfile.NamedTemporaryFile(prefix="insert-", suffix=".data") as fh:
                fh.write(data)
                fh.flush()
                text, found = _FORMAT_TAIL.subn(
                    lambda m: f" FROM INFILE '{fh.name}' FORMAT {m.group(1)}", sql
                )
                if found != 1:
                    raise ClickHouseError(f"an INSERT with data must end in FORMAT: {sql[:80]}")
                return self._query(text)

    def _query(self, sql: str) -> bytes:
        try:
            result = self._session.query(sql, "TabSeparated")
        except Exception as exc:  # chdb raises its own RuntimeError subclasses
            raise ClickHouseError(str(exc).strip().splitlines()[0][:500]) from None
        return result.bytes() if result is not None else b""

    def close(self) -> None:
        with self._lock:
            self._session.close()


def _major(version: str) -> int:
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else 0
