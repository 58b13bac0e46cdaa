"""The probe signs what it measures when it has a key: a real measurement on loopback."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

import probe_loopback as pl
from censorwatch.control.server import BackgroundServer
from censorwatch.model import derive_measurement_uid
from censorwatch.signing.encoding import key_id, public_key_bytes
from censorwatch.signing.keys import generate_key_file
from censorwatch.signing.signatures import check_signature

pytestmark = pytest.mark.timeout(60)


def run_probe(net: pl.Internet, control: BackgroundServer, home: Path, *extra: str):
    env = {
        **pl.exec_env(net, control.url),
        "XDG_CONFIG_HOME": str(home),
        "CENSORWATCH_PROBE_KEY": "",
    }
    args = ["--url", net.https("site.test"), "--system-resolver",
            f"{net.system_dns[0]}:{net.system_dns[1]}", *extra]  # fmt: skip
    return CliRunner().invoke(pl.probe_app(), args, env=env)


def test_probe_signs_with_the_key_keys_init_made(
    net: pl.Internet, control: BackgroundServer, tmp_path: Path
) -> None:
    key = generate_key_file(tmp_path / "censorwatch" / "probe.key")  # the default location
    result = run_probe(net, control, tmp_path)
    assert result.exit_code == 0, result.output
    measurement = json.loads(result.stdout.splitlines()[0])
    check = check_signature(measurement)
    assert check.status == "verified"
    assert check.key_id == key_id(public_key_bytes(key))
    assert measurement["probe_ip"] == "127.0.0.1"
    # The UID stays the content-derived one, independent of the signature.
    assert measurement["measurement_uid"] == derive_measurement_uid(measurement)


def test_probe_without_a_key_writes_unsigned_measurements(
    net: pl.Internet, control: BackgroundServer, tmp_path: Path
) -> None:
    result = run_probe(net, control, tmp_path)
    assert result.exit_code == 0, result.output
    assert "x_signature" not in json.loads(result.stdout.splitlines()[0])


def test_probe_refuses_a_missing_or_exposed_key(
    net: pl.Internet, control: BackgroundServer, tmp_path: Path
) -> None:
    missing = run_probe(net, control, tmp_path, "--key", str(tmp_path / "nope.key"))
    assert missing.exit_code != 0 and "keys init" in missing.output
    exposed = tmp_path / "exposed.key"
    generate_key_file(exposed)
    os.chmod(exposed, 0o644)
    refused = run_probe(net, control, tmp_path, "--key", str(exposed))
    assert refused.exit_code != 0 and "chmod 600" in refused.output
