"""Trust is explicit: a bundle from a log nobody vouched for is never VERIFIED.

The attack of the security review: a fresh log, its own tree head and a fabricated PK
measurement. It is internally consistent, so it must come out as "consistent, but signed by a
log you have not said you trust" with its own exit code, until the verifier trusts the log
(``--log-id``, the trust file) or witnesses they named cosigned its checkpoint.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from censorwatch.app.commands.evidence import EXIT_FAILED, EXIT_UNTRUSTED, EXIT_VERIFIED
from censorwatch.cli import app
from censorwatch.evidence.bundle import export_bundle, verify_bundle
from censorwatch.evidence.log import TransparencyLog
from censorwatch.evidence.note import COSIGNATURE_V1_TYPE, Note, NoteSigner, cosign
from censorwatch.model import derive_measurement_uid

OONI = Path(__file__).resolve().parents[2] / "shared" / "data" / "ooni" / "wc05_qa"


def fabricated() -> dict:
    """A 'blocked in Pakistan' measurement nobody ever made."""
    m = json.loads((OONI / "dnsBlockingNXDOMAIN.json").read_text())
    m.update(probe_cc="PK", probe_asn="AS17557", input="https://x.com/", report_id="")
    return m


def witness_signer(name: str = "witness.example/w1") -> NoteSigner:
    return NoteSigner(name, Ed25519PrivateKey.generate(), COSIGNATURE_V1_TYPE)


@pytest.fixture
def forged(tmp_path: Path) -> tuple[Path, str, NoteSigner]:
    """A bundle from a fresh log, cosigned by one (equally fresh) witness."""
    m = fabricated()
    w = witness_signer()
    with TransparencyLog(tmp_path / "fresh-log") as log:
        log.append(derive_measurement_uid(m), m)
        export_bundle(
            tmp_path / "forged.zip",
            log=log,
            measurements=[m],
            cosigner=lambda note: [cosign(note.text, w, 1_700_000_000)],
        )
        return tmp_path / "forged.zip", log.log_id, w


def run(*args: str, trust_file: Path) -> tuple[int, str]:
    out = CliRunner().invoke(app, [*args, "--trust-file", str(trust_file)])
    return out.exit_code, out.output


def test_a_fabricated_log_is_consistent_but_untrusted(forged, tmp_path: Path) -> None:
    bundle, log_id, _ = forged
    assert verify_bundle(bundle).ok  # internally consistent: that alone proves nothing
    trust_file = tmp_path / "config" / "trusted-logs"
    code, output = run("evidence", "verify", str(bundle), trust_file=trust_file)
    assert code == EXIT_UNTRUSTED == 3, output
    assert "VERIFIED" not in output.replace("NOT VERIFIED", "")
    assert f"consistent, but signed by a log you have not said you trust: {log_id}" in output
    assert f"censorwatch evidence trust add {log_id}" in output
    code, output = run("evidence", "verify", str(bundle), "--json", trust_file=trust_file)
    result = json.loads(output)
    assert code == EXIT_UNTRUSTED and result["status"] == "consistent-untrusted"
    assert result["ok"] and not result["trusted"]
    # Pinning another id fails outright; pinning this one verifies.
    args = ("evidence", "verify", str(bundle))
    code, output = run(*args, "--log-id", "ab" * 32, trust_file=trust_file)
    assert code == EXIT_FAILED and "FAILED" in output
    code, output = run(*args, "--log-id", log_id, trust_file=trust_file)
    assert code == EXIT_VERIFIED and output.startswith("VERIFIED"), output
    assert "you pinned with --log-id" in output


def test_trust_file_add_list_remove(forged, tmp_path: Path, monkeypatch) -> None:
    bundle, log_id, _ = forged
    config = tmp_path / "xdg"
    monkeypatch.delenv("CENSORWATCH_TRUST_FILE", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    runner = CliRunner()
    trust_file = config / "censorwatch" / "trusted-logs"

    def invoke(*args: str) -> tuple[int, str]:
        out = runner.invoke(app, list(args))
        return out.exit_code, out.output

    assert invoke("evidence", "verify", str(bundle))[0] == EXIT_UNTRUSTED
    code, output = invoke("evidence", "trust", "add", log_id.upper(), "--name", "test collector")
    assert code == 0 and "trusting" in output and trust_file.exists()
    assert f"{log_id} test collector" in trust_file.read_text()
    assert invoke("evidence", "trust", "add", log_id)[1].startswith("already trusted")
    other = "cd" * 32
    assert invoke("evidence", "trust", "add", other, "--name", "other")[0] == 0
    code, output = invoke("evidence", "trust", "list")
    # Listed in log-id order, whichever of the two sorts first.
    listed = sorted([f"{log_id} test collector", f"{other} other"])
    assert code == 0 and output.splitlines() == listed
    code, output = invoke("evidence", "verify", str(bundle))
    assert code == EXIT_VERIFIED and output.startswith("VERIFIED"), output
    assert "is in your trust file" in output
    assert invoke("evidence", "trust", "add", "not-a-log-id")[0] == 2
    assert invoke("evidence", "trust", "remove", log_id)[0] == 0
    assert invoke("evidence", "trust", "remove", log_id)[0] == 1
    assert invoke("evidence", "trust", "list")[1].splitlines() == [f"{other} other"]
    assert invoke("evidence", "verify", str(bundle))[0] == EXIT_UNTRUSTED
    # A damaged trust file is a usage error, never a silent "trust nothing" or "trust all".
    trust_file.write_text("zz not an id\n")
    code, output = invoke("evidence", "verify", str(bundle))
    assert code == 2 and "trusted-logs:1" in output


def test_witness_quorum_offline(forged, tmp_path: Path) -> None:
    bundle, _, w1 = forged
    trust_file = tmp_path / "none"
    w2 = witness_signer("witness.example/w2")
    args = ("evidence", "verify", str(bundle))
    code, output = run(*args, "--witness", str(w1.verifier), "--quorum", "1", trust_file=trust_file)
    assert code == EXIT_VERIFIED and "1 of 1 witnesses" in output, output
    code, output = run(*args, "--witness", str(w1.verifier), "--witness", str(w2.verifier),
                       trust_file=trust_file)  # fmt: skip
    assert code == EXIT_UNTRUSTED and "the quorum is 2" in output
    code, output = run(*args, "--witness", str(w2.verifier), "--quorum", "1", trust_file=trust_file)
    assert code == EXIT_UNTRUSTED and "only 0 of the 1 witnesses" in output
    code, _ = run(*args, "--witness", str(w1.verifier), "--quorum", "2", trust_file=trust_file)
    assert code == 2  # a quorum larger than the witnesses named is a usage error
    code, _ = run(*args, "--witness", "nonsense", trust_file=trust_file)
    assert code == 2

    # A forged cosignature line under w1's name and key ID: FAILED, not merely untrusted.
    # (Editing the checkpoint also breaks the manifest's hash: both are named.)
    files = read_zip(bundle)
    note = Note.parse(files["checkpoint.txt"])
    line = note.signatures[1]
    bad = type(line)(line.name, line.key_id, line.signature[:-1] + bytes([line.signature[-1] ^ 1]))
    files["checkpoint.txt"] = str(Note(note.text, (note.signatures[0], bad))).encode()
    tampered = tmp_path / "tampered.zip"
    write_zip(tampered, files)
    code, output = run("evidence", "verify", str(tampered), "--witness", str(w1.verifier),
                       trust_file=trust_file)  # fmt: skip
    assert code == EXIT_FAILED and "checkpoint.txt" in output


def test_checkpoint_must_match_the_tree_head_and_the_log(forged, tmp_path: Path) -> None:
    bundle, _, _ = forged
    files = read_zip(bundle)
    text = files["checkpoint.txt"].decode()
    assert text.startswith("censorwatch/log/") and "\n\n— censorwatch/log/" in text
    for name, changed in {
        "size": text.replace("\n1\n", "\n2\n", 1),
        "missing": None,
        "garbage": "not a note",
    }.items():
        edited = dict(files)
        if changed is None:
            del edited["checkpoint.txt"]
        else:
            edited["checkpoint.txt"] = changed.encode()
        out = tmp_path / f"{name}.zip"
        write_zip(out, edited)
        result = verify_bundle(out)
        assert not result.ok and any(p.item == "checkpoint.txt" for p in result.problems), name


def read_zip(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def write_zip(path: Path, files: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
