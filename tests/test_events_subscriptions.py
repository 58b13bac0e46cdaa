"""Alerts a newsroom can subscribe to, and the Atom feed of events.

One national block of X across four networks is dozens of event records (per host and per
platform, per network and national). A subscriber at the default depth gets one alert for it,
carrying the networks and hosts inside; deeper subscriptions and the filters select more or
less. The feed is read back by a real feed reader's parser (feedparser).
"""

from __future__ import annotations

import json
from pathlib import Path

import feedparser
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from censorwatch.cli import app
from censorwatch.events import EventTracker
from censorwatch.events.alerts import Subscription
from censorwatch.events.api import router
from censorwatch.events.platforms import load_platforms
from censorwatch.events.stored import StoredEvents
from censorwatch.store import open_store
from test_events_alerts import Receiver, free_port
from test_events_cli import HOSTS, PLAN, verdicts, write
from test_events_store import row

BLOCKING = sorted(asn for asn, (start, _, _) in PLAN.items() if start is not None)


def detected(records: list[dict]) -> tuple[list, list, list]:
    tracker = EventTracker()
    changes = tracker.update(records)
    return changes, tracker.events(), load_platforms()


def test_one_alert_per_national_block_carrying_its_networks_and_hosts():
    changes, events, platforms = detected(verdicts())
    assert len(changes) > 20  # every host and platform, per network and national
    (alert,) = Subscription().messages(changes, events, platforms)
    assert (alert["kind"], alert["event"]["scope"], alert["event"]["target"]) == (
        "opened",
        "national",
        "x",
    )
    assert [n["asn"] for n in alert["networks"]] == BLOCKING
    by_asn = {n["asn"]: n for n in alert["networks"]}
    assert by_asn["AS9541"]["status"] == "ended" and by_asn["AS17557"]["status"] == "ongoing"
    assert by_asn["AS140499"]["methods"] == ["http.blockpage"]
    assert sorted(h["host"] for h in alert["hosts"]) == sorted(HOSTS)
    assert all(h["asns"] == BLOCKING for h in alert["hosts"])


def test_deeper_subscriptions_add_networks_then_hosts():
    changes, events, platforms = detected(verdicts())
    national = Subscription("national").messages(changes, events, platforms)
    network = Subscription("network").messages(changes, events, platforms)
    host = Subscription("host").messages(changes, events, platforms)
    assert len(national) < len(network) < len(host) == len(changes)
    assert {m["alert_id"] for m in national} < {m["alert_id"] for m in network}
    # the network depth tells the platform's network events, not each host's
    assert {m["event"]["target"] for m in network if m["event"]["scope"] == "network"} == {"x"}
    assert {(m["kind"], m["event"]["asns"][0]) for m in network if m["kind"] == "ended"} == {
        ("ended", "AS9541")
    }


def test_filters_by_country_and_target():
    changes, events, platforms = detected(verdicts())
    assert Subscription(ccs=frozenset({"IR"})).messages(changes, events, platforms) == []
    assert len(Subscription(ccs=frozenset({"PK"})).messages(changes, events, platforms)) == 1
    # a host matches the platform event that holds it; an unrelated host matches nothing
    (held,) = Subscription(targets=frozenset({"t.co"})).messages(changes, events, platforms)
    assert held["event"]["target"] == "x"
    assert (
        Subscription(targets=frozenset({"example.org"})).messages(changes, events, platforms) == []
    )


def test_incremental_runs_tell_a_growing_block_once_per_change():
    """Fed round by round, the national block opens once and then grows network by network:
    one ``networks_changed`` per network that joins, never a second ``opened``."""
    records = verdicts()
    tracker = EventTracker()
    platforms = load_platforms()
    told = []
    per_round = len(PLAN) * len(HOSTS)
    for start in range(0, len(records), per_round):
        changes = tracker.update(records[start : start + per_round])
        told += Subscription().messages(changes, tracker.events(), platforms)
    kinds = [m["kind"] for m in told]
    assert kinds.count("opened") == 1 and kinds[0] == "opened"
    grown = [m["event"]["asns"] for m in told if m["kind"] == "networks_changed"]
    assert grown and all(len(a) > len(b) for a, b in zip(grown[1:], grown, strict=False))
    assert sorted(grown[-1]) == BLOCKING
    assert len({m["alert_id"] for m in told}) == len(told)


@pytest.mark.slow
def test_cli_sends_one_alert_for_the_national_block(tmp_path: Path):
    port = free_port()
    receiver = Receiver(port)
    data = write(tmp_path / "v.jsonl", verdicts())
    base = ["events", "--json", "--state", str(tmp_path / "s.json"), "--webhook"]
    try:
        result = CliRunner().invoke(app, [*base, f"http://127.0.0.1:{port}/", str(data)])
        assert result.exit_code == 0, result.output
    finally:
        receiver.close()
    (alert,) = receiver.received
    assert alert["event"]["scope"] == "national" and len(alert["hosts"]) == len(HOSTS)
    bad = CliRunner().invoke(app, ["events", "--alert-scope", "everything", str(data)])
    assert bad.exit_code == 2 and "--alert-scope" in bad.output


@pytest.fixture()
def client(tmp_path: Path):
    store = open_store(tmp_path / "store.duckdb")
    store.add([row(v) for v in verdicts()])
    StoredEvents.rebuild(store)
    api = FastAPI()
    api.state.store = store
    api.include_router(router)
    with TestClient(api) as c:
        yield c
    getattr(store, "close", lambda: None)()


def test_atom_feed_holds_the_same_events_as_the_json_list(client: TestClient):
    params = {"probe_cc": "PK", "scope": "national"}
    listed = client.get("/api/v1/events", params=params).json()["results"]
    response = client.get("/api/v1/events.atom", params=params)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/atom+xml")
    feed = feedparser.parse(response.content)
    assert not feed.bozo, feed.bozo_exception
    assert feed.version == "atom10"
    ids = [e.id.removeprefix("urn:censorwatch:event:") for e in feed.entries]
    assert sorted(ids) == sorted(e["event_id"] for e in listed)
    entry = next(e for e in feed.entries if e.id.endswith(listed[0]["event_id"]))
    assert "blocked in PK on 4 of 5 networks" in entry.title
    assert entry.link.endswith(f"/explorer/events/{listed[0]['event_id']}")
    assert {"national", "PK"} <= {t.term for t in entry.tags}
    # newest change first; the feed's own time is its newest entry's
    updated = [e.updated_parsed for e in feed.entries]
    assert updated == sorted(updated, reverse=True)
    assert feed.feed.updated_parsed == updated[0]


def test_atom_feed_filters_and_rejects_like_the_list(client: TestClient):
    ended = feedparser.parse(
        client.get("/api/v1/events.atom", params={"probe_asn": "AS9541", "status": "ended"}).content
    )
    assert ended.entries and all("AS9541" in {t.term for t in e.tags} for e in ended.entries)
    empty = feedparser.parse(client.get("/api/v1/events.atom", params={"probe_cc": "IR"}).content)
    assert not empty.bozo and empty.entries == []
    assert client.get("/api/v1/events.atom", params={"scope": "bogus"}).status_code == 422
    assert client.get("/api/v1/events.atom", params={"since": "yesterday"}).status_code == 400


def test_json_list_is_unchanged_by_the_shared_filters(client: TestClient):
    body = client.get("/api/v1/events", params={"limit": 2}).json()
    assert body["metadata"]["limit"] == 2 and len(body["results"]) == 2
    assert body["metadata"]["count"] > 2
    assert json.loads(json.dumps(body["results"][0]))["event_id"].startswith("evt_")
