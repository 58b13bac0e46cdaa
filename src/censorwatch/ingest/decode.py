"""One JSONL line (or one postcan submission) of an OONI file → a measurement, or the reason
it is not one.

The line's budget is checked on its bytes, before a Python object is built where building is
what costs: the number of JSON values (a 16 MiB line of ``{}`` would be millions of dicts).
Nesting is bounded by the decoder's recursion guard, then by ``Limits.max_depth`` (the
collector's rule for a submission) on the decoded value, whose size the value count bounds.
Both measures are ``observations.budget``'s, as the collector's and the analysis's are.
Every failure is a short reason for the error report; nothing here raises.
"""

from __future__ import annotations

from typing import Any

import msgspec

from censorwatch.ingest.lines import Limits
from censorwatch.observations.budget import count_items, deeper_than
from censorwatch.times import parse_time

REQUIRED = ("test_name", "probe_cc", "probe_asn", "measurement_start_time")

_decode = msgspec.json.Decoder().decode


def decode_measurement(line: bytes, limits: Limits) -> dict[str, Any] | str:
    """The measurement on ``line``, or why it is not one (a message naming the fault)."""
    value = _decode_object(line, limits)
    if isinstance(value, str):
        return value
    return _missing(value) or value


def decode_post(data: bytes, limits: Limits) -> dict[str, Any] | str:
    """The measurement in a probe's submission as a postcan keeps it (``{"format": "json",
    "content": {...}}``), or why there is none. A YAML submission is named, not read."""
    value = _decode_object(data, limits)
    if isinstance(value, str):
        return value
    fmt = value.get("format")
    if isinstance(fmt, str) and fmt.lower() == "yaml":
        return "a YAML submission: not supported (not read)"
    if fmt != "json":
        return f"not a submission: format is {fmt!r}, not 'json'"
    content = value.get("content")
    if not isinstance(content, dict):
        return "not a submission: no content object"
    return _missing(content) or content


def _decode_object(data: bytes, limits: Limits) -> dict[str, Any] | str:
    """The JSON object in ``data`` within the budgets, or why it is not one."""
    if count_items(data, limits.max_line_values) > limits.max_line_values:
        return f"more than {limits.max_line_values} JSON values"
    try:
        value = _decode(data)
    except UnicodeDecodeError:
        return _not_utf8(data)
    except RecursionError:
        return f"JSON nests deeper than {limits.max_depth} levels"
    except msgspec.DecodeError as exc:
        if "UTF-8" in str(exc):  # msgspec 0.23 and later raise DecodeError for bad UTF-8
            return _not_utf8(data)
        return f"invalid JSON: {exc}"
    if not isinstance(value, dict):
        return f"not a JSON object ({type(value).__name__})"
    if deeper_than(value, limits.max_depth):
        return f"JSON nests deeper than {limits.max_depth} levels"
    return value


def _not_utf8(line: bytes) -> str:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8 (byte {exc.start}: 0x{line[exc.start]:02x})"
    return "not UTF-8"


def _missing(m: dict[str, Any]) -> str | None:
    """Why ``m`` cannot be filed as a measurement, or None when it can."""
    for key in REQUIRED:
        if not isinstance(m.get(key), str):
            return f"not a measurement: no {key} string"
    try:
        parse_time(m["measurement_start_time"])
    except ValueError:
        return "not a measurement: measurement_start_time is not a time"
    return None
