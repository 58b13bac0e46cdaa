"""Where OONI's raw files come from: a local directory or an S3-compatible bucket.

Both lay files out as OONI's public bucket does, ``raw/YYYYMMDD/HH/CC/TESTNAME/*.jsonl.gz``,
and both answer the same two questions (which files are there, give me one), so the ingester
has a single code path.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import urlsplit

KEY_RE = re.compile(
    r"(?:^|/)raw/(?P<day>\d{8})/(?P<hour>\d{2})/(?P<cc>[A-Z]{2})/(?P<test>[a-z0-9_]+)/"
    r"(?P<name>[^/]+\.jsonl\.gz)$"
)


@dataclass(frozen=True, slots=True)
class RawFile:
    key: str  # path below the source root, e.g. raw/20240217/10/PK/webconnectivity/x.jsonl.gz
    size: int
    hour: datetime  # naive UTC start of the bucket hour
    cc: str
    test: str  # as in the path: OONI writes test names without underscores

    @classmethod
    def from_key(cls, key: str, size: int) -> RawFile | None:
        m = KEY_RE.search(key)
        if m is None:
            return None
        try:
            hour = datetime.strptime(m["day"] + m["hour"], "%Y%m%d%H")
        except ValueError:
            return None
        return cls(key, size, hour, m["cc"], m["test"])


@dataclass(frozen=True, slots=True)
class Selection:
    """Which files to take: bucket hours in [since, until), countries, test names."""

    since: datetime | None = None
    until: datetime | None = None
    ccs: frozenset[str] = frozenset()
    tests: frozenset[str] = frozenset()  # underscore-free, lower case

    def day_wanted(self, day: str) -> bool:
        try:
            start = datetime.strptime(day, "%Y%m%d")
        except ValueError:
            return False
        if self.since is not None and start + timedelta(days=1) <= self.since:
            return False
        return not (self.until is not None and start >= self.until)

    def wants(self, f: RawFile) -> bool:
        if self.since is not None and f.hour + timedelta(hours=1) <= self.since:
            return False
        if self.until is not None and f.hour >= self.until:
            return False
        if self.ccs and f.cc not in self.ccs:
            return False
        return not (self.tests and f.test.replace("_", "") not in self.tests)


class SourceReadError(OSError):
    """A file of the source could not be fetched or read (the source's own errors, as one)."""


class Source(Protocol):
    """Files are opened as byte streams whose failures are ``OSError``s."""

    name: str

    def files(self, selection: Selection) -> Iterator[RawFile]: ...

    def open(self, f: RawFile) -> IO[bytes]: ...


class DirectorySource:
    """A local copy of (part of) the bucket; ``root`` holds ``raw/``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.name = str(self.root)
        if not (self.root / "raw").is_dir():
            raise FileNotFoundError(f"{self.root} has no raw/ directory (OONI bucket layout)")

    def files(self, selection: Selection) -> Iterator[RawFile]:
        raw = self.root / "raw"
        for day in sorted(p.name for p in raw.iterdir() if p.is_dir()):
            if not selection.day_wanted(day):
                continue
            for path in sorted((raw / day).glob("*/*/*/*.jsonl.gz")):
                f = RawFile.from_key(path.relative_to(self.root).as_posix(), _size(path))
                if f is not None and selection.wants(f):
                    yield f

    def open(self, f: RawFile) -> IO[bytes]:
        return open(self.root / f.key, "rb")


def _size(path: Path) -> int:
    """The file's size; 0 when it cannot be looked at (a dangling link): opening it then fails
    and names the file, instead of the listing failing for every file."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


class S3Source:
    """``s3://bucket/prefix`` on any S3-compatible server (``endpoint_url`` for non-AWS)."""

    def __init__(self, url: str, *, endpoint_url: str | None = None) -> None:
        import boto3
        from botocore import UNSIGNED
        from botocore.config import Config

        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError("S3 sources look like s3://bucket/prefix")
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self.name = url
        config = Config(connect_timeout=10, read_timeout=60, retries={"max_attempts": 3})
        if endpoint_url is None:  # OONI's bucket is public: no credentials needed
            config = config.merge(Config(signature_version=UNSIGNED))
        self._s3 = boto3.client("s3", endpoint_url=endpoint_url, config=config)

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def _list(self, prefix: str, delimiter: str | None = None) -> Iterator[dict]:
        paginator = self._s3.get_paginator("list_objects_v2")
        kwargs = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        yield from paginator.paginate(**kwargs)

    def files(self, selection: Selection) -> Iterator[RawFile]:
        days: list[str] = []
        for page in self._list(self._key("raw") + "/", "/"):
            for cp in page.get("CommonPrefixes", []):
                days.append(cp["Prefix"].rstrip("/").rsplit("/", 1)[-1])
        for day in sorted(days):
            if not selection.day_wanted(day):
                continue
            found = []
            for page in self._list(self._key("raw", day) + "/"):
                for obj in page.get("Contents", []):
                    key = obj["Key"][len(self.prefix) + 1 :] if self.prefix else obj["Key"]
                    f = RawFile.from_key(key, int(obj["Size"]))
                    if f is not None and selection.wants(f):
                        found.append(f)
            yield from sorted(found, key=lambda f: f.key)

    def open(self, f: RawFile) -> IO[bytes]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            body = self._s3.get_object(Bucket=self.bucket, Key=self._key(f.key))["Body"]
        except (BotoCoreError, ClientError) as exc:
            raise SourceReadError(str(exc)) from exc
        return _S3Body(body)  # type: ignore[return-value]


class _S3Body:
    """An object's body whose read failures (a reset, a timeout, a short body) are
    ``SourceReadError``s, so a failing read names the file and the run goes on."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def read(self, size: int = -1) -> bytes:
        from botocore.exceptions import BotoCoreError

        try:
            return self._body.read(size if size >= 0 else None)
        except (BotoCoreError, OSError) as exc:
            raise SourceReadError(str(exc)) from exc

    def close(self) -> None:
        self._body.close()

    def __enter__(self) -> _S3Body:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_source(spec: str, *, endpoint_url: str | None = None) -> Source:
    if spec.startswith("s3://"):
        return S3Source(spec, endpoint_url=endpoint_url)
    return DirectorySource(spec)
