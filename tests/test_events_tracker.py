"""The incremental tracker: what it reports as changed, and what its state file keeps."""

from __future__ import annotations

import itertools
import json
import random
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from censorwatch.events import EventTracker
from censorwatch.events.synthetic import T0
from censorwatch.times import rfc3339

ROUND = timedelta(minutes=1)


def rec(n: int, asn: str, verdict: str, method: str | None = None, host: str = "x.com") -> dict:
    return {
        "measurement_uid": f"{asn}-{host}-{n:04d}",
        "report_id": f"{asn}-{n}",
        "input": f"https://{host}/",
        "target": host,
        "probe_cc": "PK",
        "probe_asn": asn,
        "measurement_start_time": rfc3339(T0 + ROUND * n + timedelta(seconds=len(asn))),
        "verdict": verdict,
        "method": method,
        "confidence": 0.8,
    }


def kinds(changes, scope="network", target="x.com") -> list[str]:
    return [c.kind for c in changes if c.event.scope == scope and c.event.target == target]


def test_open_method_change_networks_change_and_end(tmp_path: Path) -> None:
    state = tmp_path / "s.json"
    a = [rec(i, "AS1", "ok") for i in range(5)] + [
        rec(i, "AS1", "blocked", "dns.forged") for i in range(5, 9)
    ]
    b = [rec(i, "AS2", "ok") for i in range(9)]
    tracker = EventTracker(state_path=state)
    assert kinds(tracker.update(a + b)) == ["opened"]
    tracker.save()

    tracker = EventTracker(state_path=state)  # a new process, from the state file
    more = [rec(i, "AS1", "blocked", "tls.reset") for i in range(9, 12)]
    assert kinds(tracker.update(more)) == ["methods_changed"]
    # A second network blocks too: a national event opens, then grows by a third network.
    b2 = [rec(i, "AS2", "blocked", "tls.reset") for i in range(12, 15)]
    a2 = [rec(i, "AS1", "blocked", "tls.reset") for i in range(12, 15)]
    changes = tracker.update(a2 + b2)
    assert kinds(changes, "national") == ["opened"]
    c = [rec(i, "AS3", "ok") for i in range(12)] + [
        rec(i, "AS3", "blocked", "tls.reset") for i in range(12, 17)
    ]
    changes = tracker.update(
        c + [rec(i, n, "blocked", "tls.reset") for i in (15, 16) for n in ("AS1", "AS2")]
    )
    assert kinds(changes, "national") == ["networks_changed"]
    national = next(c.event for c in changes if c.event.scope == "national")
    assert national.asns == ["AS1", "AS2", "AS3"]
    # Every network stops blocking: each network event ends, then the national one.
    ends = [rec(i, n, "ok") for i in (17, 18, 19) for n in ("AS1", "AS2", "AS3")]
    changes = tracker.update(ends)
    assert kinds(changes) == ["ended"] * 3
    assert kinds(changes, "national") == ["ended"]
    tracker.save()
    # Nothing new: nothing to report, and old verdicts are not taken twice.
    tracker = EventTracker(state_path=state)
    assert tracker.update(a + ends) == []
    assert tracker.late > 0


def test_state_file_is_json_and_refuses_other_parameters(tmp_path: Path) -> None:
    from censorwatch.events import DetectorParams

    state = tmp_path / "s.json"
    tracker = EventTracker(state_path=state)
    tracker.update([rec(i, "AS1", "ok") for i in range(3)])
    tracker.save()
    data = json.loads(state.read_text())
    assert data["version"] == 1 and "PK|AS1|x.com" in data["series"]
    with pytest.raises(ValueError, match="other detector parameters"):
        EventTracker(state_path=state, params=DetectorParams(k_min=3))


def test_platform_round_needs_a_majority_of_its_hosts() -> None:
    hosts = ["x.com", "twitter.com", "pbs.twimg.com", "t.co"]
    records = []
    for i in range(12):
        for h in hosts:
            # From round 4 one host of four is blocked: an event for the host, not the platform.
            blocked = i >= 4 and h == "t.co"
            records.append(rec(i, "AS1", "blocked" if blocked else "ok", "dns.nxdomain", h))
    tracker = EventTracker()
    tracker.update(records)
    targets = {e.target for e in tracker.events()}
    assert targets == {"t.co"}


def noisy_two_networks(seed: int) -> list[dict]:
    """Two networks, three hosts, one block each, 8% stray timeouts, gaps, unknowns."""
    rng = random.Random(seed)
    out = []
    for asn in ("AS1", "AS2"):
        start, stop = rng.randint(5, 30), rng.randint(35, 60)
        for r in range(70):
            for host in ("x.com", "t.co", "a.example"):
                if rng.random() < 0.1:
                    continue
                blocked = start <= r < stop and host != "a.example"
                x = rng.random()
                if (blocked and x > 0.1) or (not blocked and x < 0.08):
                    verdict = "blocked"
                else:
                    verdict = "unknown" if x < 0.12 else "ok"
                out.append(
                    rec(r, asn, verdict, "tls.reset" if blocked else "tcp.timeout", host)
                    | {"measurement_start_time": rfc3339(T0 + ROUND * 10 * r + ROUND * x * 9)}
                )
    return sorted(out, key=lambda v: v["measurement_start_time"])


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10**6), st.lists(st.floats(0.01, 0.99), min_size=1, max_size=5))
@pytest.mark.slow
def test_incremental_updates_equal_one_update(seed: int, cuts: list[float]) -> None:
    records = noisy_two_networks(seed)
    whole = EventTracker()
    whole.update(records)
    chunked = EventTracker()
    bounds = sorted({int(c * len(records)) for c in cuts})
    for a, b in itertools.pairwise([0, *bounds, len(records)]):
        chunked.update(records[a:b])
    assert [e.to_record() for e in chunked.events()] == [e.to_record() for e in whole.events()]
