"""How OONI's public bucket lays its files out, and which folders a selection needs listed.

Three trees, each with its own key shape (the same as OONI's ``oonidata`` client reads):

* ``raw/YYYYMMDD/HH/CC/TEST/`` (from 2020-10-20): ``*.jsonl.gz``, one measurement a line,
  and ``*.tar.gz`` *postcans*, a tar of the probes' submissions (``*.post``) of the same hour;
* ``jsonl/TEST/CC/YYYYMMDD/HH/*.jsonl.gz`` (before 2020-10-21): the older data re-packed;
* ``canned/YYYY-MM-DD/`` (until 2020-10-21): *cans*, LZ4 files: ``TEST.N.tar.lz4`` (a tar of
  reports of every country), ``…-CC-ASN-TEST-….json.lz4`` (one report, a measurement a line)
  and ``….yaml.lz4`` (a legacy YAML report).

Test names in keys are written without underscores (``webconnectivity``), except in cans.
Listing follows the selection: a folder level the selection pins (a day range, countries,
tests) is walked by name, and only where nothing below narrows the choice is a folder listed
whole, so one day of one country lists that day's folders and never the rest of the bucket.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Protocol

#: Kinds of file, named by how their names end.
JSONL = "jsonl.gz"
POSTCAN = "tar.gz"
TAR_CAN = "tar.lz4"
REPORT_CAN = "json.lz4"
YAML_CAN = "yaml.lz4"

#: The last day of data under ``jsonl/``, and the last day of cans (OONI's bucket).
JSONL_LAST_DAY = date(2020, 10, 20)
CANNED_LAST_DAY = date(2020, 10, 21)
#: A day range this long or shorter is walked day by day; a longer one lists the days there.
PIN_MAX_DAYS = 31

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

_RAW = re.compile(
    r"(?:^|/)raw/(?P<day>\d{8})/(?P<hour>\d{2})/(?P<cc>[A-Z]{2})/(?P<test>[a-z0-9_]+)/"
    r"(?P<name>[^/]+\.(?:jsonl|tar)\.gz)$"
)
_JSONL = re.compile(
    r"(?:^|/)jsonl/(?P<test>[a-z0-9_]+)/(?P<cc>[A-Z]{2})/(?P<day>\d{8})/(?P<hour>\d{2})/"
    r"(?P<name>[^/]+\.jsonl\.gz)$"
)
_CANNED = re.compile(
    r"(?:^|/)canned/(?P<day>\d{4}-\d{2}-\d{2})/(?P<name>[^/]+\.(?:tar|json|yaml)\.lz4)$"
)
_CC = re.compile(r"[A-Z]{2}")


@dataclass(frozen=True, slots=True)
class RawFile:
    """One file of the bucket and what its key says about its measurements."""

    key: str  # path below the source root, e.g. raw/20240217/10/PK/webconnectivity/x.jsonl.gz
    size: int
    hour: datetime  # naive UTC start of the hour (raw/) or day (jsonl/, canned/) it covers
    cc: str | None  # None: the key does not say (a tar can holds every country)
    test: str | None  # as in the key, underscores dropped; None: the key does not say
    kind: str = JSONL
    span: timedelta = HOUR

    @classmethod
    def from_key(cls, key: str, size: int) -> RawFile | None:
        """The file ``key`` names, or None for a key of none of the layouts (an index, a
        README), which is not a measurement file."""
        for parse in (_raw_file, _jsonl_file, _canned_file):
            try:
                found = parse(key, size)
            except ValueError:  # a date that is no date
                return None
            if found is not None:
                return found
        return None


def _raw_file(key: str, size: int) -> RawFile | None:
    m = _RAW.search(key)
    if m is None:
        return None
    hour = datetime.strptime(m["day"] + m["hour"], "%Y%m%d%H")
    kind = POSTCAN if m["name"].endswith(".tar.gz") else JSONL
    return RawFile(key, size, hour, m["cc"], m["test"].replace("_", ""), kind, HOUR)


def _jsonl_file(key: str, size: int) -> RawFile | None:
    m = _JSONL.search(key)
    if m is None:
        return None
    day = datetime.strptime(m["day"], "%Y%m%d")
    return RawFile(key, size, day, m["cc"], m["test"].replace("_", ""), JSONL, DAY)


def _canned_file(key: str, size: int) -> RawFile | None:
    m = _CANNED.search(key)
    if m is None:
        return None
    day = datetime.strptime(m["day"], "%Y-%m-%d")
    name = m["name"]
    if name.endswith(".tar.lz4"):  # web_connectivity.0.tar.lz4
        return RawFile(key, size, day, None, name.split(".")[0].replace("_", ""), TAR_CAN, DAY)
    # 20201021T141726Z-US-AS20093-facebook_messenger-<report id>-0.2.0-probe.json.lz4
    parts = name.split("-")
    cc = parts[1] if len(parts) > 3 and _CC.fullmatch(parts[1]) else None
    test = parts[3].replace("_", "") if len(parts) > 3 else None
    kind = REPORT_CAN if name.endswith(".json.lz4") else YAML_CAN
    return RawFile(key, size, day, cc, test, kind, DAY)


@dataclass(frozen=True, slots=True)
class Selection:
    """Which files to take: bucket hours in [since, until), countries, test names."""

    since: datetime | None = None
    until: datetime | None = None
    ccs: frozenset[str] = frozenset()
    tests: frozenset[str] = frozenset()  # underscore-free, lower case

    def day_wanted(self, day: str, fmt: str = "%Y%m%d") -> bool:
        try:
            start = datetime.strptime(day, fmt)
        except ValueError:
            return False
        return self._overlaps(start, DAY)

    def _overlaps(self, start: datetime, span: timedelta) -> bool:
        if self.since is not None and start + span <= self.since:
            return False
        return not (self.until is not None and start >= self.until)

    def wants(self, f: RawFile) -> bool:
        if not self._overlaps(f.hour, f.span):
            return False
        if self.ccs and f.cc is not None and f.cc not in self.ccs:
            return False
        return not (self.tests and f.test is not None and f.test not in self.tests)

    def per_measurement(self, f: RawFile) -> Callable[[dict], bool] | None:
        """What must be checked on each measurement of ``f`` because its key does not say
        (a tar can's country, say), or None when the key said it all."""
        ccs = self.ccs if f.cc is None else frozenset()
        tests = self.tests if f.test is None else frozenset()
        if not ccs and not tests:
            return None

        def wanted(m: dict) -> bool:
            if ccs and m.get("probe_cc") not in ccs:
                return False
            name = str(m.get("test_name") or "").replace("_", "").lower()
            return not (tests and name not in tests)

        return wanted

    def filter_tag(self, f: RawFile) -> str:
        """A tag for the record of a file read through ``per_measurement``: reading it for
        other countries or tests later is another read, not a repeat."""
        if self.per_measurement(f) is None:
            return ""
        parts = []
        if f.cc is None and self.ccs:
            parts.append("cc=" + ",".join(sorted(self.ccs)))
        if f.test is None and self.tests:
            parts.append("test=" + ",".join(sorted(self.tests)))
        return "#" + ";".join(parts)

    def days(self, last: date | None = None) -> list[date] | None:
        """Every day of [since, until) up to ``last``, when both bounds are set and the range
        is short enough to walk by name; else None (list the days there)."""
        if self.since is None or self.until is None:
            return None
        first = self.since.date()
        end = (self.until - timedelta(microseconds=1)).date()
        if last is not None:
            end = min(end, last)
        if (end - first).days + 1 > PIN_MAX_DAYS:
            return None
        return [first + timedelta(days=i) for i in range((end - first).days + 1)]


class Lister(Protocol):
    """What a source answers for the walk: the folders in a folder, every file below one.
    Both take and give keys below the source's root; ``prefix`` ends with ``/``."""

    def children(self, prefix: str) -> list[str]: ...

    def objects(self, prefix: str) -> Iterator[tuple[str, int]]: ...


@dataclass(frozen=True, slots=True)
class _Level:
    """One folder level of a tree: the names the selection pins (None: list them), which
    listed names it keeps, and whether it narrows anything (if nothing at or below a level
    narrows, the folder is listed whole)."""

    pinned: Sequence[str] | None
    keep: Callable[[str], bool]
    narrows: bool


@dataclass(frozen=True, slots=True)
class _LevelSpec:
    """A level of a tree, made for the path above it; ``may_narrow`` says whether it narrows
    anything for some path (the walk decides from it whether to list a folder whole)."""

    make: Callable[[list[str]], _Level]
    may_narrow: bool


def _any(_: str) -> bool:
    return True


def _raw_levels(sel: Selection) -> list[_LevelSpec]:
    def day(_: list[str]) -> _Level:
        days = sel.days()
        pinned = None if days is None else [f"{d:%Y%m%d}" for d in days]
        narrows = sel.since is not None or sel.until is not None
        return _Level(pinned, sel.day_wanted, narrows)

    def hour(path: list[str]) -> _Level:
        start = datetime.strptime(path[0], "%Y%m%d")
        whole = sel._overlaps(start, DAY) and not (
            (sel.since is not None and sel.since > start)
            or (sel.until is not None and sel.until < start + DAY)
        )

        def keep(name: str) -> bool:
            return name.isdigit() and sel._overlaps(start + int(name) * HOUR, HOUR)

        return _Level(None, keep, not whole)

    bounded = sel.since is not None or sel.until is not None
    return [
        _LevelSpec(day, bounded),
        _LevelSpec(hour, bounded),
        _cc_level(sel),
        _test_level(sel),
    ]


def _jsonl_levels(sel: Selection) -> list[_LevelSpec]:
    def day(_: list[str]) -> _Level:
        days = sel.days(last=JSONL_LAST_DAY)
        pinned = None if days is None else [f"{d:%Y%m%d}" for d in days]

        def keep(name: str) -> bool:
            return sel.day_wanted(name) and name <= f"{JSONL_LAST_DAY:%Y%m%d}"

        return _Level(pinned, keep, bounded)

    bounded = sel.since is not None or sel.until is not None
    return [_test_level(sel), _cc_level(sel), _LevelSpec(day, bounded)]


def _canned_levels(sel: Selection) -> list[_LevelSpec]:
    def day(_: list[str]) -> _Level:
        days = sel.days(last=CANNED_LAST_DAY)
        pinned = None if days is None else [f"{d:%Y-%m-%d}" for d in days]

        def keep(name: str) -> bool:
            return sel.day_wanted(name, "%Y-%m-%d") and name <= f"{CANNED_LAST_DAY:%Y-%m-%d}"

        return _Level(pinned, keep, bounded)

    bounded = sel.since is not None or sel.until is not None
    return [_LevelSpec(day, bounded)]


def _cc_level(sel: Selection) -> _LevelSpec:
    ccs = sorted(sel.ccs) or None
    return _LevelSpec(lambda _: _Level(ccs, _any, ccs is not None), ccs is not None)


def _test_level(sel: Selection) -> _LevelSpec:
    tests = sorted(sel.tests) or None
    return _LevelSpec(lambda _: _Level(tests, _any, tests is not None), tests is not None)


def _tree_wanted(top: str, sel: Selection) -> bool:
    """Whether a tree can hold anything of the selection (its dates are OONI's)."""
    if top == "jsonl":
        return sel.since is None or sel.since.date() <= JSONL_LAST_DAY
    if top == "canned":
        return sel.since is None or sel.since.date() <= CANNED_LAST_DAY
    return True


TREES: dict[str, Callable[[Selection], list[_LevelSpec]]] = {
    "raw": _raw_levels,
    "jsonl": _jsonl_levels,
    "canned": _canned_levels,
}


def walk(lister: Lister, selection: Selection) -> Iterator[RawFile]:
    """Every file of the selection, tree by tree (``canned/`` before ``jsonl/``: a can gives
    OONI's UIDs, the re-packed copy none), listing only the folders it needs."""
    for top in lister.children(""):
        if top in TREES and _tree_wanted(top, selection):
            yield from _walk(lister, selection, f"{top}/", [], TREES[top](selection))


def _walk(
    lister: Lister,
    selection: Selection,
    prefix: str,
    path: list[str],
    levels: list[_LevelSpec],
) -> Iterator[RawFile]:
    level = levels[0].make(path) if levels else None
    if level is None or not (level.narrows or any(s.may_narrow for s in levels[1:])):
        found = []
        for key, size in lister.objects(prefix):
            f = RawFile.from_key(key, size)
            if f is not None and selection.wants(f):
                found.append(f)
        # A postcan before the jsonl.gz of the same hour: its UIDs are OONI's (``dedupe``).
        yield from sorted(found, key=lambda f: (f.kind != POSTCAN, f.key))
        return
    names = level.pinned if level.pinned is not None else lister.children(prefix)
    for name in names:
        if level.keep(name):
            yield from _walk(lister, selection, f"{prefix}{name}/", [*path, name], levels[1:])
