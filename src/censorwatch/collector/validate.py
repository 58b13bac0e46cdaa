"""Checks on everything a probe sends, each failure with a message that says what is wrong.

Nothing here touches disk: a submission is fully checked before any byte of it is written.

JSON is decoded within budgets: size (the caller's body limit), items and depth. The item
budget is enforced *before* decoding, on the bytes, because decoding is where memory goes:
every ``{}`` costs a Python dict (~64 bytes for 2 bytes of input), so 16 MB of ``{},`` would
become a gigabyte. Counting the structural characters ``{ [ , :`` is a C-speed upper bound on
the values and keys a body decodes to; only when that bound is over budget (a large HTML body
full of commas may be) are the characters inside strings taken off (``observations.budget``,
shared with ingest and the analysis).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from starlette.requests import ClientDisconnect, Request

from censorwatch.collector.reports import Report, test_name_key
from censorwatch.model import canonical_json
from censorwatch.observations.budget import count_items, deeper_than
from censorwatch.times import parse_time

MAX_DEPTH = 64
#: Values and keys a body may decode to: real OONI measurements hold a few thousand (the
#: largest in the shared sample about 4,400); this bounds a body's decoded objects to ~25 MB.
MAX_ITEMS = 250_000
MAX_INPUT_CHARS = 8192
EARLIEST = datetime(2012, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(days=1)

# Always applied with ``fullmatch``: ``$`` would let a trailing newline through.
TEST_NAME_RE = re.compile(r"[a-z0-9_]{1,64}")
CC_RE = re.compile(r"[A-Z]{2}")
ASN_RE = re.compile(r"AS[0-9]{1,10}")


class Invalid(ValueError):
    """The submission is refused; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


async def read_body(request: Request, limit: int, what: str = "body") -> bytearray:
    """The request's body, refused (413) as soon as it passes ``limit``; one buffer, never
    joined (a list of chunks joined at the end would hold the body twice). ``what`` names it
    in the refusal."""
    declared = request.headers.get("content-length") or ""
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise Invalid(f"{what} larger than {limit} bytes", status=413)
    body = bytearray()
    try:
        async for chunk in request.stream():
            if len(body) + len(chunk) > limit:
                raise Invalid(f"{what} larger than {limit} bytes", status=413)
            body += chunk
    except ClientDisconnect:  # gone, or closed by the server's read deadline
        raise Invalid(f"the client went away before its {what} was complete") from None
    return body


def decode_json(body: bytes | bytearray | memoryview) -> Any:
    """Strict UTF-8 JSON within the item and depth budgets; anything else is ``Invalid``.

    Over ``MAX_ITEMS`` is refused with 413 before a single object is built.
    """
    items = count_items(body, MAX_ITEMS)
    if items > MAX_ITEMS:
        raise Invalid(f"JSON holds more than {MAX_ITEMS} values and keys ({items})", status=413)
    try:
        value = msgspec.json.decode(body)
    except RecursionError:
        raise Invalid(f"JSON nests deeper than {MAX_DEPTH} levels") from None
    except UnicodeDecodeError as exc:
        raise Invalid(f"body is not UTF-8 (byte {exc.start} of a string)") from None
    except msgspec.DecodeError as exc:
        try:
            bytes(body).decode("utf-8")
        except UnicodeDecodeError as bad:
            raise Invalid(f"body is not UTF-8 (byte {bad.start})") from None
        raise Invalid(f"body is not valid JSON: {exc}") from None
    if deeper_than(value, MAX_DEPTH):
        raise Invalid(f"JSON nests deeper than {MAX_DEPTH} levels")
    try:
        canonical_json(value)
    except (UnicodeEncodeError, msgspec.EncodeError, OverflowError) as exc:
        raise Invalid(f"JSON holds a value that cannot be stored: {exc}") from None
    return value


def _string(obj: dict[str, Any], key: str, pattern: re.Pattern[str] | None = None) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise Invalid(f"{key!r} must be a string, got {type(value).__name__}")
    if pattern is not None and not pattern.fullmatch(value):
        raise Invalid(f"{key!r} is malformed: {value[:80]!r}")
    return value


def _optional_string(obj: dict[str, Any], key: str, limit: int = 256) -> None:
    value = obj.get(key)
    if value is not None and (not isinstance(value, str) or len(value) > limit):
        raise Invalid(f"{key!r} must be a string of at most {limit} characters")


def check_open(body: Any) -> dict[str, str]:
    """The fields of a ``POST /report`` request (OONI's report-open shape)."""
    if not isinstance(body, dict):
        raise Invalid("report request must be a JSON object")
    fmt = body.get("format", "json")
    if fmt != "json":
        raise Invalid(f"unsupported format {fmt!r}; only 'json' is accepted")
    for key in ("software_name", "software_version", "test_version", "data_format_version"):
        _optional_string(body, key)
    start = body.get("test_start_time")
    if start is not None:
        _check_time(start, "test_start_time")
    return {
        "test_name": _string(body, "test_name", TEST_NAME_RE),
        "probe_cc": _string(body, "probe_cc", CC_RE),
        "probe_asn": _string(body, "probe_asn", ASN_RE),
    }


def _check_time(value: Any, key: str, now: datetime | None = None) -> datetime:
    if not isinstance(value, str) or len(value) > 64:
        raise Invalid(f"{key!r} must be a time string")
    try:
        when = parse_time(value)
    except ValueError:
        raise Invalid(f"{key!r} is not a time: {value[:64]!r}") from None
    now = now or datetime.now(UTC)
    if when < EARLIEST or when > now + FUTURE_SLACK:
        raise Invalid(f"{key!r} is outside the plausible range: {value!r}")
    return when


def check_submission(body: Any, report: Report) -> dict[str, Any]:
    """The measurement of a ``POST /report/{id}`` body, checked against its report."""
    if not isinstance(body, dict):
        raise Invalid("submission must be a JSON object")
    fmt = body.get("format")
    if fmt != "json":
        raise Invalid(f"unsupported format {fmt!r}; only 'json' is accepted")
    content = body.get("content")
    if not isinstance(content, dict):
        raise Invalid("'content' must be a JSON object (the measurement)")
    check_measurement(content)
    if test_name_key(content["test_name"]) != report.test_name_key:
        raise Invalid(f"test_name {content['test_name']!r} does not match the report")
    if not report.names(content["test_name"]):
        # Same letters, other underscores (or a report minted before the name was bound):
        # unknown for this test name, so a probe opens a report for exactly its own.
        raise Invalid(
            f"report {report.report_id!r} was not opened for test_name {content['test_name']!r}",
            status=404,
        )
    if content["probe_cc"] != report.probe_cc:
        raise Invalid(f"probe_cc {content['probe_cc']!r} does not match the report")
    if content["probe_asn"] != report.probe_asn:
        raise Invalid(f"probe_asn {content['probe_asn']!r} does not match the report")
    rid = content.get("report_id")
    if rid not in (None, "", report.report_id):
        raise Invalid("'report_id' in the measurement differs from the report it is sent to")
    return content


def check_measurement(content: dict[str, Any]) -> None:
    """The fields every stored measurement must have, with sane types and values."""
    _string(content, "test_name", TEST_NAME_RE)
    _string(content, "probe_cc", CC_RE)
    _string(content, "probe_asn", ASN_RE)
    _check_time(content.get("measurement_start_time"), "measurement_start_time")
    if content.get("test_start_time") is not None:
        _check_time(content["test_start_time"], "test_start_time")
    value = content.get("input")
    if value is not None and (not isinstance(value, str) or len(value) > MAX_INPUT_CHARS):
        raise Invalid(f"'input' must be null or a string of at most {MAX_INPUT_CHARS} characters")
    for key in ("report_id", "probe_ip", "software_name", "software_version", "test_version"):
        _optional_string(content, key)
    keys = content.get("test_keys")
    if keys is not None and not isinstance(keys, dict):
        raise Invalid("'test_keys' must be null or a JSON object")
    annotations = content.get("annotations")
    if annotations is not None and not isinstance(annotations, dict):
        raise Invalid("'annotations' must be null or a JSON object")
