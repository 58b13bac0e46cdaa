"""Probe keys and signed measurements: real keys, real OONI measurements, the real CLI."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from censorwatch.cli import app
from censorwatch.model import derive_measurement_uid
from censorwatch.signing.encoding import b64decode, key_id, public_key_bytes
from censorwatch.signing.keys import (
    KeyFileError,
    default_probe_key_path,
    generate_key_file,
    load_private_key,
)
from censorwatch.signing.signatures import (
    check_signature,
    sign_measurement,
    signed_body,
    verify_signature,
)


@pytest.fixture
def measurement(shared_data: Path) -> dict:
    path = shared_data / "ooni" / "wc05_qa" / "tlsBlockingConnectionResetWithConsistentDNS.json"
    return json.loads(path.read_text())


def test_keys_init_writes_a_private_key_and_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "probe.key"
    runner = CliRunner()
    first = runner.invoke(app, ["keys", "init", "--key", str(path)])
    assert first.exit_code == 0, first.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    kid = key_id(public_key_bytes(load_private_key(path)))
    assert kid in first.output
    before = path.read_bytes()

    again = runner.invoke(app, ["keys", "init", "--key", str(path)])
    assert again.exit_code != 0
    assert "already exists" in again.output
    assert path.read_bytes() == before

    forced = runner.invoke(app, ["keys", "init", "--key", str(path), "--force"])
    assert forced.exit_code == 0
    assert path.read_bytes() != before
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    shown = runner.invoke(app, ["keys", "show", "--key", str(path)])
    assert json.loads(shown.output)["key_id"] == key_id(public_key_bytes(load_private_key(path)))


def test_default_key_location_follows_env(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("CENSORWATCH_PROBE_KEY", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert default_probe_key_path() == tmp_path / "censorwatch" / "probe.key"
    monkeypatch.setenv("CENSORWATCH_PROBE_KEY", str(tmp_path / "k"))
    assert default_probe_key_path() == tmp_path / "k"


def test_exposed_key_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "probe.key"
    generate_key_file(path)
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_private_key(path)


def test_signed_measurement_verifies_and_stays_an_ooni_measurement(
    tmp_path: Path, measurement: dict
) -> None:
    key = generate_key_file(tmp_path / "probe.key")
    signed = sign_measurement(measurement, key, signed_at="2024-02-17T10:00:00Z")
    assert verify_signature(signed) == "verified"
    sig = signed["x_signature"]
    assert set(sig) == {"alg", "key_id", "public_key", "sig", "signed_at"}
    assert sig["key_id"] == key_id(b64decode(sig["public_key"], 32))
    # Everything OONI reads is unchanged; the signature is one extra top-level key.
    assert signed_body(signed) == signed_body(measurement)
    # The collector adds measurement_uid after signing; that must not break the signature.
    with_uid = {**signed, "measurement_uid": derive_measurement_uid(signed)}
    assert verify_signature(with_uid) == "verified"
    # And a JSON round trip (any store, any language) keeps it valid.
    assert verify_signature(json.loads(json.dumps(with_uid))) == "verified"


def test_unsigned_is_unverified_never_verified(measurement: dict) -> None:
    assert verify_signature(measurement) == "unverified"
    assert check_signature(measurement).reason == "no signature"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda m: m.__setitem__("probe_asn", "AS1"), "does not match"),
        (lambda m: m["test_keys"]["tls_handshakes"][0].__setitem__("failure", None), "match"),
        (lambda m: m.__setitem__("extra", 1), "does not match"),
        (lambda m: m["x_signature"].__setitem__("signed_at", "2024-02-17T10:00:01Z"), "match"),
        (lambda m: m["x_signature"].__setitem__("signed_at", "yesterday"), "RFC 3339"),
        (lambda m: m["x_signature"].__setitem__("key_id", "0" * 16), "key_id"),
        (lambda m: m["x_signature"].__setitem__("alg", "rsa"), "alg"),
        (lambda m: m["x_signature"].__setitem__("note", "x"), "exactly"),
        (lambda m: m["x_signature"].__setitem__("sig", "AAAA"), "bad encoding"),
        (lambda m: m.__setitem__("x_signature", "forged"), "exactly"),
    ],
)
def test_any_change_makes_the_signature_invalid(
    tmp_path: Path, measurement: dict, change, reason: str
) -> None:
    signed = json.loads(
        json.dumps(
            sign_measurement(
                measurement, generate_key_file(tmp_path / "k"), signed_at="2024-02-17T10:00:00Z"
            )
        )
    )
    change(signed)
    check = check_signature(signed)
    assert check.status == "invalid"
    assert reason in check.reason


def test_a_signature_moved_to_another_measurement_is_invalid(
    tmp_path: Path, measurement: dict, shared_data: Path
) -> None:
    key = generate_key_file(tmp_path / "k")
    other = json.loads((shared_data / "ooni" / "wc05_qa" / "successWithHTTPS.json").read_text())
    stolen = {**other, "x_signature": sign_measurement(measurement, key)["x_signature"]}
    assert verify_signature(stolen) == "invalid"


def test_a_key_from_someone_else_cannot_claim_the_key_id(tmp_path: Path, measurement: dict) -> None:
    mine = sign_measurement(measurement, generate_key_file(tmp_path / "a"))
    theirs = sign_measurement(measurement, generate_key_file(tmp_path / "b"))
    forged = {
        **mine,
        "x_signature": {
            **mine["x_signature"],
            "public_key": theirs["x_signature"]["public_key"],
            "sig": theirs["x_signature"]["sig"],
        },
    }
    assert check_signature(forged).reason == "key_id does not name the public key"


def test_fields_the_collector_assigns_are_not_signed(tmp_path: Path, measurement: dict) -> None:
    """The collector sets report_id and measurement_uid at submission; the probe cannot sign
    them in advance (it may queue measurements offline for days)."""
    signed = sign_measurement({**measurement, "report_id": ""}, generate_key_file(tmp_path / "k"))
    submitted = {**signed, "report_id": "20240217T000000Z_webconnectivity_PK_17557_n1_x"}
    assert verify_signature(submitted) == "verified"
    assert verify_signature({**submitted, "test_name": "dnscheck"}) == "invalid"


def test_a_measurement_that_names_its_probe_is_never_signed(
    tmp_path: Path, measurement: dict
) -> None:
    with pytest.raises(ValueError, match="probe_ip"):
        sign_measurement(
            {**measurement, "probe_ip": "198.51.100.7"}, generate_key_file(tmp_path / "k")
        )
