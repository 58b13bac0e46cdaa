"""The human half of a bundle: one self-contained HTML page that tells the story.

The page is a pure function of the bundle's contents (no clock, no randomness, no external
resource), so ``verify`` renders it again and compares bytes: the report cannot claim anything
the measurements, verdicts and signed tree head do not carry.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime
from html import escape
from typing import Any

from censorwatch.model import parse_time

COLOURS = {"blocked": "#c0392b", "ok": "#27ae60", "down": "#7f8c8d", "unknown": "#b0b6bb"}
MAX_SAMPLES = 6

_CSS = """
body{font:15px/1.5 system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:62em;
color:#1d2329;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid
#dde;padding-bottom:.2em}table{border-collapse:collapse;width:100%;font-size:.9em}
td,th{border-bottom:1px solid #e4e7ea;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f5f6f7}code{font-size:.85em;word-break:break-all}.muted{color:#66707a}
.box{background:#f5f8fb;border:1px solid #d8e2ec;padding:.8em 1em;border-radius:4px}
.v-blocked{color:#c0392b;font-weight:600}.v-ok{color:#27ae60}.v-down,.v-unknown{color:#66707a}
.sample{border:1px solid #e4e7ea;border-radius:4px;padding:.6em 1em;margin:1em 0}
""".strip()


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _time(value: Any) -> datetime | None:
    try:
        return parse_time(str(value))
    except (ValueError, TypeError):
        return None


def _iso(dt: datetime | None) -> str:
    return dt.strftime("%Y-%m-%d %H:%M UTC") if dt else "?"


def _asn_order(asn: str) -> tuple[int, str]:
    digits = asn.removeprefix("AS")
    return (int(digits), asn) if digits.isdigit() else (1 << 32, asn)


def _verdict(v: dict[str, Any]) -> str:
    kind = v.get("verdict")
    return kind if kind in COLOURS else "unknown"


def render_report(
    *,
    manifest: dict[str, Any],
    event: dict[str, Any] | None,
    measurements: list[dict[str, Any]],
    verdicts: list[dict[str, Any]],
    tree_head: dict[str, Any],
) -> str:
    """The report page for a bundle's contents (deterministic)."""
    rows = list(zip(measurements, verdicts, strict=False))
    title = _title(event, rows)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="muted">Evidence bundle exported {_e(manifest.get("created_at"))} · '
        f"{len(rows)} measurements · format {_e(manifest.get('format'))}</p>",
        _verification_box(manifest, tree_head, rows),
    ]
    if event:
        parts.append(_event_section(event))
    parts += [
        _networks_section(rows),
        _timeline_section(rows, event),
        _samples_section(rows),
        _all_section(rows),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _title(event: dict[str, Any] | None, rows: list[tuple[dict[str, Any], dict[str, Any]]]) -> str:
    if event:
        return f"{event.get('target')} blocked in {event.get('cc')} ({event.get('scope')} event)"
    ccs = sorted({str(m.get("probe_cc")) for m, _ in rows})
    return f"Measurements from {', '.join(ccs) or 'unknown countries'}"


def _verification_box(
    manifest: dict[str, Any],
    head: dict[str, Any],
    rows: list[tuple[dict[str, Any], dict[str, Any]]],
) -> str:
    signed = Counter(
        m["x_signature"].get("key_id") for m, _ in rows if isinstance(m.get("x_signature"), dict)
    )
    ts = head.get("timestamp")
    when = (
        datetime.fromtimestamp(ts / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        if isinstance(ts, int)
        else "?"
    )
    keys = ", ".join(f"<code>{_e(k)}</code> ({n})" for k, n in sorted(signed.items())) or "none"
    return (
        '<div class="box"><strong>How to check this report.</strong> Run '
        "<code>censorwatch evidence verify THIS.zip</code>: it needs no network and no "
        "database. It checks each probe signature, proves each measurement is in the log's "
        "tree of "
        f"<strong>{_e(head.get('tree_size'))}</strong> entries (root "
        f"<code>{_e(head.get('root_hash'))}</code>, signed {_e(when)} by log "
        f"<code>{_e(manifest.get('log_id'))}</code>), re-runs the analysis and re-renders "
        "this page. Compare the log id with the one the log operator publishes."
        f"<br>Signed by probe keys: {keys}; unsigned (e.g. imported from OONI): "
        f"{sum(1 for m, _ in rows if not isinstance(m.get('x_signature'), dict))}.</div>"
    )


def _event_section(event: dict[str, Any]) -> str:
    onset = event.get("onset") or {}
    end = event.get("end") or {}
    rows = [
        ("Event", f"<code>{_e(event.get('event_id'))}</code> ({_e(event.get('scope'))})"),
        ("Country", _e(event.get("cc"))),
        ("Networks", _e(", ".join(event.get("asns") or []))),
        ("Target", _e(event.get("target"))),
        ("Methods", _e(", ".join(event.get("methods") or []) or "not determined")),
        (
            "Onset",
            f"after {_e(onset.get('after') or 'start of data')}, "
            f"no later than {_e(onset.get('before'))}",
        ),
        (
            "End",
            f"after {_e(end.get('after'))}, no later than {_e(end.get('before'))}"
            if end
            else "ongoing at export",
        ),
        ("Status", _e(event.get("status"))),
        ("Confidence", _e(event.get("confidence"))),
    ]
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<h2>The event</h2><table>{body}</table>"


def _networks_section(rows: list[tuple[dict[str, Any], dict[str, Any]]]) -> str:
    by_asn: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = defaultdict(list)
    for m, v in rows:
        by_asn[str(m.get("probe_asn"))].append((m, v))
    lines = []
    for asn in sorted(by_asn, key=_asn_order):
        group = by_asn[asn]
        counts = Counter(_verdict(v) for _, v in group)
        methods = Counter(v.get("method") for _, v in group if v.get("method"))
        times = sorted(t for m, _ in group if (t := _time(m.get("measurement_start_time"))))
        lines.append(
            f"<tr><td>{_e(asn)}</td><td>{_e(group[0][0].get('probe_cc'))}</td>"
            f"<td>{len(group)}</td><td class='v-blocked'>{counts['blocked']}</td>"
            f"<td>{counts['ok']}</td><td>{counts['down'] + counts['unknown']}</td>"
            f"<td>{_e(', '.join(f'{k} ({n})' for k, n in sorted(methods.items())))}</td>"
            f"<td>{_iso(times[0] if times else None)}</td>"
            f"<td>{_iso(times[-1] if times else None)}</td></tr>"
        )
    return (
        "<h2>Networks and methods</h2><table><tr><th>Network</th><th>CC</th><th>Measured</th>"
        "<th>Blocked</th><th>OK</th><th>Down/unknown</th><th>Methods</th><th>First</th>"
        f"<th>Last</th></tr>{''.join(lines)}</table>"
    )


def _time_extent(times: list[datetime], event: dict[str, Any] | None) -> tuple[float, float]:
    """The chart's time range: the measurements and the event's brackets, padded by a tenth."""
    stamps = [t.timestamp() for t in times]
    for name in ("onset", "end"):
        bracket = (event or {}).get(name)
        if isinstance(bracket, dict):
            stamps += [t.timestamp() for k in ("after", "before") if (t := _time(bracket.get(k)))]
    t0, t1 = min(stamps), max(stamps)
    pad = max((t1 - t0) / 10, 5.0)
    return t0 - pad, t1 + pad


def _timeline_section(
    rows: list[tuple[dict[str, Any], dict[str, Any]]], event: dict[str, Any] | None
) -> str:
    points = [
        (t, str(m.get("probe_asn")), _verdict(v), m, v)
        for m, v in rows
        if (t := _time(m.get("measurement_start_time")))
    ]
    if not points:
        return "<h2>Timeline</h2><p>No measurement carries a readable time.</p>"
    asns = sorted({p[1] for p in points}, key=_asn_order)
    t0, t1 = _time_extent([p[0] for p in points], event)
    left, width, row_h, top = 110, 760, 26, 20
    height = top + row_h * len(asns) + 40

    def x(ts: float) -> float:
        return round(left + (ts - t0) / (t1 - t0) * width, 1)

    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {left + width + 20} {height}" '
        f'width="100%" role="img" aria-label="Verdicts over time per network">'
    ]
    for bracket, label in (
        ((event or {}).get("onset"), "onset"),
        ((event or {}).get("end"), "end"),
    ):
        if not isinstance(bracket, dict):
            continue
        after, before = _time(bracket.get("after")), _time(bracket.get("before"))
        if before is None:
            continue
        xb = min(max(x(before.timestamp()), left), left + width)
        xa = min(max(x(after.timestamp()), left), left + width) if after else left
        svg.append(
            f'<rect x="{xa}" y="{top - 10}" width="{round(max(xb - xa, 1), 1)}" '
            f'height="{row_h * len(asns) + 10}" fill="#f1c40f" opacity="0.25"/>'
            f'<text x="{xb}" y="{top - 12}" font-size="11" text-anchor="middle">{label}</text>'
        )
    for i, asn in enumerate(asns):
        y = top + row_h * i + row_h / 2
        svg.append(
            f'<text x="{left - 8}" y="{y + 4}" font-size="12" text-anchor="end">{_e(asn)}</text>'
            f'<line x1="{left}" y1="{y}" x2="{left + width}" y2="{y}" stroke="#e4e7ea"/>'
        )
    for t, asn, kind, m, v in sorted(points, key=lambda p: (p[0], p[1])):
        y = top + row_h * asns.index(asn) + row_h / 2
        tip = f"{_iso(t)} {asn} {kind} {v.get('method') or ''} {m.get('measurement_uid')}"
        svg.append(
            f'<circle cx="{x(t.timestamp())}" cy="{y}" r="4" fill="{COLOURS[kind]}">'
            f"<title>{_e(tip)}</title></circle>"
        )
    axis_y = top + row_h * len(asns) + 14
    tick_format = "%Y-%m-%d %H:%M" if t1 - t0 >= 600 else "%Y-%m-%d %H:%M:%S"
    for k in range(5):
        ts = t0 + (t1 - t0) * k / 4
        label = datetime.fromtimestamp(ts, UTC).strftime(tick_format)
        anchor = "start" if k == 0 else "end" if k == 4 else "middle"
        svg.append(
            f'<text x="{x(ts)}" y="{axis_y}" font-size="11" text-anchor="{anchor}">{label}</text>'
        )
    legend = " ".join(f'<span style="color:{c}">●</span> {k}' for k, c in COLOURS.items())
    svg.append("</svg>")
    return f"<h2>Timeline</h2>{''.join(svg)}<p class='muted'>{legend} (times UTC)</p>"


def _failed_step(m: dict[str, Any], v: dict[str, Any]) -> str:
    keys = m.get("test_keys") if isinstance(m.get("test_keys"), dict) else {}
    steps = []
    for q in keys.get("queries") or []:
        # No AAAA answer is how most IPv4-only sites look, not a failed step.
        if (
            isinstance(q, dict)
            and q.get("failure")
            and not (q.get("query_type") == "AAAA" and q.get("failure") == "dns_no_answer")
        ):
            steps.append(f"DNS lookup of {q.get('hostname')}: {q.get('failure')}")
    for c in keys.get("tcp_connect") or []:
        status = c.get("status") if isinstance(c, dict) else None
        if isinstance(status, dict) and status.get("failure"):
            steps.append(f"TCP connect to {c.get('ip')}:{c.get('port')}: {status['failure']}")
    for h in keys.get("tls_handshakes") or []:
        if isinstance(h, dict) and h.get("failure"):
            steps.append(f"TLS handshake with SNI {h.get('server_name')}: {h.get('failure')}")
    for r in keys.get("requests") or []:
        if isinstance(r, dict) and r.get("failure"):
            url = (r.get("request") or {}).get("url") if isinstance(r.get("request"), dict) else ""
            steps.append(f"HTTP request {url}: {r.get('failure')}")
    if not steps:
        layers = v.get("layers") if isinstance(v.get("layers"), dict) else {}
        bad = [k for k in ("dns", "tcp", "tls", "http") if layers.get(k) not in (None, "ok")]
        steps = [f"{k.upper()} layer: {layers[k]}" for k in bad] or ["no step failed"]
    return "; ".join(dict.fromkeys(steps))


def _control_view(m: dict[str, Any]) -> str:
    keys = m.get("test_keys") if isinstance(m.get("test_keys"), dict) else {}
    control = keys.get("control")
    if not isinstance(control, dict) or not control:
        return "no control result in this measurement"
    seen = []
    dns = control.get("dns")
    if isinstance(dns, dict):
        seen.append(
            f"DNS: {dns.get('failure')}"
            if dns.get("failure")
            else f"DNS answered {', '.join(map(str, dns.get('addrs') or [])) or 'nothing'}"
        )
    tcp = control.get("tcp_connect")
    if isinstance(tcp, dict) and tcp:
        ok = sum(1 for s in tcp.values() if isinstance(s, dict) and s.get("status"))
        seen.append(f"TCP: {ok}/{len(tcp)} endpoints connected")
    tls = control.get("tls_handshake")
    if isinstance(tls, dict) and tls:
        ok = sum(1 for s in tls.values() if isinstance(s, dict) and s.get("status"))
        seen.append(f"TLS: {ok}/{len(tls)} handshakes succeeded")
    http = control.get("http_request")
    if isinstance(http, dict):
        if http.get("failure"):
            seen.append(f"HTTP: {http['failure']}")
        else:
            seen.append(
                f"HTTP {http.get('status_code')}, title {http.get('title')!r}, "
                f"{http.get('body_length')} bytes"
            )
    return "; ".join(seen) or "control result present but empty"


def _samples_section(rows: list[tuple[dict[str, Any], dict[str, Any]]]) -> str:
    blocked = [(m, v) for m, v in rows if _verdict(v) == "blocked"]
    pool = blocked or rows
    by_asn: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = defaultdict(list)
    for m, v in pool:
        by_asn[str(m.get("probe_asn"))].append((m, v))
    picked: list[tuple[dict[str, Any], dict[str, Any]]] = []
    depth = 0
    while len(picked) < MAX_SAMPLES and any(len(g) > depth for g in by_asn.values()):
        for asn in sorted(by_asn, key=_asn_order):
            if depth < len(by_asn[asn]) and len(picked) < MAX_SAMPLES:
                picked.append(by_asn[asn][depth])
        depth += 1
    out = ["<h2>What the measurements show</h2>"]
    for m, v in picked:
        sig = m.get("x_signature")
        signer = (
            f"signed by probe key <code>{_e(sig.get('key_id'))}</code>"
            if isinstance(sig, dict)
            else "unsigned"
        )
        out.append(
            f'<div class="sample"><strong>{_e(m.get("probe_asn"))}</strong> · '
            f"{_e(m.get('measurement_start_time'))} UTC · {_e(m.get('input'))}<br>"
            f"Verdict: <span class='v-{_verdict(v)}'>{_e(v.get('verdict'))}</span>"
            f"{' (' + _e(v.get('method')) + ')' if v.get('method') else ''}"
            f", confidence {_e(v.get('confidence'))}<br>"
            f"Step that failed: {_e(_failed_step(m, v))}<br>"
            f"What the control saw: {_e(_control_view(m))}<br>"
            f"<span class='muted'><code>{_e(m.get('measurement_uid'))}</code> · {signer}</span>"
            "</div>"
        )
    return "".join(out)


def _all_section(rows: list[tuple[dict[str, Any], dict[str, Any]]]) -> str:
    lines = []
    for m, v in rows:
        sig = m.get("x_signature")
        lines.append(
            f"<tr><td><code>{_e(m.get('measurement_uid'))}</code></td>"
            f"<td>{_e(m.get('measurement_start_time'))}</td><td>{_e(m.get('probe_asn'))}</td>"
            f"<td>{_e(m.get('input'))}</td>"
            f"<td class='v-{_verdict(v)}'>{_e(v.get('verdict'))}</td>"
            f"<td>{_e(v.get('method') or '')}</td>"
            f"<td>{_e(sig.get('key_id') if isinstance(sig, dict) else 'unsigned')}</td></tr>"
        )
    return (
        "<h2>Every measurement in this bundle</h2><table><tr><th>Measurement</th><th>Time</th>"
        "<th>Network</th><th>Input</th><th>Verdict</th><th>Method</th><th>Probe key</th></tr>"
        f"{''.join(lines)}</table>"
    )
