"""Verdict JSONL → ``censorwatch events``: the record schema, national grouping, stable ids,
and incremental runs that agree with a single run over the same data."""

from __future__ import annotations

import json
import random
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from censorwatch.cli import app
from censorwatch.events.synthetic import T0
from censorwatch.times import parse_time, rfc3339

HOSTS = ["x.com", "twitter.com", "pbs.twimg.com", "t.co"]
ROUND = timedelta(minutes=10)
# Network: (round the block starts, round it stops or None, method); AS23674 is never blocked
# and loses 5% of its measurements at random.
PLAN = {
    "AS9541": (10, 25, "tls.reset"),
    "AS17557": (11, None, "dns.forged"),
    "AS135407": (12, None, "tls.reset"),
    "AS140499": (13, None, "http.blockpage"),
    "AS23674": (None, None, None),
}
KEYS = ["event_id", "scope", "cc", "asns", "target", "methods", "onset", "end", "status",
        "confidence", "measurements", "evidence"]  # fmt: skip


def verdicts(rounds: int = 40) -> list[dict]:
    rng = random.Random(7)
    out = []
    for r in range(rounds):
        for ni, (asn, (start, stop, method)) in enumerate(PLAN.items()):
            for hi, host in enumerate(HOSTS):
                t = T0 + ROUND * r + timedelta(seconds=30 * ni + 5 * hi)
                blocked = start is not None and r >= start and (stop is None or r < stop)
                verdict = "blocked" if blocked else "ok"
                if asn == "AS23674" and rng.random() < 0.05:
                    verdict = rng.choice(["unknown", "blocked"])  # a stray timeout
                out.append(
                    {
                        "measurement_uid": f"{r:03d}-{asn}-{host}",
                        "report_id": f"rep-{r}-{asn}",
                        "input": f"https://{host}/",
                        "target": host,
                        "probe_cc": "PK",
                        "probe_asn": asn,
                        "measurement_start_time": rfc3339(t),
                        "verdict": verdict,
                        "method": (method or "tcp.timeout") if verdict == "blocked" else None,
                        "confidence": 0.9 if blocked else 0.5,
                    }
                )
    return out


def write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def run_json(*args: str) -> list[dict]:
    result = CliRunner().invoke(app, ["events", "--json", *args])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


@pytest.fixture()
def pk_file(tmp_path: Path) -> Path:
    return write(tmp_path / "verdicts.jsonl", verdicts())


def test_national_event_lists_exactly_the_blocking_networks(pk_file: Path) -> None:
    events = run_json(str(pk_file))
    for ev in events:
        assert list(ev) == KEYS
        assert ev["status"] in ("ongoing", "ended")
        assert "AS23674" not in ev["asns"]  # the lossy, unblocked network: no event
    national = [e for e in events if e["scope"] == "national" and e["target"] == "x"]
    assert len(national) == 1
    nat = national[0]
    assert nat["asns"] == ["AS9541", "AS17557", "AS135407", "AS140499"]
    assert nat["measurements"]["networks_blocked"] == 4
    assert nat["measurements"]["networks_measured"] == 5
    assert set(nat["methods"]) == {"tls.reset", "dns.forged", "http.blockpage"}
    assert nat["status"] == "ongoing" and nat["end"] is None
    # The earliest network onset (AS9541, round 10) lies inside the national bracket.
    true_onset = T0 + ROUND * 10
    assert parse_time(nat["onset"]["after"]) < true_onset <= parse_time(nat["onset"]["before"])


def test_network_brackets_hold_the_true_switch_times(pk_file: Path) -> None:
    events = run_json(str(pk_file), "--scope", "network", "--target", "x")
    assert sorted(e["asns"][0] for e in events) == sorted(a for a, p in PLAN.items() if p[0])
    for ev in events:
        start, stop, method = PLAN[ev["asns"][0]]
        assert ev["methods"] == [method]
        on = T0 + ROUND * start
        after, before = parse_time(ev["onset"]["after"]), parse_time(ev["onset"]["before"])
        assert after < on <= before and before - after <= ROUND
        if stop is None:
            assert ev["end"] is None
        else:
            off = T0 + ROUND * stop
            assert parse_time(ev["end"]["after"]) < off <= parse_time(ev["end"]["before"])
            assert ev["status"] == "ended"
        assert ev["evidence"] and all(isinstance(u, str) for u in ev["evidence"])


def test_incremental_runs_match_one_run_and_ids_are_stable(tmp_path: Path) -> None:
    records = verdicts()
    whole = run_json(str(write(tmp_path / "all.jsonl", records)))
    state = tmp_path / "state.json"
    cut = len(records) // 3
    first = run_json("--state", str(state), str(write(tmp_path / "a.jsonl", records[:cut])))
    assert first, "the blocks have started within the first third"
    again = run_json("--state", str(state), str(write(tmp_path / "b.jsonl", records[cut:])))
    assert again == whole
    assert {e["event_id"] for e in first} <= {e["event_id"] for e in whole}
    # Feeding the same data again changes nothing.
    assert run_json("--state", str(state), str(tmp_path / "b.jsonl")) == whole


def test_table_output_and_bad_input(pk_file: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["events", str(pk_file), "--target", "x"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "4 of 5" in result.output and "X (Twitter)" in result.output
    # Host events covered by their platform's event are folded into its row.
    folded = runner.invoke(app, ["events", str(pk_file)], env={"COLUMNS": "200"})
    assert "(+4 hosts)" in folded.output and "twitter.com" not in folded.output
    full = runner.invoke(app, ["events", str(pk_file), "--all-hosts"], env={"COLUMNS": "200"})
    assert full.exit_code == 0 and "twitter.com" in full.output and "+4 hosts" not in full.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n" + pk_file.read_text())
    result = runner.invoke(app, ["events", "--json", str(bad)])
    assert result.exit_code == 0
    assert "skipped" in result.stderr and "not JSON" in result.stderr
    assert runner.invoke(app, ["events"]).exit_code != 0  # neither --db nor files


def test_a_piped_table_keeps_its_words_whole(pk_file: Path, monkeypatch) -> None:
    """Off a terminal (a log, CI), rich would fold the table into 80 columns: "natio|nal"."""
    monkeypatch.delenv("COLUMNS", raising=False)
    piped = CliRunner().invoke(app, ["events", str(pk_file), "--target", "x"])
    assert piped.exit_code == 0, piped.output
    rows = [line for line in piped.output.splitlines() if "national" in line]
    assert rows and "4 of 5" in rows[0] and "X (Twitter)" in rows[0]
    assert max(map(len, piped.output.splitlines())) <= 160
    narrow = CliRunner().invoke(app, ["events", str(pk_file), "--target", "x"],
                                env={"COLUMNS": "60"})  # fmt: skip
    assert max(map(len, narrow.output.splitlines())) <= 60
