"""The explorer's step tables read observations: on real OONI files they show the titles,
failures and addresses the analysis reasons about, whatever shape the file has."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path

import pytest

from censorwatch.observations.builder import observe
from censorwatch.observations.reader import iter_measurements
from censorwatch.observations.schema import to_typed
from censorwatch.observations.text import title_of
from censorwatch.web import steps

OONI = Path(__file__).resolve().parents[2] / "shared" / "data" / "ooni"
pytestmark = pytest.mark.skipif(not OONI.is_dir(), reason=f"OONI data not found at {OONI}")


def _loaded() -> list[tuple[str, dict]]:
    return [(i.source, i.record) for i in iter_measurements([OONI]) if i.ok and i.record]


def test_steps_show_what_the_analysis_sees_on_every_real_file() -> None:
    checked = 0
    for source, m in _loaded():
        typed, _ = to_typed(m)
        if typed.test_keys is None:
            assert steps.steps(m).empty, source
            continue
        obs = observe(typed.test_keys)
        s = steps.steps(m)
        assert [r["title"] for r in s.http] == [title_of(h.body) for h in obs.http], source
        assert [r["failure"] for r in s.http] == [h.failure for h in obs.http], source
        assert [r["failure"] for r in s.dns] == [q.failure for q in obs.queries], source
        assert [(r["ip"], r["failure"]) for r in s.tcp] == [(t.ip, t.failure) for t in obs.tcp]
        if s.compare:
            what, mine, theirs = s.compare[0]
            assert what == "DNS addresses"
            addrs = sorted({a for q in obs.queries for a in q.addrs})
            assert mine.split(", ") == addrs or not addrs, source
            assert theirs.split(", ") == obs.control.dns_addrs or not obs.control.dns_addrs
        checked += 1
    assert checked > 50


def _wc05(name: str) -> dict:
    return json.loads((OONI / "wc05_qa" / name).read_text())


def test_a_base64_body_shows_its_title() -> None:
    m = _wc05("httpDiffWithConsistentDNS.json")
    page = "<html><head><title>Accès refusé</title></head></html>".encode("latin-1")
    response = m["test_keys"]["requests"][0]["response"]
    response["body"] = {"format": "base64", "data": base64.b64encode(page).decode()}
    row = steps.steps(m).http[0]
    assert row["title"] == "Accès refusé"
    assert row["body_length"] == len(page)


def test_the_final_response_is_the_last_hop_whatever_the_files_order() -> None:
    m = _wc05("redirectWithConsistentDNSAndThenConnectionResetForHTTP.json")
    requests = m["test_keys"]["requests"]
    assert len(requests) > 1
    s = steps.steps(m)
    final = next(row for row in s.compare if row[0] == "HTTP final response")
    assert final[1] == s.http[-1]["failure"] == "connection_reset"
    # The same transactions listed the other way round tell the same story.
    flipped = copy.deepcopy(m)
    flipped["test_keys"]["requests"] = requests[::-1]
    assert steps.steps(flipped).compare == s.compare


@pytest.mark.parametrize(
    "odd", [None, [], "x", {"test_keys": "nope"}, {"test_keys": {"queries": 5}}]
)
def test_odd_measurements_open_as_empty_tables(odd) -> None:
    s = steps.steps(odd)
    assert s.empty and s.control_failure is None
