"""A local S3-compatible server (moto) on loopback, for the ingest tests of the S3 source."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: The credentials and region the local server accepts; the CLI under test gets them too.
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def moto_command() -> list[str] | None:
    """How to start moto's server here, or None when it is not installed."""
    if importlib.util.find_spec("moto") is not None:
        return [sys.executable, "-m", "moto.server"]
    found = shutil.which("moto_server")
    return [found] if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def local_s3(bucket: str) -> Iterator[tuple[Any, str]]:
    """``(s3 client, endpoint URL)`` of a moto server on 127.0.0.1 holding an empty ``bucket``;
    the server is stopped on exit."""
    import boto3

    port = _free_port()
    server = subprocess.Popen(
        [*(moto_command() or []), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **S3_ENV},
    )  # fmt: skip
    try:
        endpoint = f"http://127.0.0.1:{port}"
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                s3.create_bucket(Bucket=bucket)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield s3, endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)
