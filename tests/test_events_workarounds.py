"""What still gets through, per event: counted from the blocked measurements' summaries, per
network for national events, kept through the tracker's state and the stored events.

The summaries are the analysis' own (``analysis.workarounds.summarize`` over step records
shaped as the probe writes them), so the events read what the store really holds.
"""

from __future__ import annotations

import json
import zlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec

from censorwatch.analysis.workarounds import summarize
from censorwatch.events import EventTracker
from censorwatch.events.stored import StoredEvents
from censorwatch.events.synthetic import T0
from censorwatch.events.workarounds import family_statuses, headline, overall
from censorwatch.observations.schema import WorkaroundStep
from censorwatch.store import open_store
from censorwatch.times import rfc3339
from event_helpers import by_scope, stored_rows

ROUND = timedelta(minutes=1)


def step(technique: str, **fields: Any) -> WorkaroundStep:
    base = {"technique": technique, "address": "203.0.113.5:443", "status_code": 200,
            "title": "X", "certificate_valid": True}  # fmt: skip
    return msgspec.convert({**base, **fields}, WorkaroundStep)


#: What a TLS-reset network leaves open: DoH changes nothing (the name was never the block),
#: no SNI and HTTP/3 get through, another UDP resolver fails, ECH cannot be tried.
RESET = summarize(
    [
        step("doh:dns.google", failure="connection_reset", status_code=None),
        step("doh:cloudflare-dns.com", failure="connection_reset", status_code=None),
        step("no_sni", certificate_valid=False),
        step("http3", negotiated_protocol="h3"),
        step("udp:9.9.9.9:53", failure="connection_reset", status_code=None),
        step("ech", not_tried="no TLS library here offers Encrypted ClientHello"),
    ],
    "X",
)
#: A forged-DNS network: one DoH operator works, the other fails; the real addresses work.
FORGED = summarize(
    [
        step("doh:dns.google"),
        step("doh:cloudflare-dns.com", resolver_failure="generic_timeout_error"),
        step("real_addresses"),
        step("udp:9.9.9.9:53", status_code=200, title="Blocked by order"),
    ],
    "X",
)


def rec(n: int, asn: str, verdict: str, method: str | None = None, summary=None) -> dict:
    record = {
        "measurement_uid": f"{asn}-{n:04d}",
        "report_id": f"{asn}-{n}",
        "input": "https://x.com/",
        "target": "x.com",
        "probe_cc": "PK",
        "probe_asn": asn,
        "measurement_start_time": rfc3339(T0 + ROUND * n + timedelta(seconds=len(asn))),
        "verdict": verdict,
        "method": method,
        "confidence": 0.8,
    }
    if summary is not None:
        record["workarounds"] = summary
    return record


def blocking_history() -> list[dict]:
    """AS1 resets TLS (4 of its 6 blocked measurements carry a summary); AS2 forges DNS (one
    of its measurements' DoH failed); AS3 never blocks. Ok measurements carry no summary."""
    out = [rec(i, asn, "ok") for i in range(5) for asn in ("AS1", "AS2", "AS3")]
    for i in range(5, 11):
        out.append(rec(i, "AS1", "blocked", "tls.reset", RESET if i % 3 else None))
        out.append(rec(i, "AS2", "blocked", "dns.forged", FORGED))
        out.append(rec(i, "AS3", "ok"))
    return out


def test_a_measurement_counts_a_family_once_by_its_best_technique() -> None:
    assert family_statuses(FORGED) == {
        "doh": "works",  # one operator answered: a user there has a way
        "real_addresses": "works",
        "udp": "fails",  # a block page is not the page
    }
    assert family_statuses(RESET)["doh"] == "fails"
    assert family_statuses({"doh": "not a mapping", "x": {"status": "maybe"}}) is None


def test_network_events_count_their_blocked_measurements() -> None:
    tracker = EventTracker()
    tracker.update(blocking_history())
    _, network = by_scope(tracker.events())
    reset = network["AS1"]
    assert reset.workarounds == {
        "doh": {"works": 0, "fails": 4, "not tried": 0},
        "udp": {"works": 0, "fails": 4, "not tried": 0},
        "no_sni": {"works": 4, "fails": 0, "not tried": 0},
        "ech": {"works": 0, "fails": 0, "not tried": 4},
        "http3": {"works": 4, "fails": 0, "not tried": 0},
    }
    assert reset.workarounds_summary == (
        f"x.com blocked on AS1 by TLS reset since {reset.onset.before}; "
        "works: TLS without SNI, HTTP/3; fails: DoH, another UDP resolver"
    )
    assert network["AS2"].workarounds["doh"] == {"works": 6, "fails": 0, "not tried": 0}
    assert "AS3" not in network
    assert "workarounds_by_network" not in reset.to_record()  # national events only


def test_a_national_event_keeps_each_networks_counts() -> None:
    tracker = EventTracker()
    tracker.update(blocking_history())
    national, network = by_scope(tracker.events())
    (event,) = national
    assert event.workarounds_by_network == {
        "AS1": network["AS1"].workarounds,
        "AS2": network["AS2"].workarounds,
    }
    # The total: DoH worked in AS2's 6 measurements and failed in AS1's 4.
    assert event.workarounds["doh"] == {"works": 6, "fails": 4, "not tried": 0}
    assert overall(event.workarounds["doh"]) == "works"
    assert "DoH (6 of 10)" in event.workarounds_summary
    assert event.workarounds_summary.startswith("x.com blocked in PK on 2 networks (AS1, AS2) by")
    assert headline(event.workarounds).split("; ")[1].startswith("fails: another UDP resolver")


def test_events_without_summaries_have_no_such_fields() -> None:
    tracker = EventTracker()
    plain = [{k: v for k, v in r.items() if k != "workarounds"} for r in blocking_history()]
    tracker.update(plain)
    for event in tracker.events():
        record = event.to_record()
        assert not {"workarounds", "workarounds_by_network", "workarounds_summary"} & set(record)


def test_counts_survive_the_state_and_a_state_saved_before_them_loads(tmp_path: Path) -> None:
    history = blocking_history()
    whole = EventTracker()
    whole.update(history)
    cut = len(history) - 9
    first = EventTracker()
    first.update(history[:cut])
    resumed = EventTracker.from_bytes(first.to_bytes())
    resumed.update(history[cut:])
    assert [e.to_record() for e in resumed.events()] == [e.to_record() for e in whole.events()]

    # A state written before events counted workarounds: no such keys anywhere in it.
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "workarounds"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    old = zlib.compress(json.dumps(strip(json.loads(zlib.decompress(first.to_bytes())))).encode())
    assert b"workarounds" not in zlib.decompress(old)
    continued = EventTracker.from_bytes(old)
    continued.update(history[cut:])
    _, network = by_scope(continued.events())
    # Only the measurements fed after the load are counted (the old state had none).
    later = sum(1 for r in history[cut:] if r["probe_asn"] == "AS2" and r["verdict"] == "blocked")
    assert network["AS2"].workarounds["doh"]["works"] == later


def test_stored_events_keep_the_counts(tmp_path: Path) -> None:
    from censorwatch.store.base import ArchiveLocation

    rows = stored_rows(blocking_history())
    with open_store(tmp_path / "cw.duckdb") as store:
        store.add(rows)
        writer = StoredEvents.rebuild(store)
        stored = {e.event_id: e for e in store.stored_events()}
        assert stored and all(stored[e.event_id] == e for e in writer.events())
        national, network = by_scope(stored.values())
        assert network["AS1"].workarounds_summary.endswith("fails: DoH, another UDP resolver")
        assert set(national[0].workarounds_by_network) == {"AS1", "AS2"}
        location = ArchiveLocation("seg-00000001.jsonl.gz", 0)
        read_back = list(store.scan_from(location))
        assert [r.workarounds for r in read_back] == [r.workarounds for r in rows]


def test_alerts_say_what_still_gets_through() -> None:
    from censorwatch.events.alerts import Subscription

    tracker = EventTracker(platforms=[])
    changes = tracker.update(blocking_history())
    messages = Subscription(scope="network").messages(changes, tracker.events(), [])
    by_event = {m["event_id"]: m for m in messages}
    _, network = by_scope(tracker.events())
    reset = by_event[network["AS1"].event_id]
    assert reset["workarounds_summary"] == network["AS1"].workarounds_summary
    still = "; works: TLS without SNI, HTTP/3; fails: DoH, another UDP resolver"
    assert reset["summary"].endswith(still)
    assert json.loads(json.dumps(reset))["event"]["workarounds"]["http3"]["works"] == 4
