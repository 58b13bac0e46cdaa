"""Where the censor sits, per event: the places the blocked measurements' localizations named,
counted per network, kept through the tracker's state and the stored events, and said by the
alerts, the explorer and the evidence report.

The localizations are the analysis' own decisions (``analysis.locate.decide`` over hop
records shaped as the probe writes them), so the events read what the store really holds.
"""

from __future__ import annotations

import json
import zlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec

from censorwatch.analysis.locate import decide
from censorwatch.events import EventTracker
from censorwatch.events.locations import place_of, words
from censorwatch.events.synthetic import T0
from censorwatch.observations.schema import LocateRun
from censorwatch.times import rfc3339
from event_helpers import by_scope, stored_rows

ROUND = timedelta(minutes=1)
EXPIRED, RESET = "time_exceeded", "reset"


def run(censor_hop: int, asn_at: dict[int, int], cc_at: dict[int, str]) -> LocateRun:
    """A TLS trigger's hops on a five-hop path with the censor's reset at ``censor_hop``."""
    hops = []
    for ttl in range(1, 6):
        reached = ttl == 5
        trigger = RESET if ttl >= censor_hop else EXPIRED
        hops.append(
            {
                "ttl": ttl,
                "address": f"198.18.{ttl}.1",
                "asn": asn_at.get(ttl),
                "cc": cc_at.get(ttl),
                "trigger": [trigger, trigger],
                "control": ["answer", "answer"] if reached else [EXPIRED, EXPIRED],
            }
        )
    return msgspec.convert({"trigger": "tls", "hops": hops}, LocateRun)


PATH_ASNS = {1: 64501, 2: 64501, 3: 65537, 4: 65536}
PATH_CCS = {1: "PK", 2: "PK", 3: "PK"}
#: AS64501's censor on its own access router; AS64502's on the national gateway (hop 3).
OWN = decide(run(1, PATH_ASNS, PATH_CCS), "AS64501", "PK").record()
GATEWAY = decide(run(3, {**PATH_ASNS, 1: 64502, 2: 64502}, PATH_CCS), "AS64502", "PK").record()
NOT_RUN = {"trigger": "tcp", "placement": "not_run", "not_run": "blocks on addresses"}


def rec(n: int, asn: str, verdict: str, located: dict[str, Any] | None = None) -> dict:
    record = {
        "measurement_uid": f"{asn}-{n:04d}",
        "report_id": f"{asn}-{n}",
        "input": "https://x.com/",
        "target": "x.com",
        "probe_cc": "PK",
        "probe_asn": asn,
        "measurement_start_time": rfc3339(T0 + ROUND * n + timedelta(seconds=len(asn))),
        "verdict": verdict,
        "method": "tls.reset" if verdict == "blocked" else None,
        "confidence": 0.8,
    }
    if located is not None:
        record["locate"] = located
    return record


def history() -> list[dict]:
    """AS64501: 6 blocked, 4 localized on hop 1, one not run; AS64502: 6 blocked, 3 on the
    gateway and one (a misread) on hop 2; AS64503 never blocks but was localized (ok)."""
    out = [rec(i, asn, "ok") for i in range(5) for asn in ("AS64501", "AS64502", "AS64503")]
    hop2 = {**GATEWAY, "hop": 2, "address": "198.18.2.1"}
    for i in range(5, 11):
        out.append(rec(i, "AS64501", "blocked", OWN if i < 9 else NOT_RUN if i == 9 else None))
        out.append(rec(i, "AS64502", "blocked", GATEWAY if i < 8 else hop2 if i == 8 else None))
        out.append(rec(i, "AS64503", "ok", {**OWN, "placement": "none", "hop": None}))
    return out


def test_the_analysis_places_the_two_censors() -> None:
    assert (OWN["hop"], OWN["placement"], OWN["asn"]) == (1, "own_isp", "AS64501")
    assert (GATEWAY["hop"], GATEWAY["placement"], GATEWAY["asn"]) == (
        3,
        "national_gateway",
        "AS65537",
    )
    assert place_of(NOT_RUN) is None and place_of("hop 3") is None
    assert place_of({"placement": "none", "trigger": "dns"}) == {"placement": "none", "hop": None}


def test_network_events_count_the_places_their_blocked_measurements_named() -> None:
    tracker = EventTracker()
    tracker.update(history())
    _, network = by_scope(tracker.events())
    own = network["AS64501"]
    assert own.censor_location == [
        {"placement": "own_isp", "hop": 1, "address": "198.18.1.1", "asn": "AS64501",
         "cc": "PK", "count": 4},
    ]  # fmt: skip
    assert own.censor_location_summary == (
        "censor at hop 1 (198.18.1.1, AS64501): in the probe's own ISP (4 of 4 localizations)"
    )
    gateway = network["AS64502"].censor_location
    assert [(p["hop"], p["count"]) for p in gateway] == [(3, 3), (2, 1)]  # most named first
    assert network["AS64502"].censor_location_summary.endswith(
        "at a national gateway (3 of 4 localizations)"
    )
    assert "AS64503" not in network  # an ok measurement's localization makes no event
    assert "censor_location_by_network" not in own.to_record()  # national events only


def test_a_national_event_keeps_each_networks_places() -> None:
    tracker = EventTracker()
    tracker.update(history())
    (event,), network = by_scope(tracker.events())
    assert event.censor_location_by_network == {
        "AS64501": network["AS64501"].censor_location,
        "AS64502": network["AS64502"].censor_location,
    }
    assert [p["count"] for p in event.censor_location] == [4, 3, 1]
    assert event.censor_location_summary == (
        "AS64501: " + words(network["AS64501"].censor_location) + "; "
        "AS64502: " + words(network["AS64502"].censor_location)
    )


def test_events_without_localizations_have_no_such_fields() -> None:
    tracker = EventTracker()
    tracker.update([{k: v for k, v in r.items() if k != "locate"} for r in history()])
    for event in tracker.events():
        assert not {"censor_location", "censor_location_by_network"} & set(event.to_record())


def test_places_survive_the_state_and_a_state_saved_before_them_loads() -> None:
    records = history()
    whole = EventTracker()
    whole.update(records)
    cut = len(records) - 9  # the last three rounds: one localization of AS64502 among them
    first = EventTracker()
    first.update(records[:cut])
    resumed = EventTracker.from_bytes(first.to_bytes())
    resumed.update(records[cut:])
    assert [e.to_record() for e in resumed.events()] == [e.to_record() for e in whole.events()]

    def strip(value: Any) -> Any:  # a state written before events counted places
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("locations", "locate")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    old = zlib.compress(json.dumps(strip(json.loads(zlib.decompress(first.to_bytes())))).encode())
    assert b"locations" not in zlib.decompress(old)
    continued = EventTracker.from_bytes(old)
    continued.update(records[cut:])
    _, network = by_scope(continued.events())
    later = [r for r in records[cut:] if r["probe_asn"] == "AS64502" and r.get("locate")]
    assert sum(p["count"] for p in network["AS64502"].censor_location) == len(later)


def test_stored_events_alerts_and_pages_say_where(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from censorwatch.app.asgi import create_app
    from censorwatch.collector.archive import Archive
    from censorwatch.collector.pipeline import Pipeline
    from censorwatch.events.alerts import Subscription
    from censorwatch.events.stored import StoredEvents
    from censorwatch.store import open_store

    records = history()
    rows = stored_rows(records)
    tracker = EventTracker(platforms=[])
    changes = tracker.update(records)
    messages = Subscription(scope="network").messages(changes, tracker.events(), [])
    _, network = by_scope(tracker.events())
    alert = next(m for m in messages if m["event_id"] == network["AS64502"].event_id)
    assert alert["censor_location_summary"].startswith("censor at hop 3 (198.18.3.1, AS65537)")

    with open_store(tmp_path / "cw.duckdb") as store:
        store.add(rows)
        writer = StoredEvents.rebuild(store)
        stored = {e.event_id: e for e in store.stored_events()}
        assert stored and all(stored[e.event_id] == e for e in writer.events())
        (national,), _ = by_scope(stored.values())
        assert set(national.censor_location_by_network) == {"AS64501", "AS64502"}
        pipeline = Pipeline(Archive(tmp_path / "archive"), store, events=writer)
        with TestClient(create_app(pipeline)) as client:
            page = client.get(f"/explorer/events/{national.event_id}")
            assert page.status_code == 200
            html = page.text
            assert "Where the censor sits" in html and "at a national gateway" in html
            assert "3 of 4" in html and "4 of 4" in html and "198.18.3.1" in html
            uid = next(r["measurement_uid"] for r in records if r.get("locate") == GATEWAY)
            measurement = client.get(f"/explorer/measurements/{uid}").text
            assert "censor at hop 3 (198.18.3.1, AS65537): at a national gateway" in measurement
            api = client.get("/api/v1/measurements", params={"probe_asn": "AS64502"}).json()
            located = [m["locate"] for m in api["results"] if m["locate"]]
            assert len(located) == 4 and {m["hop"] for m in located} == {2, 3}
