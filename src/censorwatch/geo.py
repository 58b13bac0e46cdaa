"""IP facts from MaxMind-format databases, each measurement judged by the file valid at its date.

An address's AS changes hands over the years, so a measurement from 2019 must be read with the
routing facts of 2019, not today's. Like OONI's pipeline, censorwatch keeps dated database
files side by side and answers each lookup from the one valid on the measurement's day:

**the newest file dated on or before the measurement's day; when every file is newer, the
oldest.** (A measurement without a readable start time is judged by today's file.)

Files read (``.mmdb``, decompressed), by their record fields rather than their names:

* GeoLite2 (``GeoLite2-ASN.mmdb``, ``GeoLite2-Country.mmdb``) and DB-IP Lite
  (``dbip-asn-lite-YYYY-MM.mmdb``, ``dbip-country-lite-YYYY-MM.mmdb``): ``autonomous_system_number``
  and ``autonomous_system_organization``, or ``country.iso_code``;
* OONI's ``YYYYMMDD-ip2country_as.mmdb`` (ooni/historical-geoip): both in one record, plus
  ``autonomous_system_name`` and ``autonomous_system_country``.

A file is dated by the date in its name (``YYYYMMDD``, ``YYYY-MM-DD`` or ``YYYY-MM``, the first
of the month), else by its metadata's build time. Files whose names differ only in the date
form one *series* (``dbip-asn-lite-*.mmdb``); the dated choice is made per series, and the
chosen files answer together (AS facts and country may come from different series).

:func:`ip_database` is the one door for ``--asn-db`` / ``CENSORWATCH_ASN_DB``: a ``.mmdb``
file, a directory of them, or the formats of :mod:`censorwatch.netinfo` (iptoasn TSV, the
testbed's address plan). All answer as an :class:`~censorwatch.netinfo.AddressPlan`, and
``plan.at(measurement_start_time)`` gives the facts valid then.

:mod:`censorwatch.app.geo_sync` fetches current free databases (``censorwatch geo sync``).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from censorwatch.netinfo import ASN_DB_ENV, AddressPlan, ASInfo, address_plan, parse_address
from censorwatch.times import parse_time, utcnow

if TYPE_CHECKING:
    import maxminddb

#: Every MaxMind DB file ends with its metadata, introduced by this marker (the format's spec).
METADATA_MARKER = b"\xab\xcd\xefMaxMind.com"
#: The metadata section is at most 128 KiB from the end of the file (the format's spec).
_METADATA_WINDOW = 128 * 1024
#: Records read from a file when it is opened: enough to see what it holds and to meet a
#: corrupt search tree or data section before any measurement does.
_SAMPLE_RECORDS = 512

ASN_FIELD = "asn"
COUNTRY_FIELD = "country"


class GeoDatabaseError(ValueError):
    """A database file that cannot be used, with the file's name and the reason."""


# -- one file ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IPFacts:
    """What the databases say about one address (empty strings and 0 for unknown)."""

    asn: int = 0
    as_org_name: str = ""
    cc: str = ""
    source: str = ""  # the file(s) that answered


@dataclass(eq=False)
class DatabaseFile:
    """One opened, checked MaxMind-format file and the day it is valid from."""

    path: Path
    day: date
    series: str
    database_type: str
    fields: frozenset[str]  # ASN_FIELD and/or COUNTRY_FIELD: what its records carry
    reader: maxminddb.Reader

    def facts(self, addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> IPFacts | None:
        """This file's record for ``addr``; None when it has none (or is IPv4-only and
        ``addr`` is IPv6). A file corrupt past what opening it checked raises
        :class:`GeoDatabaseError`."""
        import maxminddb

        try:
            record = self.reader.get(addr)
        except ValueError as exc:
            if isinstance(exc, maxminddb.InvalidDatabaseError):
                raise GeoDatabaseError(f"{self.path}: corrupt database: {exc}") from None
            return None  # an IPv6 address in an IPv4-only file
        if not isinstance(record, dict):
            return None
        asn, org, cc = _read_record(record)
        if not (asn or cc):
            return None
        return IPFacts(asn, org, cc, self.path.name)


def _read_record(record: dict[str, Any]) -> tuple[int, str, str]:
    """(AS number, AS organisation, country) from a GeoLite2, DB-IP or OONI record."""
    asn = record.get("autonomous_system_number")
    org = record.get("autonomous_system_organization")
    cc = ""
    for key in ("country", "registered_country"):
        place = record.get(key)
        code = place.get("iso_code") if isinstance(place, dict) else None
        if isinstance(code, str) and code:
            cc = code
            break
    return (
        asn if isinstance(asn, int) and asn > 0 else 0,
        org if isinstance(org, str) else "",
        cc,
    )


_DAY_IN_NAME = re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})(?!\d)")
_MONTH_IN_NAME = re.compile(r"(?<!\d)(\d{4})-(\d{2})(?:-(\d{2}))?(?!\d)")


def date_in_name(name: str) -> tuple[date, str] | None:
    """The date a file name carries and the name's series (the date replaced by ``*``):
    ``20240201-ip2country_as.mmdb`` → (2024-02-01, ``*-ip2country_as.mmdb``),
    ``dbip-asn-lite-2024-02.mmdb`` → (2024-02-01, ``dbip-asn-lite-*.mmdb``)."""
    for pattern in (_MONTH_IN_NAME, _DAY_IN_NAME):
        for match in pattern.finditer(name):
            year, month, day = match.group(1), match.group(2), match.group(3) or "01"
            try:
                found = date(int(year), int(month), int(day))
            except ValueError:
                continue
            return found, name[: match.start()] + "*" + name[match.end() :]
    return None


def looks_like_mmdb(path: Path) -> bool:
    """A ``.mmdb`` name, or the MaxMind metadata marker near the end of the file."""
    if path.suffix.lower() == ".mmdb":
        return True
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, path.stat().st_size - _METADATA_WINDOW))
            return METADATA_MARKER in fh.read(_METADATA_WINDOW)
    except OSError:
        return False


def open_mmdb(
    source: str | os.PathLike[str] | bytes, *, name: str | None = None, expect: Iterable[str] = ()
) -> DatabaseFile:
    """Open and check one MaxMind-format database (a path, or the file's bytes).

    Checked before it is used: the metadata (format version 2, IP version 4 or 6, a search
    tree), then the first records, which must carry an AS number or a country, and every
    field named in ``expect``. Raises :class:`GeoDatabaseError` naming the file otherwise.
    """
    import io

    import maxminddb

    label = name or (str(source) if not isinstance(source, bytes) else "<download>")
    try:
        if isinstance(source, bytes):
            reader = maxminddb.open_database(io.BytesIO(source), maxminddb.MODE_FD)
        else:
            reader = maxminddb.open_database(os.fspath(source))
    except FileNotFoundError:
        raise GeoDatabaseError(f"{label}: no such file") from None
    except (OSError, ValueError) as exc:  # InvalidDatabaseError is a RuntimeError subclass
        raise GeoDatabaseError(f"{label}: not a readable MaxMind DB file ({exc})") from None
    except RuntimeError as exc:
        raise GeoDatabaseError(
            f"{label}: not a MaxMind DB file, or truncated or corrupt ({exc})"
        ) from None
    try:
        meta = reader.metadata()
        if meta.binary_format_major_version != 2 or meta.ip_version not in (4, 6):
            raise GeoDatabaseError(
                f"{label}: unsupported MaxMind DB format (version "
                f"{meta.binary_format_major_version}, IPv{meta.ip_version})"
            )
        if meta.node_count <= 0:
            raise GeoDatabaseError(f"{label}: the database has no search tree")
        fields = _sample_fields(reader, label)
        missing = sorted(set(expect) - fields)
        if not fields or missing:
            what = " and ".join(missing) if missing else "AS number or country"
            raise GeoDatabaseError(
                f"{label}: database {meta.database_type!r} holds no {what} records "
                f"(expected autonomous_system_number / country.iso_code)"
            )
    except BaseException:
        reader.close()
        raise
    base = Path(name or (label if not isinstance(source, bytes) else "download.mmdb")).name
    dated = date_in_name(base)
    if dated is not None:
        day, series = dated
    else:
        day, series = datetime.fromtimestamp(meta.build_epoch, UTC).date(), base
    return DatabaseFile(
        Path(label), day, series, str(meta.database_type or ""), frozenset(fields), reader
    )


def _sample_fields(reader: maxminddb.Reader, label: str) -> set[str]:
    """Which facts the first records carry; walking them meets a corrupt tree or data early."""
    fields: set[str] = set()
    try:
        for count, (_network, record) in enumerate(reader, 1):
            if isinstance(record, dict):
                asn, _org, cc = _read_record(record)
                if asn:
                    fields.add(ASN_FIELD)
                if cc:
                    fields.add(COUNTRY_FIELD)
            if count >= _SAMPLE_RECORDS or len(fields) == 2:
                break
    except (RuntimeError, ValueError, IndexError, KeyError, TypeError) as exc:
        raise GeoDatabaseError(f"{label}: truncated or corrupt database ({exc})") from None
    return fields


# -- the databases of one day, and all the days ------------------------------------------------


class MaxMindPlan(AddressPlan):
    """The files valid on one day (one per series), answering together.

    AS facts come from the first file (by series name) that knows the address's AS, the
    country from the first that knows its country. No public ranges: a MaxMind database does
    not turn reserved addresses into public ones (only the testbed's address plan does).
    """

    def __init__(self, files: Sequence[DatabaseFile]) -> None:
        super().__init__()
        self.files = tuple(sorted(files, key=lambda f: (f.series, str(f.path))))
        self.freeze()

    def facts(self, ip: str) -> IPFacts | None:
        """Everything the files know about ``ip`` (None when nothing, or not an address)."""
        addr = parse_address(ip)
        if addr is None:
            return None
        asn, org, cc, sources = 0, "", "", []
        for db in self.files:
            found = db.facts(addr)
            if found is None:
                continue
            if found.asn and not asn:
                asn, org = found.asn, found.as_org_name
                sources.append(found.source)
            if found.cc and not cc:
                cc = found.cc
                if found.source not in sources:
                    sources.append(found.source)
            if asn and cc:
                break
        if not (asn or cc):
            return None
        return IPFacts(asn, org, cc, ", ".join(sources))

    def _lookup(self, ip: str) -> ASInfo | None:
        found = self.facts(ip)
        return ASInfo(found.asn, found.as_org_name, found.cc) if found and found.asn else None


class DatedPlan(AddressPlan):
    """Dated files in series: :meth:`at` picks, per series, the newest file dated on or before
    the day (else the oldest); a plain lookup is answered by the files valid today."""

    def __init__(self, files: Sequence[DatabaseFile]) -> None:
        super().__init__()
        if not files:
            raise GeoDatabaseError("no database files given")
        by_series: dict[str, list[DatabaseFile]] = {}
        for f in files:
            by_series.setdefault(f.series, []).append(f)
        self.series = {
            name: sorted(group, key=lambda f: (f.day, str(f.path)))
            for name, group in sorted(by_series.items())
        }
        self._by_choice: dict[tuple[str, ...], MaxMindPlan] = {}
        self._by_day: dict[date, MaxMindPlan] = {}
        self.freeze()

    def choose(self, day: date) -> list[DatabaseFile]:
        """The file valid on ``day`` in each series."""
        chosen = []
        for group in self.series.values():
            pick = group[0]  # every file newer than the day: the oldest one
            for f in group:
                if f.day > day:
                    break
                pick = f
            chosen.append(pick)
        return chosen

    def at(self, when: object = None) -> MaxMindPlan:
        """The files valid at ``when``: a datetime, a date, a measurement's start time as text
        (OONI's or RFC 3339), or None / unreadable text for today."""
        day = _day_of(when)
        plan = self._by_day.get(day)
        if plan is None:
            files = self.choose(day)
            key = tuple(str(f.path) for f in files)
            plan = self._by_choice.get(key)
            if plan is None:
                plan = self._by_choice[key] = MaxMindPlan(files)
            if len(self._by_day) >= 4096:
                self._by_day.clear()
            self._by_day[day] = plan
        return plan

    def lookup(self, ip: str) -> ASInfo | None:
        return self.at(None).lookup(ip)

    def facts(self, ip: str, when: object = None) -> IPFacts | None:
        return self.at(when).facts(ip)

    @property
    def files(self) -> list[DatabaseFile]:
        return [f for group in self.series.values() for f in group]


def _day_of(when: object) -> date:
    if isinstance(when, datetime):
        return when.astimezone(UTC).date() if when.tzinfo else when.date()
    if isinstance(when, date):
        return when
    if isinstance(when, str) and when:
        day = _day_of_text(when)
        if day is not None:
            return day
    return utcnow().date()


@lru_cache(maxsize=4096)
def _day_of_text(text: str) -> date | None:
    try:
        return parse_time(text).date()
    except (ValueError, TypeError, OverflowError):
        return None


# -- the one door for --asn-db ------------------------------------------------------------------


def open_ip_database(path: str | os.PathLike[str]) -> AddressPlan:
    """The database at ``path``: a directory of ``.mmdb`` files (dated), one ``.mmdb`` file,
    or an iptoasn TSV / address plan JSON (:meth:`AddressPlan.load`)."""
    p = Path(path)
    if p.is_dir():
        names = sorted(q for q in p.iterdir() if q.suffix.lower() == ".mmdb" and q.is_file())
        if not names:
            raise GeoDatabaseError(f"{p}: no .mmdb files in this directory")
        return DatedPlan([open_mmdb(q) for q in names])
    if not p.exists():
        raise GeoDatabaseError(f"{p}: no such file or directory")
    if looks_like_mmdb(p):
        return MaxMindPlan([open_mmdb(p)])
    try:
        return AddressPlan.load(p)
    except UnicodeDecodeError:
        raise GeoDatabaseError(
            f"{p}: neither a MaxMind DB file nor an iptoasn TSV / address plan (not text)"
        ) from None
    except (KeyError, TypeError) as exc:
        raise GeoDatabaseError(f"{p}: not a valid address plan ({exc})") from None


def ip_database(path: str | os.PathLike[str] | None = None) -> AddressPlan:
    """The database named by ``path`` or by ``CENSORWATCH_ASN_DB``; an empty plan when
    neither. Opened once per process while the file (or the directory's files) is unchanged."""
    chosen = path or os.environ.get(ASN_DB_ENV)
    if not chosen:
        return address_plan(None)  # the shared empty plan
    p = Path(chosen)
    return _open_cached(str(p), _signature(p))


def _signature(p: Path) -> tuple[Any, ...]:
    try:
        if p.is_dir():
            return tuple(
                sorted((q.name, q.stat().st_mtime_ns, q.stat().st_size) for q in p.iterdir())
            )
        st = p.stat()
        return (st.st_mtime_ns, st.st_size)
    except OSError:
        return ()


@lru_cache(maxsize=8)
def _open_cached(path: str, signature: tuple[Any, ...]) -> AddressPlan:
    return open_ip_database(path)


__all__ = [
    "DatabaseFile",
    "DatedPlan",
    "GeoDatabaseError",
    "IPFacts",
    "MaxMindPlan",
    "date_in_name",
    "ip_database",
    "open_ip_database",
    "open_mmdb",
]
