"""``censorwatch probe`` as a user runs it: options, environment defaults, JSONL, warnings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import probe_loopback as pl
from censorwatch.control.server import BackgroundServer

pytestmark = pytest.mark.timeout(60)


def test_urls_and_a_list_from_the_environment(
    net: pl.Internet, control: BackgroundServer, tmp_path: Path
):
    listing = tmp_path / "list.csv"
    listing.write_text(
        "url,category_code,category_description,date_added,source,notes\n"
        f"{net.https('site.test')},GRP,Social Networking,2024-02-17,test,\n"
        "not a url,GRP,Social Networking,2024-02-17,test,\n"
        f"{net.https('censored.test')},NEWS,News,2024-02-17,test,\n"
    )
    out = tmp_path / "m.jsonl"
    result = CliRunner().invoke(
        pl.probe_app(),
        [
            "--url",
            net.http("echo.test", "/echo"),
            "--list",
            str(listing),
            "--output",
            str(out),
            "--system-resolver",
            f"{net.system_dns[0]}:{net.system_dns[1]}",
            "-c",
            "3",
            "--dns-timeout",
            "1",
            "--connect-timeout",
            "1",
            "--tls-timeout",
            "1",
        ],
        env={**pl.exec_env(net, control.url), "COLUMNS": "500"},  # a warning on one line
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(m["input"] for m in lines) == sorted(
        [net.http("echo.test", "/echo"), net.https("site.test"), net.https("censored.test")]
    )
    assert len({m["report_id"] for m in lines}) == 1
    assert lines[0]["report_id"].split("_")[1:4] == ["webconnectivity", "PK", "17557"]
    for m in lines:
        assert (m["probe_asn"], m["probe_cc"], m["probe_network_name"]) == ("AS17557", "PK", "PTCL")
        assert m["test_keys"]["control_failure"] is None
        assert m["annotations"]["x_testbed"] == "loopback"
    by_input = {m["input"]: m for m in lines}
    assert by_input[net.https("censored.test")]["annotations"]["category_code"] == "NEWS"
    assert by_input[net.https("censored.test")]["test_keys"]["blocking"] == "dns"
    assert f"{listing}:3: " in result.stderr
    assert "3 measured" in result.stderr and "blocking dns: 1" in result.stderr


def test_stdout_is_the_default_output(net: pl.Internet, control: BackgroundServer):
    result = CliRunner().invoke(
        pl.probe_app(),
        [
            "--url",
            net.https("site.test"),
            "--system-resolver",
            f"{net.system_dns[0]}:{net.system_dns[1]}",
        ],
        env=pl.exec_env(net, control.url),
    )
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    assert json.loads(line)["test_keys"]["accessible"] is True


def test_reserved_control_needs_testbed_mode(net: pl.Internet):
    argv = ["--url", net.https("site.test"), "--control", "http://127.0.0.1:9/"]
    result = CliRunner().invoke(pl.probe_app(), argv, env={})
    assert result.exit_code == 2
    assert "reserved" in result.output


def test_nothing_to_measure_is_an_error():
    # Without --no-defaults an empty run takes its list from the defaults' check-in service.
    result = CliRunner().invoke(pl.probe_app(), ["--no-defaults"], env={})
    assert result.exit_code == 2 and "nothing to measure" in result.output


def test_registered_on_the_root_command():
    from censorwatch.cli import app

    result = CliRunner().invoke(app, ["probe", "--help"])
    assert result.exit_code == 0 and "--throughput" in result.output
