"""`censorwatch analyze` and `censorwatch fingerprints match` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from censorwatch.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def fp_dir(shared_data: Path) -> str:
    return str(shared_data / "fingerprints")


def test_json_records_for_every_measurement(shared_data: Path, fp_dir: str):
    result = runner.invoke(
        app, ["analyze", str(shared_data / "ooni" / "wc05_qa"), "--json", "--fingerprints", fp_dir]
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 50
    by_input = {}
    for r in records:
        assert r["verdict"] in ("ok", "blocked", "down", "unknown")
        by_input.setdefault(r["verdict"], 0)
        by_input[r["verdict"]] += 1
    assert by_input == {"blocked": 26, "ok": 12, "down": 10, "unknown": 2}
    confirmed = sorted(r["fingerprint"] for r in records if r["confirmed"])
    assert confirmed == ["cl.dns_br_localhost"] * 2 + ["cp.f_gen_access_denied"] * 2


def test_table_and_summary(shared_data: Path, fp_dir: str):
    path = shared_data / "ooni" / "wc05_qa" / "tlsBlockingConnectionResetWithConsistentDNS.json"
    # wide enough for the table's columns whatever the terminal (none, under pytest-xdist)
    result = runner.invoke(
        app, ["analyze", str(path), "--fingerprints", fp_dir], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "blocked (tls.reset)" in result.stdout
    assert "1 measurements: 1 blocked (tls.reset 1)" in result.stdout


def test_broken_input_is_named_and_the_rest_analysed(tmp_path: Path, shared_data: Path):
    good = shared_data / "ooni" / "wc05_qa" / "successWithHTTPS.json"
    bad = tmp_path / "broken.jsonl"
    bad.write_text(good.read_text().replace("\n", " ") + "\n{truncated\n")
    result = runner.invoke(app, ["analyze", str(bad), "--json"])
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == 1
    assert f"{bad}:2: invalid JSON" in result.stderr

    result = runner.invoke(app, ["analyze", str(tmp_path / "missing.json"), "--json"])
    assert result.exit_code == 1
    assert "no such file" in result.stderr
    assert "no measurement could be read" in result.stderr


def test_bad_fingerprint_dir_is_an_error(tmp_path: Path, shared_data: Path):
    good = shared_data / "ooni" / "wc05_qa" / "successWithHTTPS.json"
    result = runner.invoke(app, ["analyze", str(good), "--fingerprints", str(tmp_path)])
    assert result.exit_code == 2
    assert "no fingerprint files" in result.stderr


def test_env_fingerprints_and_asn_db(tmp_path: Path, shared_data: Path, fp_dir: str):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"public_prefixes": ["10.10.34.0/24"], "networks": []}))
    path = shared_data / "ooni" / "wc05_qa" / "dnsBlockingBOGON.json"
    result = runner.invoke(
        app,
        ["analyze", str(path), "--json", "--asn-db", str(plan)],
        env={"CENSORWATCH_FINGERPRINTS": fp_dir},
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["method"] == "dns.forged"  # 10.10.34.35 is public here


def test_testbed_measurements_without_an_address_plan_are_flagged(
    tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch
):
    """The testbed's "public internet" is a reserved range: without its plan, a forgery reads
    as a bogon, so the user is told which plan to pass."""
    monkeypatch.delenv("CENSORWATCH_ASN_DB", raising=False)
    m = json.loads((shared_data / "ooni" / "wc05_qa" / "dnsBlockingBOGON.json").read_text())
    m["annotations"] = {**(m.get("annotations") or {}), "x_testbed": "cwtest"}
    path = tmp_path / "testbed.jsonl"
    path.write_text(json.dumps(m) + "\n" + json.dumps(m) + "\n")
    plain = runner.invoke(app, ["analyze", str(path), "--json"])
    assert plain.exit_code == 0, plain.output
    assert "warning: 2 measurement(s) come from the emulated network (testbed cwtest)" in (
        plain.stderr
    )
    assert "cwtest/address-plan.json" in plain.stderr
    assert {json.loads(line)["method"] for line in plain.stdout.splitlines()} == {"dns.bogon"}
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"public_prefixes": ["10.10.34.0/24"], "networks": []}))
    planned = runner.invoke(app, ["analyze", str(path), "--json", "--asn-db", str(plan)])
    assert planned.exit_code == 0 and "warning" not in planned.stderr
    assert {json.loads(line)["method"] for line in planned.stdout.splitlines()} == {"dns.forged"}
    # OONI's own measurements carry no testbed annotation: no warning.
    ooni = runner.invoke(app, ["analyze", str(shared_data / "ooni" / "wc05_qa"), "--json"])
    assert "warning" not in ooni.stderr


def test_fingerprints_match(shared_data: Path, fp_dir: str, tmp_path: Path):
    page = next((shared_data / "fingerprints").rglob("isp_pk_*.html"))
    ordinary = tmp_path / "ordinary.html"
    ordinary.write_text("<html><head><title>Recipes</title></head><body>Bake 20 min.</body></html>")
    raw = tmp_path / "response.txt"
    raw.write_bytes(
        b"HTTP/1.1 302 Found\r\nLocation: http://www.bluecoat.com/notify-NotifyUser1?x=1\r\n\r\n"
    )
    result = runner.invoke(
        app, ["fingerprints", "match", str(page), str(ordinary), str(raw), "--fingerprints", fp_dir]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "blockpage" in lines[0]
    assert lines[1].endswith("no match")
    assert "ooni.ae_1" in lines[2]
    assert lines[3] == "2/3 matched a blockpage fingerprint"


def test_help_stays_fast():
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "censorwatch", "analyze", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0
    heavy = [
        line
        for line in out.stderr.splitlines()
        if line.rstrip().endswith(("ahocorasick_rs", "censorwatch.analysis.webconnectivity"))
    ]
    assert not heavy, heavy
