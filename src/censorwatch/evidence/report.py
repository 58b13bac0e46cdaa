"""The human half of a bundle: one self-contained HTML page that tells the story.

The page is a pure function of the bundle's contents (no clock, no randomness, no locale, no
external resource), so ``verify`` renders it again and compares bytes: the report cannot claim
anything the measurements, verdicts and signed tree head do not carry.

This module turns the contents into a page model (plain text and numbers, every mapping read
in sorted order, every value spelled one way whatever its JSON type); the Jinja2 templates in
``templates/`` draw it with autoescape on, so no measurement can inject markup. What a
measurement shows (the step that failed, the addresses, the control's view) is read from its
observations (``censorwatch.observations``), as the analysis and the explorer read it, and the
timeline is the explorer's own (``censorwatch.events.timeline``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import msgspec

from censorwatch.analysis.workarounds import LABELS
from censorwatch.events import locations
from censorwatch.events.platforms import host_of
from censorwatch.events.timeline import (
    Band,
    Dot,
    Row,
    bracket_band,
    mark_tip,
    shown_time,
    timeline_svg,
)
from censorwatch.events.workarounds import ORDER, STATUSES, overall
from censorwatch.evidence.explain import explain
from censorwatch.evidence.names import local_time
from censorwatch.evidence.scope import IndexRow
from censorwatch.model import canonical_json
from censorwatch.observations.builder import (
    SYSTEM_ENGINES,
    ControlObs,
    DnsObs,
    Observations,
    observe,
)
from censorwatch.observations.schema import to_typed
from censorwatch.times import naive_utc

VERDICTS = ("blocked", "ok", "down", "unknown")
MAX_SAMPLES = 6
#: Addresses listed per host in a sample; the rest are counted.
MAX_ADDRESSES = 8
#: Failures that mean "no address of this type", which is how most IPv4-only sites answer an
#: AAAA query: a failed step only when no query for the host got anything else.
NO_ANSWER = frozenset({"dns_no_answer", "dns_no_answer_error"})
#: Where a timeline mark leads: the measurement's row in the last table of the page.
ANCHOR = "m-"

Pair = tuple[dict[str, Any], dict[str, Any]]  # (measurement, verdict)


# -- values as text --------------------------------------------------------------------------------


def text(value: Any) -> str:
    """Any JSON value as text, one spelling per value (non-strings as canonical JSON), so the
    page does not depend on how the bundle was read."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return canonical_json(value).decode("utf-8")


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _time(value: Any) -> datetime | None:
    """A time as naive UTC, or None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        return naive_utc(value)
    except (ValueError, OverflowError):
        return None


def _minute(when: datetime | None) -> str:
    return when.strftime("%Y-%m-%d %H:%M UTC") if when else "?"


def _asn_order(asn: str) -> tuple[int, str]:
    digits = asn.removeprefix("AS")
    return (int(digits), asn) if digits.isdigit() else (1 << 32, asn)


def _verdict(v: dict[str, Any]) -> str:
    kind = v.get("verdict")
    return kind if isinstance(kind, str) and kind in VERDICTS else "unknown"


def _host(m: dict[str, Any], v: dict[str, Any]) -> str | None:
    try:
        return host_of(_str(v.get("target")), _str(m.get("input")))
    except ValueError:  # a URL that does not parse names no host
        return None


def _signer(m: dict[str, Any]) -> str | None:
    sig = m.get("x_signature")
    return text(sig.get("key_id")) if isinstance(sig, dict) else None


# -- what one measurement shows, from its observations ---------------------------------------------


def observations_of(measurement: dict[str, Any]) -> Observations | None:
    """The measurement's observations, or None when it has no readable ``test_keys``."""
    try:
        typed, _ = to_typed(measurement)
    except (ValueError, msgspec.ValidationError):
        return None
    return observe(typed.test_keys) if typed.test_keys is not None else None


def _endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _resolver(q: DnsObs) -> str:
    """A resolver as the observations name it: its engine, marked when it is the system's."""
    engine = q.engine or "unnamed resolver"
    return f"{engine} (system)" if q.classic or q.engine in SYSTEM_ENGINES else engine


def failed_steps(obs: Observations | None, verdict: dict[str, Any]) -> list[str]:
    """Each failed step in the words of the observations (the failure strings the verdict
    reasons about); the verdict's layers when no step failed outright."""
    steps: list[str] = []
    if obs is not None:
        # What each host's lookups got: "addresses", or their failures.
        answered: dict[str, set[str]] = defaultdict(set)
        for q in obs.queries:
            if q.addrs:
                answered[q.hostname].add("addresses")
            elif q.failure:
                answered[q.hostname].add(q.failure)
        for q in obs.queries:
            others = answered[q.hostname] - NO_ANSWER
            if q.failure and not (q.failure in NO_ANSWER and others):
                steps.append(f"DNS lookup of {q.hostname} via {_resolver(q)}: {q.failure}")
        for t in obs.tcp:
            if t.failure:
                probe = " (SNI check)" if t.sni_probe else ""
                steps.append(f"TCP connect to {_endpoint(t.ip, t.port)}{probe}: {t.failure}")
        for kind, handshakes in (("TLS", obs.tls), ("QUIC", obs.quic)):
            for h in handshakes:
                if h.failure:
                    sni = {"none": "no SNI (SNI check)", "decoy": f"decoy SNI {h.server_name}"}
                    name = sni.get(h.sni_probe or "", f"SNI {h.server_name or '(none)'}")
                    steps.append(
                        f"{kind} handshake with {_endpoint(h.ip, h.port)}, {name}: {h.failure}"
                    )
        for r in obs.http:
            if r.failure:
                steps.append(f"HTTP request {r.url}: {r.failure}")
    if not steps:
        layers = verdict.get("layers") if isinstance(verdict.get("layers"), dict) else {}
        steps = [
            f"{k.upper()} layer: {text(layers[k])}"
            for k in ("dns", "tcp", "tls", "http")
            if layers.get(k) not in (None, "ok")
        ] or ["no step failed"]
    return list(dict.fromkeys(steps))


def resolved(obs: Observations | None) -> list[str]:
    """Per host, what each resolver answered: its addresses, or else its failures."""
    if obs is None:
        return ["nothing readable"]
    # host -> resolver -> (addresses, failures), both in the order the lookups were made
    answers: dict[str, dict[str, tuple[list[str], list[str]]]] = {}
    for q in obs.queries:
        addrs, failures = answers.setdefault(q.hostname, {}).setdefault(_resolver(q), ([], []))
        addrs += [a for a in q.addrs if a not in addrs]
        if q.failure and q.failure not in failures:
            failures.append(q.failure)
    lines = []
    for host, per_resolver in answers.items():
        parts = []
        for resolver, (addrs, failures) in per_resolver.items():
            more = len(addrs) - MAX_ADDRESSES
            shown = ", ".join(addrs[:MAX_ADDRESSES]) + (f" and {more} more" if more > 0 else "")
            parts.append(f"{resolver} → {shown or ', '.join(failures) or 'no address'}")
        lines.append(f"{host}: {'; '.join(parts)}")
    return lines or ["no DNS lookup in this measurement"]


def control_view(control: ControlObs | None) -> str:
    """What the uncensored control saw, in the observations' terms."""
    if control is None:
        return "no control result in this measurement"
    seen = []
    if control.dns_failure:
        seen.append(f"DNS: {control.dns_failure}")
    elif control.dns_addrs:
        seen.append(f"DNS answered {', '.join(control.dns_addrs)}")
    if control.tcp:
        ok = sum(1 for failure in control.tcp.values() if failure is None)
        seen.append(f"TCP: {ok}/{len(control.tcp)} endpoints connected")
    if control.tls:
        ok = sum(1 for _, failure in control.tls.values() if failure is None)
        seen.append(f"TLS: {ok}/{len(control.tls)} handshakes succeeded")
    if control.http_present:
        if control.http_failure:
            seen.append(f"HTTP: {control.http_failure}")
        else:
            title = f"title “{control.http_title}”" if control.http_title else "no title"
            size = (
                f"{control.http_body_length} bytes"
                if control.http_body_length >= 0
                else "length unknown"
            )
            seen.append(f"HTTP {control.http_status}, {title}, {size}")
    if not seen:
        return f"no control result in this measurement ({control.failure or 'empty'})"
    if control.failure and not control.available:
        seen.append(f"control failure: {control.failure}")
    return "; ".join(seen)


# -- the page model --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogFacts:
    """How to check the page: the tree head and the keys that signed."""

    tree_size: str
    root_hash: str
    signed_at: str
    log_id: str
    probe_keys: list[tuple[str, int]]
    unsigned: int


@dataclass(frozen=True)
class EventFacts:
    event_id: str
    scope: str
    cc: str
    networks: str
    target: str
    methods: str
    onset: str
    end: str
    status: str
    confidence: str


@dataclass(frozen=True)
class NetworkLine:
    name: str  # "PTCL (AS17557)", or the AS number alone when no database names it
    asn: str
    cc: str
    measured: int
    blocked: int
    ok: int
    other: int
    methods: str
    first: str
    last: str


@dataclass(frozen=True)
class Timeline:
    svg: Any  # markupsafe.Markup from the shared renderer
    first: str
    last: str
    brackets: list[str]  # the kinds of bracket shaded: "onset", "end"


@dataclass(frozen=True)
class Sample:
    asn: str
    when: str
    input: str
    verdict: str
    verdict_css: str
    method: str
    confidence: str
    failed: str
    resolved: list[str]
    control: str
    uid: str
    signer: str | None


@dataclass(frozen=True)
class Line:
    uid: str
    when: str
    asn: str
    input: str
    verdict: str
    verdict_css: str
    method: str
    signer: str


@dataclass(frozen=True)
class Method:
    code: str
    name: str
    observed: str
    why: str
    otherwise: str
    networks: str  # where it was seen, with counts


@dataclass(frozen=True)
class DayLine:
    day: str
    network: str
    measured: int
    blocked: int
    ok: int
    other: int


@dataclass(frozen=True)
class Coverage:
    listed: int
    carried: int
    whole: bool
    max_bytes: str
    policy: str


@dataclass(frozen=True)
class Summary:
    """The first page: the finding in one paragraph, then the facts a petition cites."""

    finding: str
    onset: str
    end: str
    networks: list[str]  # "PTCL (AS17557): tls.reset, 33 of 35 measurements blocked"
    time_zone: str


@dataclass(frozen=True)
class Extra:
    """A section other work adds to an event (shown only when the event carries it)."""

    heading: str
    lines: list[str]


@dataclass(frozen=True)
class StillWorks:
    """What still gets through (the event's circumvention counts): its sentence, then one row
    per network, one cell per technique: its status over the event and the counts."""

    sentence: str
    columns: list[str]  # technique families, in words
    rows: list[tuple[str, list[str]]]  # (network, cell per column)


@dataclass(frozen=True)
class Page:
    title: str
    created_at: str
    count: int
    format: str
    log: LogFacts
    event: EventFacts | None
    networks: list[NetworkLine]
    timeline: Timeline | None
    samples: list[Sample]
    lines: list[Line]
    summary: Summary | None = None
    coverage: Coverage | None = None
    methods: tuple[Method, ...] = ()
    days: tuple[DayLine, ...] = ()
    extras: tuple[Extra, ...] = ()
    index_lines: tuple[Line, ...] = ()
    still_works: StillWorks | None = None


def _title(event: dict[str, Any] | None, rows: list[Pair], names: dict[str, Any]) -> str:
    if event:
        target = text(names.get("target")) or text(event.get("target"))
        country = text(names.get("country")) or text(event.get("cc"))
        return f"{target} blocked in {country} ({text(event.get('scope'))} event)"
    ccs = sorted({text(m.get("probe_cc")) for m, _ in rows})
    return f"Measurements from {', '.join(ccs) or 'unknown countries'}"


def _log_facts(manifest: dict[str, Any], head: dict[str, Any], rows: list[Pair]) -> LogFacts:
    signers = Counter(s for m, _ in rows if (s := _signer(m)) is not None)
    ts = head.get("timestamp")
    try:
        when = (
            datetime.fromtimestamp(ts / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            if isinstance(ts, int) and not isinstance(ts, bool)
            else "?"
        )
    except (ValueError, OverflowError, OSError):
        when = "?"
    return LogFacts(
        tree_size=text(head.get("tree_size")),
        root_hash=text(head.get("root_hash")),
        signed_at=when,
        log_id=text(manifest.get("log_id")),
        probe_keys=sorted(signers.items()),
        unsigned=sum(1 for m, _ in rows if _signer(m) is None),
    )


def _named(name: str, code: str) -> str:
    return f"{name} ({code})" if name and name != code else code


def _bracket_text(bracket: Any, *, onset: bool) -> str:
    if not isinstance(bracket, dict) or not bracket:
        return "start of data" if onset else "ongoing at export"
    after = text(bracket.get("after")) or ("start of data" if onset else "")
    return f"after {after}, no later than {text(bracket.get('before'))}"


def _event_facts(event: dict[str, Any], names: dict[str, Any]) -> EventFacts:
    def listed(value: Any) -> str:
        return ", ".join(map(text, value)) if isinstance(value, list) else text(value)

    return EventFacts(
        event_id=text(event.get("event_id")),
        scope=text(event.get("scope")),
        cc=_named(text(names.get("country")), text(event.get("cc"))),
        networks=", ".join(_operator(text(a), names) for a in event.get("asns") or [])
        if isinstance(event.get("asns"), list)
        else text(event.get("asns")),
        target=_named(text(names.get("target")), text(event.get("target"))),
        methods=listed(event.get("methods")) or "not determined",
        onset=_bracket_words(event.get("onset"), text(names.get("time_zone")), onset=True)
        if names
        else _bracket_text(event.get("onset"), onset=True),
        end=_bracket_words(event.get("end"), text(names.get("time_zone")), onset=False)
        if names
        else _bracket_text(event.get("end"), onset=False),
        status=text(event.get("status")),
        confidence=text(event.get("confidence")),
    )


def _by_network(rows: list[Pair]) -> dict[str, list[Pair]]:
    groups: dict[str, list[Pair]] = defaultdict(list)
    for m, v in rows:
        groups[text(m.get("probe_asn"))].append((m, v))
    return {asn: groups[asn] for asn in sorted(groups, key=_asn_order)}


def _operator(asn: str, names: dict[str, Any]) -> str:
    networks = names.get("networks") if isinstance(names.get("networks"), dict) else {}
    name = networks.get(asn)
    return f"{text(name)} ({asn})" if name else asn


def _rows_of(pairs: list[Pair]) -> list[IndexRow]:
    """Index rows for contents without an index (the first format, or a page of pairs)."""
    return [
        IndexRow(
            leaf_index=n,
            measurement_uid=text(m.get("measurement_uid")),
            measurement_sha256="",
            bytes=0,
            probe_asn=text(m.get("probe_asn")),
            probe_cc=text(m.get("probe_cc")),
            measurement_start_time=text(m.get("measurement_start_time")),
            input=text(m.get("input")),
            verdict=_verdict(v),
            method=text(v.get("method")),
        )
        for n, (m, v) in enumerate(pairs)
    ]


def _kind(row: IndexRow) -> str:
    return row.verdict if row.verdict in VERDICTS else "unknown"


def _networks(index: list[IndexRow], names: dict[str, Any]) -> list[NetworkLine]:
    groups: dict[str, list[IndexRow]] = defaultdict(list)
    for r in index:
        groups[r.probe_asn].append(r)
    lines = []
    for asn in sorted(groups, key=_asn_order):
        group = groups[asn]
        counts = Counter(_kind(r) for r in group)
        methods = Counter(r.method for r in group if r.method)
        times = sorted(t for r in group if (t := _time(r.measurement_start_time)))
        lines.append(
            NetworkLine(
                name=_operator(asn, names),
                asn=asn,
                cc=group[0].probe_cc,
                measured=len(group),
                blocked=counts["blocked"],
                ok=counts["ok"],
                other=counts["down"] + counts["unknown"],
                methods=", ".join(f"{k} ({n})" for k, n in sorted(methods.items())),
                first=_minute(times[0] if times else None),
                last=_minute(times[-1] if times else None),
            )
        )
    return lines


def _event_bands(event: dict[str, Any] | None) -> list[Band]:
    bands = []
    for kind in ("onset", "end"):
        bracket = (event or {}).get(kind)
        if not isinstance(bracket, dict) or not isinstance(bracket.get("before"), str):
            continue
        try:
            bands.append(bracket_band(kind, _str(bracket.get("after")), bracket["before"]))
        except (ValueError, OverflowError):
            continue
    return bands


def _timeline(rows: list[Pair], event: dict[str, Any] | None) -> Timeline | None:
    """One row per network, one dot per measurement, the event's brackets shaded."""
    dots: dict[str, list[Dot]] = {}
    for asn, group in _by_network(rows).items():
        for m, v in group:
            when = _time(m.get("measurement_start_time"))
            if when is None:
                continue
            kind, uid = _verdict(v), text(m.get("measurement_uid"))
            tip = mark_tip(shown_time(when), _host(m, v), kind, _str(v.get("method")))
            dots.setdefault(asn, []).append((when, kind, uid, tip))
    if not dots:
        return None
    bands = _event_bands(event)
    times = [d[0] for ds in dots.values() for d in ds]
    stamps = times + [t for b in bands for t in (b.start, b.end)]
    t0, t1 = min(stamps), max(stamps)
    pad = max((t1 - t0) / 10, timedelta(minutes=5))
    svg = timeline_svg(
        [Row(asn, None, ds) for asn, ds in dots.items()],
        t0 - pad,
        t1 + pad,
        bands=bands,
        link="#" + ANCHOR,
        shape="dot",
    )
    return Timeline(svg, _minute(min(times)), _minute(max(times)), [b.css for b in bands])


def _pick_samples(rows: list[Pair]) -> list[Pair]:
    """Blocked measurements (all of them when none is), taken from each network in turn."""
    pool = [(m, v) for m, v in rows if _verdict(v) == "blocked"] or rows
    by_asn = _by_network(pool)
    picked: list[Pair] = []
    depth = 0
    while len(picked) < MAX_SAMPLES and any(len(g) > depth for g in by_asn.values()):
        for group in by_asn.values():
            if depth < len(group) and len(picked) < MAX_SAMPLES:
                picked.append(group[depth])
        depth += 1
    return picked


def _sample(m: dict[str, Any], v: dict[str, Any]) -> Sample:
    obs = observations_of(m)
    return Sample(
        asn=text(m.get("probe_asn")),
        when=text(m.get("measurement_start_time")),
        input=text(m.get("input")),
        verdict=text(v.get("verdict")),
        verdict_css=_verdict(v),
        method=text(v.get("method")),
        confidence=text(v.get("confidence")),
        failed="; ".join(failed_steps(obs, v)),
        resolved=resolved(obs),
        control=control_view(obs.control if obs is not None else None),
        uid=text(m.get("measurement_uid")),
        signer=_signer(m),
    )


def _line(m: dict[str, Any], v: dict[str, Any]) -> Line:
    return Line(
        uid=text(m.get("measurement_uid")),
        when=text(m.get("measurement_start_time")),
        asn=text(m.get("probe_asn")),
        input=text(m.get("input")),
        verdict=text(v.get("verdict")),
        verdict_css=_verdict(v),
        method=text(v.get("method")),
        signer=_signer(m) or "unsigned",
    )


def _days(index: list[IndexRow], names: dict[str, Any]) -> tuple[DayLine, ...]:
    counts: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for r in index:
        counts[(r.day, r.probe_asn)][_kind(r)] += 1
    return tuple(
        DayLine(
            day=day,
            network=_operator(asn, names),
            measured=sum(c.values()),
            blocked=c["blocked"],
            ok=c["ok"],
            other=c["down"] + c["unknown"],
        )
        for (day, asn), c in sorted(counts.items(), key=lambda kv: (kv[0][0], _asn_order(kv[0][1])))
    )


def _methods(
    index: list[IndexRow], event: dict[str, Any] | None, names: dict[str, Any]
) -> tuple[Method, ...]:
    seen: dict[str, Counter[str]] = defaultdict(Counter)
    for r in index:
        if r.method and r.verdict == "blocked":
            seen[r.method][r.probe_asn] += 1
    codes = [text(m) for m in (event or {}).get("methods") or [] if text(m)]
    codes += sorted(c for c in seen if c not in codes)
    out = []
    for code in codes:
        e = explain(code)
        where = seen.get(code, Counter())
        networks = "; ".join(
            f"{_operator(asn, names)}: {n}" for asn, n in sorted(where.items(),
                                                               key=lambda kv: _asn_order(kv[0]))
        )  # fmt: skip
        out.append(Method(code, e.name, e.observed, e.why, e.otherwise, networks))
    return tuple(out)


def _when(value: Any, zone: str) -> str:
    """A bracket's time in UTC and, when the country's zone is known, local time."""
    when = _time(value)
    if when is None:
        return text(value)
    utc = when.strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{utc} ({local_time(when, zone)} local time)" if zone else utc


def _bracket_words(bracket: Any, zone: str, *, onset: bool) -> str:
    if not isinstance(bracket, dict) or not bracket:
        return "start of data" if onset else "still blocked when the bundle was made"
    after = bracket.get("after")
    first = _when(after, zone) if after else "the start of the data"
    return f"after {first} and no later than {_when(bracket.get('before'), zone)}"


def _summary(
    event: dict[str, Any], networks: list[NetworkLine], names: dict[str, Any], title: str
) -> Summary:
    zone = text(names.get("time_zone"))
    zones = names.get("time_zones_in_country")
    counts = event.get("measurements") if isinstance(event.get("measurements"), dict) else {}
    blocking = [n for n in networks if n.asn in (event.get("asns") or [])]
    measured = counts.get("networks_measured") or len(networks)
    finding = (
        f"{text(names.get('target')) or text(event.get('target'))} was blocked in "
        f"{text(names.get('country')) or text(event.get('cc'))}: measurements on "
        f"{len(blocking)} of {measured} networks measured show it blocked"
        + (f", by {', '.join(explain(text(m)).name for m in event.get('methods') or [])}" if
           event.get("methods") else "")
        + f". Status: {text(event.get('status'))}; confidence {text(event.get('confidence'))}."
    )  # fmt: skip
    lines = [
        f"{n.name}: {n.blocked} of {n.measured} measurements blocked ({n.methods or 'no method'})"
        for n in blocking
    ]
    if not zone:
        tz_note = "Times are UTC (no time zone is known for this country)."
    elif isinstance(zones, int) and zones > 1:
        tz_note = (
            f"Times are UTC and {zone} local time; the country has {zones} time zones, and "
            f"{zone} is the first the IANA time zone database lists for it."
        )
    else:
        tz_note = f"Times are UTC and local time ({zone}, the country's time zone)."
    return Summary(
        finding=finding,
        onset=_bracket_words(event.get("onset"), zone, onset=True),
        end=_bracket_words(event.get("end"), zone, onset=False),
        networks=lines,
        time_zone=tz_note,
    )


#: Sections other work adds to an event record, in the order the page shows them.
EXTRA_SECTIONS = (
    ("still_reachable", "What still gets through"),
    ("censor_location", "Where the censor sits"),
    ("impact", "Users affected"),
    ("reports", "People's reports"),
)


def _extra_lines(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [f"{k}: {text(value[k])}" for k in sorted(value) if value[k] not in (None, "", [])]
    if isinstance(value, list):
        return [text(v) for v in value if v not in (None, "")]
    return [text(value)] if value not in (None, "") else []


def _report_lines(value: Any) -> list[str]:
    """People's reports around the onset (``events.records.with_reports``), in words. They are
    counted beside the measurements and never make a verdict or an event."""
    if not isinstance(value, dict):
        return _extra_lines(value)
    before, during = value.get("before_onset_24h"), value.get("during_onset")
    if not isinstance(before, int) or not isinstance(during, int):
        return _extra_lines(value)
    return [
        f"{before} report{'' if before == 1 else 's'} from people on these networks in the "
        "24 hours before the onset; "
        f"{during} while it was measured (within the onset bracket).",
        "People's reports are counted, never evidence: the verdicts rest on the measurements.",
    ]


def _location_lines(event: dict[str, Any]) -> list[str]:
    """Where the censor sits (``events.locations``), one line per network, with how it was
    found and what it cannot tell."""
    by_network = event.get("censor_location_by_network")
    if not isinstance(by_network, dict):
        asns = event.get("asns") or [""]
        by_network = {text(asns[0]): event.get("censor_location")}
    lines = [
        f"{text(asn)}: {locations.words(ranking)}"
        for asn, ranking in sorted(by_network.items(), key=lambda kv: _asn_order(kv[0]))
        if isinstance(ranking, list) and locations.words(ranking)
    ]
    if lines:
        lines.append(
            "Found by resending the offending packet (the DNS query, the ClientHello, the "
            "HTTP request) with rising IP TTLs beside an innocuous one: the first hop where "
            "the two fared differently, named by the router that answered there. A censor "
            "that answers from the end host itself is reported as the destination."
        )
    return lines


def _extras(event: dict[str, Any] | None) -> tuple[Extra, ...]:
    """Only the sections the event carries, each with something in it (absent, never 0)."""
    out = []
    for key, heading in EXTRA_SECTIONS:
        value = (event or {}).get(key)
        if key == "still_reachable" and isinstance((event or {}).get("workarounds"), dict):
            continue  # the event's own circumvention counts have their section
        if key == "censor_location":
            lines = _location_lines(event) if value else []
        else:
            lines = _report_lines(value) if key == "reports" else _extra_lines(value)
        if lines:
            out.append(Extra(heading, lines))
    return tuple(out)


def _count_words(counts: dict[str, Any]) -> str:
    """``works (4 of 4 measurements)``, ``fails (3 of 4; works in 1)``, ``not tried``."""
    numbers = {s: n for s in STATUSES if isinstance(n := counts.get(s), int)}
    status = overall(numbers)
    tried = numbers.get("works", 0) + numbers.get("fails", 0)
    if status == "not tried":
        return "not tried"
    other = "fails" if status == "works" else "works"
    extra = f"; {other} in {numbers[other]}" if numbers.get(other) else ""
    return f"{status} ({numbers.get(status, 0)} of {tried} measurements{extra})"


def _still_works(event: dict[str, Any] | None, names: dict[str, Any]) -> StillWorks | None:
    """The event's circumvention counts (``events.workarounds``), when it carries them."""
    if not event or not isinstance(event.get("workarounds"), dict):
        return None
    by_network = event.get("workarounds_by_network")
    if not isinstance(by_network, dict):
        asns = event.get("asns") or [""]
        by_network = {text(asns[0]): event["workarounds"]}
    families = list(
        dict.fromkeys(f for tally in by_network.values() if isinstance(tally, dict) for f in tally)
    )
    families.sort(key=lambda f: (ORDER.index(f) if f in ORDER else len(ORDER), f))
    rows = []
    for asn in sorted(by_network, key=_asn_order):
        tally = by_network[asn] if isinstance(by_network[asn], dict) else {}
        cells = [
            _count_words(tally[f]) if isinstance(tally.get(f), dict) else "not tried"
            for f in families
        ]
        rows.append((_operator(text(asn), names), cells))
    return StillWorks(
        sentence=text(event.get("workarounds_summary")),
        columns=[LABELS.get(f, f) for f in families],
        rows=rows,
    )


#: Above this many listed measurements the page counts them instead of listing each.
MAX_LISTED_LINES = 5000


def _index_line(r: IndexRow) -> Line:
    return Line(
        uid=r.measurement_uid,
        when=r.measurement_start_time,
        asn=r.probe_asn,
        input=r.input,
        verdict=r.verdict,
        verdict_css=_kind(r),
        method=r.method,
        signer="",
    )


def report_page(
    *,
    manifest: dict[str, Any],
    event: dict[str, Any] | None,
    measurements: list[dict[str, Any]],
    verdicts: list[dict[str, Any]],
    tree_head: dict[str, Any],
    index: list[IndexRow] | None = None,
) -> Page:
    """Everything the report states, as plain text and numbers."""
    rows = list(zip(measurements, verdicts, strict=False))
    names = manifest.get("names") if isinstance(manifest.get("names"), dict) else {}
    listed = list(index) if index is not None else _rows_of(rows)
    coverage = manifest.get("coverage") if isinstance(manifest.get("coverage"), dict) else None
    title = _title(event, rows, names)
    networks = _networks(listed, names)
    carried = {text(m.get("measurement_uid")) for m in measurements}
    return Page(
        title=title,
        created_at=text(manifest.get("created_at")),
        count=len(rows),
        format=text(manifest.get("format")),
        log=_log_facts(manifest, tree_head if isinstance(tree_head, dict) else {}, rows),
        event=_event_facts(event, names) if event else None,
        networks=networks,
        timeline=_timeline(rows, event),
        samples=[_sample(m, v) for m, v in _pick_samples(rows)],
        lines=[_line(m, v) for m, v in rows],
        summary=_summary(event, networks, names, title) if event else None,
        coverage=Coverage(
            listed=len(listed),
            carried=len(rows),
            whole=len(rows) == len(listed),
            max_bytes=f"{coverage.get('max_bytes'):,}"
            if isinstance(coverage.get("max_bytes"), int)
            else "?",
            policy=text(coverage.get("policy")),
        )
        if coverage is not None
        else None,
        methods=_methods(listed, event, names),
        days=_days(listed, names),
        extras=_extras(event),
        index_lines=tuple(_index_line(r) for r in listed if r.measurement_uid not in carried)
        if index is not None and len(listed) <= MAX_LISTED_LINES
        else (),
        still_works=_still_works(event, names),
    )


@cache
def _environment() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("censorwatch.evidence", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_report(
    *,
    manifest: dict[str, Any],
    event: dict[str, Any] | None,
    measurements: list[dict[str, Any]],
    verdicts: list[dict[str, Any]],
    tree_head: dict[str, Any],
    index: list[IndexRow] | None = None,
    template: str = "report.html",
    bundle_sha256: str = "",
    bundle_name: str = "BUNDLE.zip",
) -> str:
    """The report page for a bundle's contents (deterministic). ``template`` ``print.html``
    is the same page for paper (``evidence.pdf``), which prints ``bundle_sha256``."""
    page = report_page(
        manifest=manifest,
        event=event,
        measurements=measurements,
        verdicts=verdicts,
        tree_head=tree_head,
        index=index,
    )
    return (
        _environment()
        .get_template(template)
        .render(page=page, anchor=ANCHOR, bundle_sha256=bundle_sha256, bundle_name=bundle_name)
    )
