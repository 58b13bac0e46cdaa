"""Blockpage and censor-DNS fingerprints: load the upstream databases and match pages against them.

Two public databases are read together, from wherever the user keeps them (never vendored):

* OONI's blocking-fingerprints CSVs (``fingerprints_dns.csv``, ``fingerprints_http.csv``):
  ``location_found`` (``dns``, ``body``, ``header.<name>``), ``pattern_type`` (``full``,
  ``prefix``, ``contains``, ``regexp``), ``scope`` (``fp`` marks a known false positive) and
  ``expected_countries``;
* Censored Planet's JSONL regex signatures (``blockpage_signatures.json``) and its known
  false positives (``false_positive_signatures.json``), applied to the whole response (header
  lines and body), as Censored Planet does.

False-positive signatures are checked first, so the answer is three-valued: a known blockpage
(True), a page known *not* to be one (False), or nothing known (None).

Matching one page against ~2,800 patterns has to be cheap (the analysis runs it on every
plain-HTTP body), so every literal pattern goes into one Aho-Corasick automaton and regexes run
only when a literal they require is present.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

try:  # a compiled automaton; the fallback gives the same answers, only slower.
    import ahocorasick_rs
except ImportError:  # pragma: no cover - exercised only where the wheel is missing
    ahocorasick_rs = None

from censorwatch.observations.text import decode_body, normalize_headers

FINGERPRINTS_ENV = "CENSORWATCH_FINGERPRINTS"
FILE_NAMES = (
    "fingerprints_dns.csv",
    "fingerprints_http.csv",
    "blockpage_signatures.json",
    "false_positive_signatures.json",
)
_REGEX_META = set(".^$*+?{}[]|()")
# A brace is a counted repeat only in these forms; anywhere else Python's re reads it literally.
_QUANTIFIER = re.compile(r"\{(?:\d+(?:,\d*)?|,\d+)\}")


def _literal_brace(pattern: str, i: int) -> bool:
    """Is the ``{`` or ``}`` at ``pattern[i]`` an ordinary character (not a counted repeat)?"""
    if pattern[i] == "{":
        return _QUANTIFIER.match(pattern, i) is None
    start = pattern.rfind("{", 0, i)
    counted = _QUANTIFIER.match(pattern, start) if start >= 0 else None
    return not (counted and counted.end() == i + 1)


def default_dir() -> Path:
    """Where ``fingerprints sync`` writes and where analysis looks when told nothing."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "censorwatch" / "fingerprints"


@dataclass(frozen=True, slots=True)
class Fingerprint:
    name: str
    location: str  # "dns", "body", "page" (header lines + body), "header.<lower-case name>"
    pattern_type: str  # full | prefix | contains | regexp
    pattern: str
    scope: str = ""
    countries: frozenset[str] = frozenset()
    source: str = "ooni"
    false_positive: bool = False


@dataclass(frozen=True, slots=True)
class HttpMatch:
    """The three-valued answer for one HTTP response."""

    blockpage: bool | None  # True: a censor's page; False: a known false positive; None: unknown
    name: str | None = None  # the fingerprint that decided it
    fingerprint: Fingerprint | None = None


_NO_MATCH = HttpMatch(None)  # the usual answer (a frozen record: one serves every page)


def _regex_literal(pattern: str) -> str | None:
    """The literal text a regex stands for, or None when it uses real regex operators."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            if i + 1 < len(pattern) and not pattern[i + 1].isalnum():
                out.append(pattern[i + 1])
                i += 2
                continue
            return None
        if c in _REGEX_META and not (c in "{}" and _literal_brace(pattern, i)):
            return None
        out.append(c)
        i += 1
    return "".join(out)


def _required_literals(pattern: str) -> list[str] | None:
    """Literals of which every match of ``pattern`` contains at least one, when easy to see.

    Used to prefilter: a regex runs only on pages where one of its literals occurs.
    """
    branches = _top_level_branches(pattern)
    out: list[str] = []
    for branch in branches:
        # Everything before the first group, class or counted repeat is a plain sequence.
        cut = len(branch)
        for i, c in enumerate(branch):
            if (
                c in "([{"
                and (i == 0 or branch[i - 1] != "\\")
                and not (c == "{" and _literal_brace(branch, i))
            ):
                cut = i
                break
        head = branch[:cut]
        if cut < len(branch) and branch[cut] == "{":
            head = head[:-1]  # the character before a counted repeat may occur zero times
        best = ""
        for chunk in re.split(r"(?<!\\)[.^$*+?]+", head):
            lit = _regex_literal(chunk)
            if not lit:
                continue
            end = head.find(chunk) + len(chunk)
            if end < len(head) and head[end] in "?*":
                lit = lit[:-1]  # the last character is optional
            if len(lit) > len(best):
                best = lit
        if not best:
            return None
        out.append(best)
    return out


def _top_level_branches(pattern: str) -> list[str]:
    branches, depth, start, i = [], 0, 0, 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if c in "([":
            depth += 1
        elif c in ")]":
            depth = max(0, depth - 1)
        elif c == "|" and depth == 0:
            branches.append(pattern[start:i])
            start = i + 1
        i += 1
    branches.append(pattern[start:])
    return branches


@lru_cache(maxsize=1024)  # the same few country lists recur on most rows
def _countries(value: str) -> frozenset[str]:
    cleaned = value.replace("[", "").replace("]", "").replace("'", "").replace('"', "")
    return frozenset(c.strip().upper() for c in cleaned.split(",") if c.strip())


def parse_ooni_csv(text: str, *, source: str = "ooni") -> list[Fingerprint]:
    """Read one OONI blocking-fingerprints CSV (DNS or HTTP)."""
    rows: list[Fingerprint] = []
    lines = csv.reader(io.StringIO(text))
    header = next(lines, [])
    # A column by name, as ``csv.DictReader`` reads it (a repeated name: its last column;
    # a missing name or a short row: None), without building a dict for every row.
    columns = {column: i for i, column in enumerate(header)}

    def get(row: list[str], column: str) -> str | None:
        i = columns.get(column)
        return row[i] if i is not None and i < len(row) else None

    for row in lines:
        if not row:
            continue  # (DictReader skips empty rows too)
        name = (get(row, "name") or "").strip()
        location = (get(row, "location_found") or "").strip().lower()
        ptype = (get(row, "pattern_type") or "").strip().lower()
        pattern = get(row, "pattern") or ""
        if not name or not pattern or ptype not in ("full", "prefix", "contains", "regexp"):
            continue
        if location != "dns" and location != "body" and not location.startswith("header."):
            continue
        scope = (get(row, "scope") or "").strip().lower()
        rows.append(
            Fingerprint(
                name=name,
                location=location,
                pattern_type=ptype,
                pattern=pattern,
                scope=scope,
                countries=_countries(get(row, "expected_countries") or ""),
                source=source,
                false_positive=scope == "fp",
            )
        )
    return rows


def parse_cp_jsonl(text: str, *, false_positive: bool) -> list[Fingerprint]:
    """Read one Censored Planet signature file (one JSON object per line)."""
    rows: list[Fingerprint] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        name, pattern = obj.get("fingerprint"), obj.get("pattern")
        if not isinstance(name, str) or not isinstance(pattern, str) or not pattern:
            continue
        rows.append(
            Fingerprint(
                name=name,
                location="page",
                pattern_type="regexp",
                pattern=pattern,
                scope="fp" if false_positive else "",
                source="censoredplanet",
                false_positive=false_positive,
            )
        )
    return rows


def _value_matches(fp: Fingerprint, value: str) -> bool:
    if fp.pattern_type == "full":
        return value == fp.pattern
    if fp.pattern_type == "prefix":
        return value.startswith(fp.pattern)
    if fp.pattern_type == "contains":
        return fp.pattern in value
    return _compiled(fp.pattern).search(value) is not None


@lru_cache(maxsize=4096)
def _compiled(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern, re.DOTALL)
    except re.error:
        return re.compile(re.escape(pattern))


class _LiteralIndex:
    """Many literals, one pass over the text (UTF-8 bytes, through an Aho-Corasick automaton).

    A handful of literals (the per-header indexes hold two or three) are looked for one by one
    instead: a call into the automaton costs more than a few ``bytes.find``. Both ways give the
    same answer, in the same order.
    """

    #: Up to this many literals, ``bytes.find`` each rather than build an automaton.
    FEW = 8

    def __init__(self, literals: Iterable[str]) -> None:
        self._literals = sorted(set(literals))
        self._encoded = [lit.encode("utf-8") for lit in self._literals]
        self._automaton: Any = None
        if ahocorasick_rs is not None and len(self._literals) > self.FEW:
            # A contiguous NFA, not a DFA: built in ~10 ms instead of ~110 ms for the ~1,400
            # literals, and a little slower per page (~2 µs a measurement on OONI's wc05
            # measurements, ~40 ms per 20,000): the DFA repays its build only past ~50,000
            # measurements in one process, more than most runs of `analyze` read.
            self._automaton = ahocorasick_rs.BytesAhoCorasick(
                self._encoded, implementation=ahocorasick_rs.Implementation.ContiguousNFA
            )

    def find(self, data: bytes) -> dict[str, int]:
        """Each literal found in ``data`` with the byte offset of its first occurrence, in the
        order the automaton reports them (by where that occurrence ends; at the same end, the
        longer literal first)."""
        found: dict[str, int] = {}
        if not data or not self._literals:
            return found
        if self._automaton is not None:
            for index, start, _end in self._automaton.find_matches_as_indexes(
                data, overlapping=True
            ):
                lit = self._literals[index]
                if lit not in found:
                    found[lit] = start
            return found
        hits: list[tuple[int, int, str]] = []
        for lit, enc in zip(self._literals, self._encoded, strict=True):
            pos = data.find(enc)
            if pos >= 0:
                hits.append((pos + len(enc), pos, lit))
        hits.sort()
        for _end, pos, lit in hits:
            found[lit] = pos
        return found


@dataclass(eq=False)
class Fingerprints:
    """The loaded fingerprint database; cheap to query, immutable after construction."""

    entries: list[Fingerprint] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._dns: dict[str, list[Fingerprint]] = {}
        self._headers: dict[str, list[Fingerprint]] = {}
        # literal -> fingerprints that match when it occurs (in the body or the page)
        self._by_literal: dict[str, list[Fingerprint]] = {}
        # literal -> regex fingerprints to try when it occurs; and regexes always to try
        self._regex_by_literal: dict[str, list[Fingerprint]] = {}
        self._regex_always: list[Fingerprint] = []
        for fp in self.entries:
            if fp.location == "dns":
                self._dns.setdefault(fp.pattern.strip(), []).append(fp)
            elif fp.location.startswith("header."):
                self._headers.setdefault(fp.location[7:], []).append(fp)
            elif fp.pattern_type == "contains":
                self._by_literal.setdefault(fp.pattern, []).append(fp)
            elif fp.pattern_type == "regexp":
                lit = _regex_literal(fp.pattern)
                if lit:
                    self._by_literal.setdefault(lit, []).append(fp)
                    continue
                required = _required_literals(fp.pattern)
                if required:
                    for lit in required:
                        self._regex_by_literal.setdefault(lit, []).append(fp)
                else:
                    self._regex_always.append(fp)
            else:  # full / prefix on the body: the pattern itself must occur
                self._by_literal.setdefault(fp.pattern, []).append(fp)
        self._index = _LiteralIndex([*self._by_literal, *self._regex_by_literal])
        # Per header: an index over the literal part of full/prefix/contains patterns.
        self._header_index: dict[str, tuple[_LiteralIndex, dict[str, list[Fingerprint]]]] = {}
        self._header_regex: dict[str, list[Fingerprint]] = {}
        for name, fps in self._headers.items():
            lits: dict[str, list[Fingerprint]] = {}
            for fp in fps:
                if fp.pattern_type == "regexp":
                    self._header_regex.setdefault(name, []).append(fp)
                else:
                    lits.setdefault(fp.pattern, []).append(fp)
            self._header_index[name] = (_LiteralIndex(lits), lits)

    # -- loading ---------------------------------------------------------------------------

    @classmethod
    def empty(cls) -> Fingerprints:
        return cls()

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Fingerprints:
        """Load every upstream file found anywhere below ``directory``.

        Raises FileNotFoundError when the directory holds none of the four files, so that a
        mistyped ``--fingerprints`` is reported instead of silently matching nothing.
        """
        root = Path(directory)
        if not root.is_dir():
            raise FileNotFoundError(f"fingerprint directory not found: {root}")
        found = sorted(p for p in root.rglob("*") if p.name in FILE_NAMES and p.is_file())
        if not found:
            raise FileNotFoundError(
                f"no fingerprint files ({', '.join(FILE_NAMES)}) found under {root}"
            )
        entries: list[Fingerprint] = []
        seen: set[tuple[str, str, str]] = set()
        for path in found:
            text = path.read_text(encoding="utf-8", errors="replace")
            if path.name.endswith(".csv"):
                rows = parse_ooni_csv(text)
            else:
                rows = parse_cp_jsonl(text, false_positive=path.name.startswith("false_"))
            for fp in rows:
                key = (fp.source, fp.name, fp.pattern)
                if key not in seen:
                    seen.add(key)
                    entries.append(fp)
        return cls(entries=entries, sources=[str(p) for p in found])

    @classmethod
    def default(cls, directory: str | os.PathLike[str] | None = None) -> Fingerprints:
        """From ``directory``, else ``$CENSORWATCH_FINGERPRINTS``, else the synced location.

        An explicitly named directory must exist; the default location may be empty (then no
        page is ever *confirmed*, which the verdicts say).
        """
        chosen = directory or os.environ.get(FINGERPRINTS_ENV)
        if chosen:
            path = Path(chosen)
            return _load_cached(str(path.resolve()), _tree_mtime(path))
        path = default_dir()
        if path.is_dir() and any(p.name in FILE_NAMES for p in path.rglob("*")):
            return _load_cached(str(path.resolve()), _tree_mtime(path))
        return _EMPTY

    def __len__(self) -> int:
        return len(self.entries)

    def counts(self) -> dict[str, int]:
        """How many fingerprints of each kind are loaded (for status output)."""
        out = {"dns": 0, "http": 0, "false_positive": 0}
        for fp in self.entries:
            if fp.false_positive:
                out["false_positive"] += 1
            elif fp.location == "dns":
                out["dns"] += 1
            else:
                out["http"] += 1
        return out

    # -- matching --------------------------------------------------------------------------

    def match_dns(self, ip: str, cc: str | None = None) -> str | None:
        """The censor-DNS fingerprint an answered address matches, or None.

        Country-scoped DNS fingerprints only count in their countries when the probe's country
        is known: a private address such as 10.10.34.34 means one thing in one country.
        """
        fps = self._dns.get(ip)
        if not fps:
            return None
        cc = _norm_cc(cc)
        for fp in fps:
            if fp.false_positive:
                return None
            if cc is None or not fp.countries or cc in fp.countries:
                return fp.name
        return None

    def classify_http(
        self,
        body: bytes | str | None,
        headers: Mapping[str, Any] | None = None,
        cc: str | None = None,
    ) -> HttpMatch:
        """Three-valued verdict on one response: blockpage, known false positive, or unknown."""
        return self.classify_normalized(_as_text(body), normalize_headers(headers), cc)

    def classify_normalized(
        self, text: str, base_headers: dict[str, list[str]], cc: str | None = None
    ) -> HttpMatch:
        """``classify_http`` for a decoded body and headers already as lower-case name ->
        list of values (what the analysis' observations hold)."""
        hdrs = base_headers
        forward = _meta_refresh_target(text)
        if forward and forward not in hdrs.get("location", ()):
            # A page that forwards with <meta http-equiv="refresh"> is a Location in disguise:
            # filters do it to reach their notice page, so Location fingerprints apply.
            hdrs = {**hdrs, "location": [*hdrs.get("location", ()), forward]}
        blocks: list[Fingerprint] = []
        fps: list[Fingerprint] = []

        def note(fp: Fingerprint) -> None:
            (fps if fp.false_positive else blocks).append(fp)

        for name, values in hdrs.items():
            indexed = self._header_index.get(name)
            if indexed is None:
                continue
            index, by_lit = indexed
            for v in values:
                for lit, pos in index.find(v.encode("utf-8", errors="surrogatepass")).items():
                    for fp in by_lit[lit]:
                        if (pos == 0 and _value_matches(fp, v)) or fp.pattern_type == "contains":
                            note(fp)
                for fp in self._header_regex.get(name, ()):
                    if _compiled(fp.pattern).search(v):
                        note(fp)
        # Censored Planet's signatures are written against canonical header names.
        header_text = "".join(
            [f"{_canonical(k)}: {v}\r\n" for k, vs in base_headers.items() for v in vs]
        )
        page = header_text + "\r\n" + text if header_text else text
        if page:
            data = page.encode("utf-8", errors="surrogatepass")
            # The header block is (nearly always) ASCII: then its length in bytes is its
            # length in characters, and the body need not be encoded a second time.
            head = len(page) - len(text)
            body_start = (
                head
                if header_text.isascii()  # (the block is header_text + "\r\n": no copy)
                else len(data) - len(text.encode("utf-8", errors="surrogatepass"))
            )
            tried: set[str] = set()
            for lit, pos in self._index.find(data).items():
                for fp in self._by_literal.get(lit, ()):
                    if fp.location == "page" or (
                        pos >= body_start
                        and (fp.pattern_type in ("contains", "regexp") or _value_matches(fp, text))
                    ):
                        note(fp)
                for fp in self._regex_by_literal.get(lit, ()):
                    if fp.name in tried:
                        continue
                    tried.add(fp.name)
                    if _compiled(fp.pattern).search(page if fp.location == "page" else text):
                        note(fp)
            for fp in self._regex_always:
                if _compiled(fp.pattern).search(page if fp.location == "page" else text):
                    note(fp)
        if fps:
            worst = max(fps, key=lambda f: (specificity(f), f.name))
            strong = [b for b in blocks if specificity(b) > specificity(worst)]
            if not strong:
                return HttpMatch(False, worst.name, worst)
            blocks = strong
        if blocks:
            best = _best_for_country(blocks, _norm_cc(cc))
            return HttpMatch(True, best.name, best)
        return _NO_MATCH

    def match_http(
        self,
        body: bytes | str | None,
        headers: Mapping[str, Any] | None = None,
        cc: str | None = None,
    ) -> str | None:
        """The blockpage fingerprint a response matches (after false positives), or None."""
        result = self.classify_http(body, headers, cc)
        return result.name if result.blockpage else None


@lru_cache(maxsize=8192)
def _specificity(pattern: str, pattern_type: str) -> int:
    if pattern_type != "regexp":
        return len(pattern)
    lit = _regex_literal(pattern)
    if lit is not None:
        return len(lit)
    return len(re.sub(r"\\.|[.^$*+?{}\[\]|()]", "", pattern))


def specificity(fp: Fingerprint) -> int:
    """How much literal text a signature pins down: the more, the more specific it is.

    A false-positive signature is checked first and settles the answer, unless a blockpage
    signature that matched the same page is strictly more specific (Censored Planet's
    false-positive ``redirect`` must not veto BT's full opt-in blockpage).
    """
    return _specificity(fp.pattern, fp.pattern_type)


def _best_for_country(fps: list[Fingerprint], cc: str | None) -> Fingerprint:
    def rank(fp: Fingerprint) -> tuple[int, int, str]:
        local = 0 if cc and cc in fp.countries else 1
        source = 0 if fp.source == "ooni" else 1
        return (local, source, fp.name)

    return min(fps, key=rank)


def _norm_cc(cc: str | None) -> str | None:
    if not cc or not isinstance(cc, str):
        return None
    cc = cc.strip().upper()
    return None if cc in ("", "ZZ", "XX") else cc


@lru_cache(maxsize=1024)
def _canonical(name: str) -> str:
    return "-".join(part.capitalize() for part in name.split("-"))


def split_raw_response(raw: bytes) -> tuple[dict[str, list[str]], bytes]:
    """A saved page: a raw HTTP response (status line, headers, body) or just the body."""
    if raw[:5] == b"HTTP/":
        head, sep, body = raw.partition(b"\r\n\r\n")
        if not sep:
            head, sep, body = raw.partition(b"\n\n")
        headers: dict[str, list[str]] = {}
        for line in head.decode("latin-1").splitlines()[1:]:
            name, colon, value = line.partition(":")
            if colon:
                headers.setdefault(name.strip().lower(), []).append(value.strip())
        return headers, body
    return {}, raw


_META_REFRESH = re.compile(
    r"""<meta[^>]+http-equiv\s*=\s*["']?refresh[^>]*?content\s*=\s*["']?\s*\d*\s*;?\s*"""
    r"""url\s*=\s*['"]?([^'"\s>]+)""",
    re.IGNORECASE,
)


def _meta_refresh_target(text: str) -> str | None:
    if text.find("efresh", 0, 4096) < 0:  # (bounded find: no copy of the page's head)
        return None
    match = _META_REFRESH.search(text[:4096])
    return match.group(1) if match else None


def _as_text(body: bytes | str | None) -> str:
    if body is None:
        return ""
    if isinstance(body, bytes | bytearray):
        return decode_body(bytes(body))
    return body if isinstance(body, str) else ""


def _tree_mtime(path: Path) -> float:
    try:
        return max(
            [path.stat().st_mtime]
            + [p.stat().st_mtime for p in path.rglob("*") if p.name in FILE_NAMES]
        )
    except OSError:
        return 0.0


@lru_cache(maxsize=4)
def _load_cached(path: str, mtime: float) -> Fingerprints:
    return Fingerprints.load(path)


_EMPTY = Fingerprints()
