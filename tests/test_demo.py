"""``censorwatch demo`` end to end: the README's first command must stay true, and the
bundle it exports carries the cosignature of the witness that followed its collector's log."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pytest

from ooni_tools import assert_ooni_loads_all

pytestmark = pytest.mark.netns

BLOCKING = {"AS17557", "AS9541", "AS135407", "AS140499"}
OPEN = "AS23674"
WITNESS_NAME = "witness.censorwatch.demo/w1"


def test_demo_runs_the_whole_flow(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "censorwatch", "demo", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    measurements = [json.loads(line) for line in (out / "measurements.jsonl").open()]
    verdicts = [json.loads(line) for line in (out / "verdicts.jsonl").open()]
    events = [json.loads(line) for line in (out / "events.jsonl").open()]
    # 8 rounds x 5 networks x 7 X endpoints, each stored and judged.
    assert len(measurements) == len(verdicts) == 280
    # OONI's own loader reads every measurement the demo wrote
    assert_ooni_loads_all([out / "measurements.jsonl"], 280)
    blocked_networks = {v["probe_asn"] for v in verdicts if v["verdict"] == "blocked"}
    assert blocked_networks == BLOCKING
    national = [e for e in events if e["scope"] == "national" and e["target"] == "x"]
    assert len(national) == 1 and set(national[0]["asns"]) == BLOCKING
    assert not [e for e in events if OPEN in e["asns"]]
    assert_the_national_event_says_what_still_gets_through(national[0], proc.stdout)
    assert_the_national_event_says_where_the_censor_sits(national[0], proc.stdout)
    assert_the_bundle_holds_the_whole_event(out, national[0], verdicts)
    verify = subprocess.run(
        [
            *(sys.executable, "-m", "censorwatch", "evidence", "verify"),
            *(str(out / "evidence.zip"), "--log-id", demo_log_id(out)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "verified offline" in proc.stdout
    witness_key = (out / "witness.vkey").read_text().strip()
    assert witness_key.startswith(WITNESS_NAME + "+")
    no_trust_file = ["--trust-file", str(tmp_path / "no-trusted-logs")]
    witnessed = evidence_verify(out, "--witness", witness_key, "--quorum", "1", *no_trust_file)
    assert witnessed.returncode == 0, witnessed.stdout + witnessed.stderr
    assert witnessed.stdout.startswith("VERIFIED") and WITNESS_NAME in witnessed.stdout
    untrusted = evidence_verify(out, *no_trust_file)
    assert untrusted.returncode == 3, untrusted.stdout + untrusted.stderr
    assert proc.stdout.count("verified offline") == 2, proc.stdout[-3000:]
    assert f'--witness "$(cat {out / "witness.vkey"})" --quorum 1' in proc.stdout
    witness_url = witness_listened_at(out)
    with pytest.raises(httpx.HTTPError):  # the demo stopped its witness
        httpx.get(witness_url, timeout=2)
    assert not list(Path("/run/censorwatch/testbed").glob("cwdemo")), "the demo tears down"


def assert_the_national_event_says_what_still_gets_through(event: dict, stdout: str) -> None:
    """Every blocking network's probes tried ways around the block, and the matrix says, per
    network, what the scenario's censor leaves open: no SNI or HTTP/3 past the TLS reset on
    AS17557, DoH past the injected answers on AS9541."""
    by_network = event["workarounds_by_network"]
    assert set(by_network) == BLOCKING, sorted(by_network)
    assert all(by_network[asn] for asn in BLOCKING)
    works = {
        asn: {f for f, c in tally.items() if c["works"] >= c["fails"] and c["works"]}
        for asn, tally in by_network.items()
    }
    assert works["AS17557"] & {"no_sni", "http3"}, by_network["AS17557"]
    assert "doh" in works["AS9541"], by_network["AS9541"]
    assert "What still gets through, network by network" in stdout
    assert event["workarounds_summary"].startswith("x blocked in PK on 4 networks")


def assert_the_national_event_says_where_the_censor_sits(event: dict, stdout: str) -> None:
    """The last round's localizations place PTCL's TLS reset on its own access router (hop 1)
    and Cybernet's DNS injection on the national gateway (hop 3), as the scenario put them;
    the address and traffic blocks of the other two are not localizable and name no place."""
    places = event["censor_location_by_network"]
    assert set(places) == {"AS17557", "AS9541"}, places
    ptcl, cybernet = places["AS17557"][0], places["AS9541"][0]
    assert (ptcl["hop"], ptcl["placement"], ptcl["asn"]) == (1, "own_isp", "AS17557"), ptcl
    assert (cybernet["hop"], cybernet["placement"]) == (3, "national_gateway"), cybernet
    # every blocked endpoint of the last round was localized, and all agreed
    assert len(places["AS17557"]) == len(places["AS9541"]) == 1, places
    assert ptcl["count"] == cybernet["count"] == 7, places
    assert "Where the censor sits, network by network" in stdout
    assert "AS9541: censor at hop 3" in event["censor_location_summary"]


def assert_the_bundle_holds_the_whole_event(out: Path, event: dict, verdicts: list[dict]) -> None:
    """Every verdict of the event (its networks, onset bracket to end bracket) is listed and
    carried in full, and the PDF beside the bundle names the operators."""
    from censorwatch.events.platforms import load_platforms
    from censorwatch.evidence.scope import in_event

    platforms = load_platforms()
    of_event = [v for v in verdicts if in_event(event, v, platforms)]
    with zipfile.ZipFile(out / "evidence.zip") as zf:
        manifest = json.loads(zf.read("manifest.json"))
        rows = json.loads(zf.read("index.json"))["rows"]
    coverage = manifest["coverage"]
    assert coverage["whole"] and coverage["listed"] == coverage["carried"] == len(rows)
    assert len(rows) == len(of_event) > 8, (len(rows), len(of_event))
    blocked = sum(1 for r in rows if r[8] == "blocked")
    assert blocked >= event["measurements"]["blocked"], (blocked, event["measurements"])
    assert {r[4] for r in rows} == set(event["asns"])
    text = subprocess.run(
        ["pdftotext", "-layout", str(out / "evidence.pdf"), "-"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert "X (Twitter) blocked in Pakistan" in text
    assert "PTCL (AS17557)" in text and "Cybernet (AS9541)" in text
    assert "Where the censor sits" in text and "at a national gateway" in text


def demo_log_id(out: Path) -> str:
    """The id of the log the demo's collector kept (what its operator would publish)."""
    from censorwatch.evidence.log import TransparencyLog

    with TransparencyLog(out / "archive" / "transparency-log") as log:
        return log.log_id


def evidence_verify(out: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """``censorwatch evidence verify`` on the demo's bundle, as a reader would run it."""
    command = [sys.executable, "-m", "censorwatch", "evidence", "verify"]
    return subprocess.run(
        [*command, str(out / "evidence.zip"), *options],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def witness_listened_at(out: Path) -> str:
    """The URL the demo's witness announced when it started listening."""
    lines = (out / "witness.log").read_text().splitlines()
    return next(line.split(" on ", 1)[1].split()[0] for line in lines if " witness on " in line)
