"""Is the probe's page the control's page? Status, size, title and uncommon headers compared.

Used on the final plain-HTTP page (``http.check_final_page``) and to clear a DNS answer that
differs from the control's when the page fetched through it is the same (``dns``).
"""

from __future__ import annotations

from censorwatch.analysis.context import WebAnalysis
from censorwatch.observations.builder import HttpObs
from censorwatch.observations.text import title_of

#: A body this much smaller or larger than the control's (min/max of the two) differs.
BODY_PROPORTION_DIFFERS = 0.7
#: ... and this much is a strong difference on its own when the status is the same.
BODY_PROPORTION_STRONG = 0.3

#: Headers every server sends in its own way: not a sign of a different server.
UNCOMMON_HEADER_IGNORE = frozenset(
    {
        "date",
        "content-type",
        "server",
        "cache-control",
        "vary",
        "set-cookie",
        "location",
        "expires",
        "x-powered-by",
        "content-encoding",
        "last-modified",
        "accept-ranges",
        "pragma",
        "x-frame-options",
        "etag",
        "x-content-type-options",
        "age",
        "via",
        "p3p",
        "x-xss-protection",
        "content-language",
        "cf-ray",
        "strict-transport-security",
        "link",
        "x-varnish",
        "content-length",
        "connection",
        "transfer-encoding",
        "alt-svc",
        "keep-alive",
        "expect-ct",
        "nel",
        "report-to",
        "referrer-policy",
    }
)


def content_diff(a: WebAnalysis, h: HttpObs) -> list[str] | None:
    """Strong evidence that the page differs from the control's, or None."""
    c = a.ctrl
    if not c.http_ok or h.status <= 0:
        return None
    diffs: list[str] = []
    status_diff = h.status != c.http_status
    if status_diff:
        diffs.append(f"status {h.status} vs control {c.http_status}")
    proportion = _body_proportion(h, c.http_body_length)
    if proportion is not None and proportion < BODY_PROPORTION_DIFFERS:
        diffs.append(f"body {h.body_length} vs control {c.http_body_length} bytes")
    title = title_of(h.body or "")
    title_diff = bool(title and c.http_title and title.lower() != c.http_title.lower())
    if title_diff:
        diffs.append(f"title {title!r} vs control {c.http_title!r}")
    strong = (
        status_diff
        and (title_diff or (proportion is not None and proportion < BODY_PROPORTION_DIFFERS))
        and not (300 <= h.status < 400 and 300 <= c.http_status < 400)
    ) or (
        not status_diff
        and proportion is not None
        and proportion < BODY_PROPORTION_STRONG
        and title_diff
    )
    if not strong:
        return None
    uncommon = {k for k in h.headers if k not in UNCOMMON_HEADER_IGNORE}
    ctrl_uncommon = {k for k in c.http_headers if k not in UNCOMMON_HEADER_IGNORE}
    if c.http_headers and uncommon != ctrl_uncommon:
        diffs.append("uncommon headers differ")
    return diffs


def _body_proportion(h: HttpObs, ctrl_length: int) -> float | None:
    """The smaller body's length over the larger's, when both lengths are known."""
    if (
        not h.truncated
        and h.body_length >= 0
        and ctrl_length > 0
        and (h.body_length < ctrl_length or h.body_length > 0)
    ):
        big = max(h.body_length, ctrl_length)
        return min(h.body_length, ctrl_length) / big if big else 1.0
    return None
