"""Events on the emulated network: blocks switched on and off at known times, probed in rounds.

Three networks block x.com (two switch on and off again, one switches on later and stays on),
one network is unblocked but loses 5% of its packets, one is unblocked and clean. The censors
are switched between rounds and the switch times recorded, so the truth is exact whatever the
machine's load. Every true onset and end must lie inside its bracket, each bracket at most one
round wide; the unblocked networks get no event; the national event names exactly the blocking
networks.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest

from censorwatch.analysis import analyze
from censorwatch.events import detect_events
from censorwatch.netinfo import AddressPlan
from censorwatch.testbed import manager
from censorwatch.times import parse_time
from testbed_support import running_testbed

pytestmark = pytest.mark.netns

ROUNDS = 8
# After which round each switch happens: (round, network, on).
SWITCHES = [
    (2, "AS64701", True),
    (2, "AS64702", True),
    (3, "AS64703", True),
    (5, "AS64701", False),
    (5, "AS64702", False),
]
BLOCKING = {"AS64701": "tls-rst", "AS64702": "dns-inject", "AS64703": "tcp-drop"}
LOSSY, CLEAN = "AS64704", "AS64705"
PROBE = [
    "--url",
    "https://x.com/",
    "--connect-timeout",
    "2",
    "--tls-timeout",
    "2",
    "--dns-timeout",
    "1.5",
    "--http-timeout",
    "3",
    "--url-deadline",
    "6",
]


def scenario() -> str:
    parts = ['name = "events"']
    for asn in [*BLOCKING, LOSSY, CLEAN]:
        parts.append(f'[[network]]\nasn = "{asn}"\ncc = "PK"')
    parts.append('[[target]]\nhost = "x.com"')
    parts.append(
        f'[[censor]]\nnetwork = "{LOSSY}"\nmethod = "packet-loss"\ntargets = ["x.com"]\nloss = "5%"'
    )
    return "\n\n".join(parts) + "\n"


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("events-testbed")
    path = folder / "events.toml"
    path.write_text(scenario())
    with running_testbed(path, "cwevents") as tb:
        plan = AddressPlan.load(tb.state.address_plan_file)
        verdicts, round_starts, switched = [], [], {}
        for number in range(1, ROUNDS + 1):
            round_starts.append(time.time())
            procs = []
            for asn in [*BLOCKING, LOSSY, CLEAN]:
                argv, env = manager.exec_argv(
                    tb.id, asn, [sys.executable, "-m", "censorwatch", "probe", *PROBE]
                )
                procs.append(
                    subprocess.Popen(
                        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
                    )
                )
            for proc in procs:
                out, _ = proc.communicate(timeout=120)
                for line in out.splitlines():
                    verdicts.append(analyze(json.loads(line), plan=plan).to_record())
            for after, asn, on in SWITCHES:
                if after == number:
                    manager.set_method(tb.id, asn, BLOCKING[asn], ["x.com"], on)
                    switched[(asn, on)] = datetime.now(UTC)
            # Measurement times have whole seconds: keep every switch in a second of its own.
            time.sleep(1.1)
        events = [e.to_record() for e in detect_events(verdicts)]
        periods = [b - a for a, b in itertools.pairwise(round_starts)]
        yield {"verdicts": verdicts, "events": events, "switched": switched, "round": max(periods)}


def network_events(observed: dict, asn: str) -> list[dict]:
    return [
        e
        for e in observed["events"]
        if e["scope"] == "network" and e["asns"] == [asn] and e["target"] == "x.com"
    ]


def width(bracket: dict) -> float:
    return (parse_time(bracket["before"]) - parse_time(bracket["after"])).total_seconds()


@pytest.mark.parametrize("asn", list(BLOCKING))
def test_onset_and_end_lie_in_brackets_one_round_wide(observed: dict, asn: str) -> None:
    events = network_events(observed, asn)
    assert len(events) == 1, events
    event = events[0]
    onset = observed["switched"][(asn, True)]
    assert parse_time(event["onset"]["after"]) <= onset <= parse_time(event["onset"]["before"])
    assert width(event["onset"]) <= observed["round"] + 1  # OONI times have whole seconds
    assert BLOCKING[asn].split("-")[0] in " ".join(event["methods"])
    if (asn, False) not in observed["switched"]:
        assert event["status"] == "ongoing" and event["end"] is None
    else:
        end = observed["switched"][(asn, False)]
        assert event["status"] == "ended"
        assert parse_time(event["end"]["after"]) <= end <= parse_time(event["end"]["before"])
        assert width(event["end"]) <= observed["round"] + 1


@pytest.mark.parametrize("asn", [LOSSY, CLEAN])
def test_no_event_on_unblocked_networks(observed: dict, asn: str) -> None:
    assert [e for e in observed["events"] if asn in e["asns"]] == []


def test_national_event_lists_exactly_the_blocking_networks(observed: dict) -> None:
    national = [e for e in observed["events"] if e["scope"] == "national"]
    assert national, observed["events"]
    assert any(set(e["asns"]) == set(BLOCKING) for e in national), national
    assert all(set(e["asns"]) <= set(BLOCKING) for e in national), national
