"""Text out of raw measurement bytes: page titles, bodies, OONI's base64 values, headers.

One behaviour each, shared by the probe (which writes titles into the control's answer), the
observations the analysis reads and the explorer's step tables, so all of them show the same
title and the same header values for one response. Every function is bounded in the bytes it
looks at and linear in time: bodies come from hostile servers (huge, unterminated tags).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from typing import Any

TITLE_WINDOW = 64 * 1024  # characters at the start of a page searched for its title
MAX_TITLE = 200  # characters of a title kept, after whitespace is collapsed
_MAX_ATTRIBUTES = 512  # characters of attributes allowed inside an opening <title ...> tag
_UTF8_MAX = 4  # bytes one character takes at most in UTF-8

# Both patterns are bounded at every position they are tried, so a search is linear in the
# window however many unterminated "<title" a page repeats.
_TITLE_OPEN = re.compile(rf"<title(?:[\s/][^>]{{0,{_MAX_ATTRIBUTES}}})?>", re.IGNORECASE)
_TITLE_CLOSE = re.compile(r"</title", re.IGNORECASE)


def decode_body(raw: bytes) -> str:
    """Bytes of a page as text: UTF-8 when valid, else Latin-1 (never invents U+FFFD)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _decode_prefix(raw: bytes, limit: int) -> str:
    """``decode_body`` of a page's first ``limit`` bytes, where a UTF-8 character cut by the
    limit is dropped rather than turning the whole prefix into Latin-1."""
    if len(raw) <= limit:
        return decode_body(raw)
    head = raw[:limit]
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.end == len(head) and error.start >= len(head) - (_UTF8_MAX - 1):
            return head[: error.start].decode("utf-8")  # valid up to the cut character
        return head.decode("latin-1")


def maybe_binary(value: Any) -> str | None:
    """A body or header value as text: a plain string, or OONI's ``{"format": "base64",
    "data": ...}`` decoded (``decode_body``); None for anything else or broken base64."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and value.get("format") == "base64":
        data = value.get("data")
        if not isinstance(data, str):
            return None
        try:
            raw = base64.b64decode(data + "=" * (-len(data) % 4))
        except (ValueError, binascii.Error):
            return None
        return decode_body(raw)
    return None


def as_text(body: Any) -> str:
    """Any body a caller holds (bytes, text, OONI's base64 object, None) as text; "" when none."""
    if isinstance(body, str):
        return body
    if isinstance(body, bytes | bytearray | memoryview):
        return decode_body(bytes(body))
    return maybe_binary(body) or ""


def title_of(body: str | bytes | None) -> str:
    """A page's title: the text of its first ``<title>`` element, whitespace collapsed, at most
    ``MAX_TITLE`` characters; "" when there is none.

    Only the first ``TITLE_WINDOW`` characters are searched, and the element must close within
    them. Bytes are read as ``decode_body`` reads them (at most 4 bytes a character), so the
    probe, which holds bytes, and the analysis, which holds the decoded text of the same body,
    find the same title.
    """
    if isinstance(body, bytes | bytearray | memoryview):
        text = _decode_prefix(bytes(body), TITLE_WINDOW * _UTF8_MAX)
    elif isinstance(body, str):
        text = body
    else:
        return ""
    if len(text) > TITLE_WINDOW:
        text = text[:TITLE_WINDOW]
    opening = _TITLE_OPEN.search(text)
    if opening is None:
        return ""
    closing = _TITLE_CLOSE.search(text, opening.end())
    if closing is None:
        return ""
    return " ".join(text[opening.end() : closing.start()].split())[:MAX_TITLE]


def _add_header(out: dict[str, list[str]], name: Any, value: Any) -> None:
    if not isinstance(name, str):
        return
    if value.__class__ is str:  # the usual case, taken first (every response's headers)
        key = name if name.islower() else name.lower()
        values = out.get(key)
        if values is None:
            out[key] = [value]
        else:
            values.append(value)
        return
    for item in value if isinstance(value, list) else (value,):
        text = maybe_binary(item)
        if text is not None:
            key = name if name.islower() else name.lower()
            values = out.get(key)
            if values is None:
                out[key] = [text]
            else:
                values.append(text)


def normalize_headers(headers: Mapping[str, Any] | Iterable[Any] | None) -> dict[str, list[str]]:
    """Response headers as lower-case name -> list of text values, from OONI's ``headers``
    (a mapping of a value or a list of values) or ``headers_list`` (``[name, value]`` pairs);
    values may be base64 objects; entries of any other shape are skipped."""
    out: dict[str, list[str]] = {}
    if not headers:
        return out
    if isinstance(headers, Mapping):
        for name, value in headers.items():
            _add_header(out, name, value)
        return out
    if isinstance(headers, str | bytes):
        return out
    for item in headers:
        if isinstance(item, list | tuple) and len(item) == 2:
            _add_header(out, item[0], item[1])
    return out
