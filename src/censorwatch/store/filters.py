"""The one reader of user filters: query parameters and command-line options → ``Filters``.

The API, the explorer, ``censorwatch store export`` and ``censorwatch evidence export`` all
read filters here, so a value means the same everywhere (``9541`` is ``AS9541``, a date is
midnight UTC, a domain is lower case without its final dot) and a bad value gets the same
message, naming the field as the caller spells it (``since`` in a URL, ``--since`` on the
command line).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from censorwatch.store.base import VERDICTS, Filters
from censorwatch.times import naive_utc

#: The filters a user can give, in the order forms and options list them.
FILTER_FIELDS = (
    "report_id",
    "probe_cc",
    "probe_asn",
    "input",
    "domain",
    "test_name",
    "since",
    "until",
    "verdict",
    "method",
    "confirmed",
    "anomaly",
    "failure",
)
#: Filters that may name several values at once (``PK,IR``), as OONI's API lets them; read
#: so only when the caller asks (``lists=True``: the API).
LIST_FIELDS = ("probe_cc", "probe_asn", "domain", "test_name")
MAX_LIST_VALUES = 50
MAX_DOMAIN = 255
MAX_METHOD = 64
MAX_TEST_NAME = 64

_ASN_RE = re.compile(r"(?:AS)?(\d{1,10})", re.IGNORECASE)
_CC_RE = re.compile(r"[A-Za-z]{2}")
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


class FilterError(ValueError):
    """A filter value that cannot be read; ``str()`` is the message to show the user."""


def _text(value: Any) -> str | None:
    """A given value as stripped text; None when absent or empty."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _exact(value: Any) -> str | None:
    """A given value kept as written (an exact match on a measured input); None when empty."""
    return None if value is None or value == "" else str(value)


def parse_when(value: Any, name: str = "since") -> datetime | None:
    """A date (``YYYY-MM-DD``, midnight UTC) or an RFC 3339 time, as naive UTC."""
    text = _text(value)
    if text is None:
        return None
    try:
        return naive_utc(text)
    except ValueError:
        raise FilterError(f"{name} must be YYYY-MM-DD or an RFC 3339 time") from None


def parse_asn(value: Any, name: str = "probe_asn") -> str | None:
    """``AS1234``, ``as1234`` or ``1234`` → ``AS1234``."""
    text = _text(value)
    if text is None:
        return None
    m = _ASN_RE.fullmatch(text)
    if m is None:
        raise FilterError(f"{name} must look like AS1234")
    return f"AS{int(m.group(1))}"


def parse_cc(value: Any, name: str = "probe_cc") -> str | None:
    """A two-letter country code, upper case."""
    text = _text(value)
    if text is None:
        return None
    if _CC_RE.fullmatch(text) is None:
        raise FilterError(f"{name} must be a two-letter country code")
    return text.upper()


def parse_verdict(value: Any, name: str = "verdict") -> str | None:
    text = _text(value)
    if text is None:
        return None
    if text not in VERDICTS:
        raise FilterError(f"{name} must be one of " + ", ".join(VERDICTS))
    return text


def parse_domain(value: Any, name: str = "domain") -> str | None:
    """A host name as the store keeps it: lower case, without the final dot."""
    text = _text(value)
    if text is None:
        return None
    domain = text.lower().rstrip(".")
    if len(domain) > MAX_DOMAIN:
        raise FilterError(f"{name} must be a host name of at most {MAX_DOMAIN} characters")
    return domain or None


def parse_bool(value: Any, name: str = "confirmed") -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    text = _text(value)
    if text is None:
        return None
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise FilterError(f"{name} must be true or false")


def _bounded(value: Any, name: str, limit: int) -> str | None:
    text = _text(value)
    if text is not None and len(text) > limit:
        raise FilterError(f"{name} must be at most {limit} characters")
    return text


def _one_or_many(value: Any, name: str, parse: Any, lists: bool) -> str | tuple[str, ...] | None:
    """One value read by ``parse``; with ``lists``, a comma-separated list of them becomes a
    tuple (duplicates and empty items dropped), or one value again if one is left."""
    if not lists or not isinstance(value, str) or "," not in value:
        return parse(value, name)
    items = [item for item in value.split(",") if item.strip()]
    if len(items) > MAX_LIST_VALUES:
        raise FilterError(f"{name} must list at most {MAX_LIST_VALUES} values")
    parsed = list(dict.fromkeys(v for v in (parse(item, name) for item in items) if v))
    if not parsed:
        return None
    return parsed[0] if len(parsed) == 1 else tuple(parsed)


def _test_name(value: Any, name: str) -> str | None:
    return _bounded(value, name, MAX_TEST_NAME)


def parse_filters(
    values: Mapping[str, Any], names: Mapping[str, str] | None = None, *, lists: bool = False
) -> Filters:
    """``Filters`` from user values keyed by field (absent or empty values do not filter).

    ``names`` gives the spelling of a field in messages (``{"since": "--since"}``); unknown
    keys of ``values`` are ignored. ``lists`` reads ``LIST_FIELDS`` as comma-separated lists
    (OONI's API does; a form or an option keeps one value). Raises ``FilterError`` on the
    first bad value.
    """

    def name(field: str) -> str:
        return (names or {}).get(field, field)

    def many(field: str, parse: Any) -> str | tuple[str, ...] | None:
        return _one_or_many(values.get(field), name(field), parse, lists and field in LIST_FIELDS)

    return Filters(
        report_id=_text(values.get("report_id")),
        probe_cc=many("probe_cc", parse_cc),
        probe_asn=many("probe_asn", parse_asn),
        input=_exact(values.get("input")),
        domain=many("domain", parse_domain),
        test_name=many("test_name", _test_name),
        since=parse_when(values.get("since"), name("since")),
        until=parse_when(values.get("until"), name("until")),
        verdict=parse_verdict(values.get("verdict"), name("verdict")),
        method=_bounded(values.get("method"), name("method"), MAX_METHOD),
        confirmed=parse_bool(values.get("confirmed"), name("confirmed")),
        anomaly=parse_bool(values.get("anomaly"), name("anomaly")),
        failure=parse_bool(values.get("failure"), name("failure")),
    )


def option_names(options: Mapping[str, str]) -> dict[str, str]:
    """Message spellings for command-line options: ``--probe-cc`` unless ``options`` says
    otherwise (``{"probe_cc": "--cc"}``)."""
    spelled = {field: "--" + field.replace("_", "-") for field in FILTER_FIELDS}
    return {**spelled, **options}


def _host(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        host = urlsplit(value if "://" in value else f"//{value}").hostname
    except ValueError:
        return None
    return host.lower().rstrip(".") if host else None


def _among(value: Any, wanted: str | tuple[str, ...]) -> bool:
    return value in wanted if isinstance(wanted, tuple) else value == wanted


def measurement_matches(filters: Filters, measurement: Mapping[str, Any]) -> bool:
    """Whether a raw (OONI) measurement passes the filters a measurement alone can answer.

    Verdict, method, confirmation, anomaly and failure need the analysis: filters on them are
    not applied here.
    """
    f = filters
    m = measurement
    if f.report_id and m.get("report_id") != f.report_id:
        return False
    if f.probe_cc and not _among(str(m.get("probe_cc", "")).upper(), f.probe_cc):
        return False
    if f.probe_asn:
        try:
            asn = parse_asn(m.get("probe_asn"))
        except FilterError:
            return False
        if not _among(asn, f.probe_asn):
            return False
    if f.input and m.get("input") != f.input:
        return False
    if f.domain and not _among(_host(m.get("input")), f.domain):
        return False
    if f.test_name and not _among(m.get("test_name"), f.test_name):
        return False
    if f.since or f.until:
        try:
            when = naive_utc(str(m.get("measurement_start_time")))
        except ValueError:
            return False
        if (f.since and when < f.since) or (f.until and when >= f.until):
            return False
    return True
