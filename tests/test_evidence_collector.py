"""End to end through the real collector: signed submissions, the log behind the API, export."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from censorwatch.cli import app
from censorwatch.evidence import merkle
from censorwatch.evidence.bundle import verify_bundle
from censorwatch.evidence.formats import InclusionProof, TreeHead
from censorwatch.evidence.log import TransparencyLog
from censorwatch.evidence.monitor import check_log
from censorwatch.probe.submit import submit_or_queue
from censorwatch.signing.keys import generate_key_file
from censorwatch.signing.signatures import sign_measurement
from censorwatch.store import Filters, open_store
from collector_helpers import Server, make_measurement, template


@pytest.mark.slow
def test_signed_measurements_are_verified_logged_proven_and_exported(tmp_path: Path) -> None:
    key = generate_key_file(tmp_path / "probe.key")
    base = template()
    signed = [sign_measurement(make_measurement(i, base=base), key) for i in range(4)]
    unsigned = [make_measurement(i, base=base) for i in range(4, 6)]
    forged = sign_measurement(make_measurement(6, base=base, probe_asn="AS9541"), key)
    forged["input"] = "https://elsewhere.example.org/"  # changed after signing

    db, archive = tmp_path / "cw.duckdb", tmp_path / "archive"
    server = Server(db, archive, tmp_path / "server.log")
    try:
        sent = submit_or_queue([*signed, *unsigned, forged], server.url, tmp_path / "queue")
        assert sent.error is None and len(sent.sent) == 7
        with httpx.Client(base_url=server.url, timeout=10) as client:
            head = TreeHead.from_json(client.get("/api/v1/log/sth").json())
            assert head.tree_size == 7
            body = client.get(
                "/api/v1/log/proof/inclusion", params={"measurement_uid": sent.sent[0]}
            ).json()
            assert TreeHead.from_json(body.pop("sth")) == head
            proof = InclusionProof.from_json(body)
            assert merkle.verify_inclusion(
                proof.leaf_index, proof.tree_size, proof.leaf_hash, proof.audit_path, head.root_hash
            )
        assert check_log(server.url, tmp_path / "monitor.json").ok
        args = ["evidence", "export", "--db", str(db), "--archive", str(archive), "--out",
                str(tmp_path / "x.zip")]  # fmt: skip
        busy = CliRunner().invoke(app, args)
        assert busy.exit_code == 2 and "still running" in busy.output
    finally:
        server.stop()

    store = open_store(db, read_only=True)
    try:
        assert store.count(Filters(signature="verified")) == 4
        assert store.count(Filters(signature="unverified")) == 2
        assert store.count(Filters(signature="invalid")) == 1
    finally:
        store.close()

    out = tmp_path / "as17557.zip"
    runner = CliRunner()
    done = runner.invoke(app, ["evidence", "export", "--db", str(db), "--archive", str(archive),
                               "--asn", "AS17557", "--out", str(out)])  # fmt: skip
    assert done.exit_code == 0, done.output
    result = verify_bundle(out)
    assert result.ok, result.problems
    assert (result.measurements, result.signed, result.unsigned) == (6, 4, 2)
    assert result.tree_size == 7

    refused = runner.invoke(app, ["evidence", "export", "--db", str(db), "--archive",
                                  str(archive), "--asn", "AS9541", "--out",
                                  str(tmp_path / "forged.zip")])  # fmt: skip
    assert refused.exit_code != 0 and "invalid signature" in refused.output
    assert not (tmp_path / "forged.zip").exists()
    for name in ("leaves.bin", "sth.jsonl", "log.key"):
        assert (archive / "transparency-log" / name).exists()
    assert json.loads((tmp_path / "monitor.json").read_text())["sth"]["tree_size"] == 7


@pytest.mark.slow
def test_the_national_event_found_in_the_store_exports_and_verifies(tmp_path: Path) -> None:
    """The demo's story in miniature: three networks, X reachable then DNS-blocked, every
    probe signing; ``events`` finds the national event; its evidence exports and verifies."""
    import copy
    from datetime import UTC, datetime, timedelta

    from collector_helpers import OONI

    ok = json.loads((OONI / "wc05_qa" / "successWithHTTPS.json").read_text())
    blocked = json.loads((OONI / "wc05_qa" / "dnsBlockingNXDOMAIN.json").read_text())
    networks = ("AS9541", "AS17557", "AS135407")
    keys = {asn: generate_key_file(tmp_path / f"probe-{asn}.key") for asn in networks}
    start = datetime(2024, 2, 16, 12, tzinfo=UTC)
    measurements = []
    for hour in range(24):
        when = (start + timedelta(hours=hour)).strftime("%Y-%m-%d %H:%M:%S")
        for asn in networks:
            m = copy.deepcopy(ok if hour < 12 else blocked)
            m.update(probe_cc="PK", probe_asn=asn, report_id="", measurement_start_time=when,
                     test_start_time=when)  # fmt: skip
            measurements.append(sign_measurement(m, keys[asn]))
    db, archive = tmp_path / "cw.duckdb", tmp_path / "archive"
    server = Server(db, archive, tmp_path / "server.log")
    try:
        sent = submit_or_queue(measurements, server.url, tmp_path / "queue")
        assert sent.error is None and len(sent.sent) == 72
    finally:
        server.stop()

    runner = CliRunner()
    found = runner.invoke(app, ["events", "--db", str(db), "--json", "--scope", "national"])
    assert found.exit_code == 0, found.output
    (event,) = [json.loads(line) for line in found.output.splitlines()]
    assert event["cc"] == "PK" and sorted(event["asns"]) == sorted(networks)

    out = tmp_path / "national.zip"
    done = runner.invoke(app, ["evidence", "export", "--event", event["event_id"], "--db",
                               str(db), "--archive", str(archive), "--out", str(out)])  # fmt: skip
    assert done.exit_code == 0, done.output
    # VERIFIED needs a trust source: the log id its operator publishes (evidence log-info).
    with TransparencyLog(archive / "transparency-log") as log:
        published = log.log_id
    checked = runner.invoke(app, ["evidence", "verify", str(out), "--log-id", published])
    assert checked.exit_code == 0, checked.output
    result = verify_bundle(out)
    # The whole event: every network's measurements from the last normal one before the onset
    # (hour 11) to the newest (the block is ongoing), the brackets the event cites among them.
    assert result.listed == result.carried == result.measurements == 3 * 13
    with zipfile.ZipFile(out) as zf:
        listed = {row[1] for row in json.loads(zf.read("index.json"))["rows"]}
    assert set(event["evidence"]) <= listed
    assert result.signed == result.measurements and len(result.probe_keys) == 3

    # As the demo does it: events from the probe-side verdicts, whose UIDs the collector
    # replaced (they cover the report each measurement was filed under).
    from censorwatch.analysis import analyze
    from censorwatch.model import derive_measurement_uid

    verdicts = tmp_path / "verdicts.jsonl"
    with verdicts.open("w") as fh:
        for m in measurements:
            record = analyze({**m, "measurement_uid": derive_measurement_uid(m)}).to_record()
            fh.write(json.dumps(record) + "\n")
    probe_side = runner.invoke(app, ["events", str(verdicts), "--json", "--scope", "national"])
    (theirs,) = [json.loads(line) for line in probe_side.output.splitlines()]
    assert theirs["event_id"] == event["event_id"]
    assert not set(theirs["evidence"]) & set(event["evidence"])
    events_file = tmp_path / "events.jsonl"
    events_file.write_text(json.dumps(theirs) + "\n")
    again = tmp_path / "again.zip"
    done = runner.invoke(app, ["evidence", "export", "--event", theirs["event_id"], "--events",
                               str(events_file), "--db", str(db), "--archive", str(archive),
                               "--out", str(again)])  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "collector's UIDs" in done.output
    assert verify_bundle(again).ok
