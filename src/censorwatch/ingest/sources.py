"""Where OONI's files come from: a local directory or an S3-compatible bucket.

Both lay files out as OONI's public bucket does (``layouts``: ``raw/``, ``jsonl/``,
``canned/``) and both answer the same three questions (which folders are in this folder,
which files are below it, give me one), so the walk over the selected folders and the
ingester have a single code path. Each source keeps the prefixes it listed, in order
(``listed``), which tells what a selection cost.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import urlsplit

from censorwatch.ingest.layouts import TREES, RawFile, Selection, walk

__all__ = ["DirectorySource", "RawFile", "S3Source", "Selection", "Source", "open_source"]


class SourceReadError(OSError):
    """A file of the source could not be fetched or read (the source's own errors, as one)."""


class Source(Protocol):
    """Files are opened as byte streams whose failures are ``OSError``s."""

    name: str
    listed: list[str]

    def files(self, selection: Selection) -> Iterator[RawFile]: ...

    def open(self, f: RawFile) -> IO[bytes]: ...


class DirectorySource:
    """A local copy of (part of) the bucket; ``root`` holds ``raw/``, ``jsonl/``, ``canned/``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.name = str(self.root)
        self.listed: list[str] = []
        if not any((self.root / top).is_dir() for top in TREES):
            raise FileNotFoundError(
                f"{self.root} has no raw/, jsonl/ or canned/ directory (OONI bucket layout)"
            )

    def children(self, prefix: str) -> list[str]:
        self.listed.append(prefix)
        try:
            with os.scandir(self.root / prefix) as entries:
                return sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def objects(self, prefix: str) -> Iterator[tuple[str, int]]:
        self.listed.append(prefix)
        base = self.root / prefix
        for folder, dirs, names in os.walk(base):
            dirs.sort()
            here = Path(folder)
            for name in sorted(names):
                path = here / name
                yield path.relative_to(self.root).as_posix(), _size(path)

    def files(self, selection: Selection) -> Iterator[RawFile]:
        yield from walk(self, selection)

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
        self.listed: list[str] = []
        config = Config(connect_timeout=10, read_timeout=60, retries={"max_attempts": 3})
        if endpoint_url is None:  # OONI's bucket is public: no credentials needed
            config = config.merge(Config(signature_version=UNSIGNED))
        self._s3 = boto3.client("s3", endpoint_url=endpoint_url, config=config)

    def _key(self, key: str) -> str:
        """The bucket's key of ``key`` (below the source's root); a folder keeps its slash."""
        return f"{self.prefix}/{key}" if self.prefix else key

    def _pages(self, prefix: str, delimiter: str | None = None) -> Iterator[dict]:
        self.listed.append(prefix)
        paginator = self._s3.get_paginator("list_objects_v2")
        kwargs = {"Bucket": self.bucket, "Prefix": self._key(prefix)}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        yield from paginator.paginate(**kwargs)

    def _relative(self, key: str) -> str:
        return key[len(self.prefix) + 1 :] if self.prefix else key

    def children(self, prefix: str) -> list[str]:
        names = []
        for page in self._pages(prefix, "/"):
            for cp in page.get("CommonPrefixes", []):
                names.append(cp["Prefix"].rstrip("/").rsplit("/", 1)[-1])
        return sorted(names)

    def objects(self, prefix: str) -> Iterator[tuple[str, int]]:
        for page in self._pages(prefix):
            for obj in page.get("Contents", []):
                yield self._relative(obj["Key"]), int(obj["Size"])

    def files(self, selection: Selection) -> Iterator[RawFile]:
        yield from walk(self, selection)

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
