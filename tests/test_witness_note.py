"""Signed notes, checkpoints and cosignatures: known answers from other implementations, and the
tamper matrix (any line, size, root, origin, key name, signature byte, timestamp; wrong key;
duplicate cosigner counted once; quorum not reached)."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from censorwatch.evidence.note import (
    COSIGNATURE_V1_TYPE,
    ED25519_TYPE,
    Checkpoint,
    Note,
    NoteError,
    NoteSigner,
    Signature,
    VerifierKey,
    cosign,
    sign_checkpoint,
    sign_note,
    verify_cosignature,
    verify_note_signature,
)
from censorwatch.evidence.trust import count_cosigners, decide, parse_witness_keys

# golang.org/x/mod/sumdb/note (note_test.go, and the package documentation's example).
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgK"
    "vqfqdngotpRZb6KE6RyyBwJnAM=\n"
)

# A published checkpoint of a staging CT log with real witness cosignatures (as carried by
# transparency-dev's test suites), and the vkeys of the log and of one witness (type 0x04).
CT_CHECKPOINT = """arche2025h1.staging.ct.transparency.dev
1432088532
U7WM79jrzyhGZ5/GUBTpM7NzwdyfFx61t3RovgcC4Ro=

— arche2025h1.staging.ct.transparency.dev zTM8sQAAAZ5W0WdjBAMARjBEAiBjW5IQf9pvsYLfQFX6hoGREPMHbdQ3urbllzalApkptQIgIpwtEroeW2BXaHAI4kJXFbon5Ch9MNL5zRNZ55lvGt0=
— arche2025h1.staging.ct.transparency.dev ui8GwCF1+kWqZrxGdhj4aX3gcw7XUlXQQabg/27lefwhUkzbC3NygNI75MdhL1bfTW9g8Ei59RA23oHP7Ry1k3ZFWwQ=
— transparency.dev/DEV:witness-little-garden 2AQqhwAAAABqEiEgzgFIqqhbUoDwjMWE6UP8nd8/KYTzwZ2rhIgcqoXHAwVkjZr4AscylP3v7sEodkRAErumC2q44vdgJY096st5BQ==
— witness1.smartit.nu/witness1 pIyCDwAAAABqEiEghIp82KWebrw7/oHQwlTAm3g2RKS4+eebl8eO0WH+/iEcxZ75W3u5hNI7TOQtmJbqmNWVuE0tgh0XwzdZsDsUAQ==
— remora.n621.de 2net5wAAAABqEiEgPlfF3V06o0Y+fHM+J5J9s27wgxxcOVSpZ/2g/KSiXCg9DEZI+aVCIobWX9sXTynk5XeU/zZ0WBxtqB0DrAWfBw==
— witness.stagemole.eu Z/euoAAAAABqEiEgw0i+7g2ENfDAWHmtRzCfKTHSDwYDJA2NmKeGi9Y8FtEyOUvVr+AJmIY/2TUFucgKi7lI7cUiOvKFYe/TmN9DAg==
"""  # noqa: E501 - signature lines are what they are
CT_LOG_VKEY = (
    "arche2025h1.staging.ct.transparency.dev+ba2f06c0+AU0vHmlGCS/PdN8b2OaGmKprLI8HKM+dJ472xgFYh15f"
)
REMORA_VKEY = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"
ORIGIN = "censorwatch/log/" + "ab" * 32
ROOT = bytes(range(32))
NOW = 1_790_000_000


def go_signer() -> NoteSigner:
    raw = base64.b64decode(GO_SKEY.split("+", 4)[4])
    assert raw[0] == ED25519_TYPE
    return NoteSigner("PeterNeumann", Ed25519PrivateKey.from_private_bytes(raw[1:]))


def test_go_reference_note_signs_and_verifies_byte_for_byte() -> None:
    signer = go_signer()
    assert str(signer.verifier) == GO_VKEY
    assert str(Note(GO_TEXT, (sign_note(GO_TEXT, signer),))) == GO_NOTE
    note, key = Note.parse(GO_NOTE), VerifierKey.parse(GO_VKEY)
    (sig,) = note.signed_by(key)
    assert verify_note_signature(note.text, sig, key)
    assert not verify_note_signature(note.text.replace("cryptography", "cryptographY"), sig, key)


def test_published_checkpoint_and_witness_cosignature_verify() -> None:
    note = Note.parse(CT_CHECKPOINT)
    checkpoint = Checkpoint.parse(note.text)
    assert (checkpoint.origin, checkpoint.tree_size) == (
        "arche2025h1.staging.ct.transparency.dev",
        1432088532,
    )
    log_key, remora = VerifierKey.parse(CT_LOG_VKEY), VerifierKey.parse(REMORA_VKEY)
    assert remora.sig_type == COSIGNATURE_V1_TYPE and str(remora) == REMORA_VKEY
    (log_sig,) = note.signed_by(log_key)
    assert verify_note_signature(note.text, log_sig, log_key)
    (cosig,) = note.signed_by(remora)
    assert verify_cosignature(note.text, cosig, remora)
    clobbered = Checkpoint(checkpoint.origin, 42, checkpoint.root_hash).text()
    assert not verify_cosignature(clobbered, cosig, remora)
    assert count_cosigners(note, [remora]).cosigned == ["remora.n621.de"]


@pytest.mark.parametrize(
    "bad",
    [
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong key ID
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # space in name
        "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # upper-case ID
        "PeterNeumann+c74f20a3+Apc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # truncated key
        "PeterNeumann+c74f20a3",
    ],
)
def test_malformed_verifier_keys_are_refused(bad: str) -> None:
    with pytest.raises(NoteError):
        VerifierKey.parse(bad)


# -- the tamper matrix -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def signed() -> tuple[Note, NoteSigner, list[NoteSigner]]:
    """A log checkpoint cosigned by three witnesses."""
    log = NoteSigner(ORIGIN, Ed25519PrivateKey.generate())
    note = sign_checkpoint(Checkpoint(ORIGIN, 1234, ROOT), log)
    witnesses = [
        NoteSigner(f"witness.example/w{i}", Ed25519PrivateKey.generate(), COSIGNATURE_V1_TYPE)
        for i in range(3)
    ]
    cosigs = tuple(cosign(note.text, w, NOW - 60 * i) for i, w in enumerate(witnesses))
    return Note(note.text, note.signatures + cosigs), log, witnesses


def log_ok(note: Note, log: NoteSigner) -> bool:
    sigs = note.signed_by(log.verifier)
    return bool(sigs) and all(verify_note_signature(note.text, s, log.verifier) for s in sigs)


def replace_line(text: str, index: int, value: str) -> str:
    lines = text.split("\n")
    lines[index] = value
    return "\n".join(lines)


TEXT_TAMPERS = {
    "origin": lambda t: replace_line(t, 0, "censorwatch/log/" + "cd" * 32),
    "size": lambda t: replace_line(t, 1, "1235"),
    "size with a leading zero": lambda t: replace_line(t, 1, "01234"),
    "root": lambda t: replace_line(t, 2, base64.b64encode(bytes([1]) + ROOT[1:]).decode("ascii")),
    "extension line": lambda t: t + "extra\n",
}


@pytest.mark.parametrize("what", sorted(TEXT_TAMPERS))
def test_any_changed_line_breaks_log_signature_and_every_cosignature(signed, what: str) -> None:
    note, log, witnesses = signed
    keys = [w.verifier for w in witnesses]
    assert log_ok(note, log) and len(count_cosigners(note, keys, NOW).cosigned) == 3
    changed = Note(TEXT_TAMPERS[what](note.text), note.signatures)
    assert not log_ok(changed, log)
    count = count_cosigners(changed, keys, NOW)
    assert count.cosigned == [] and len(count.invalid) == 3
    decision = decide("ab" * 32, changed, witnesses=keys, quorum=1, now=NOW)
    assert not decision.trusted and decision.problems


@pytest.mark.parametrize("position", [0, 3, 4, 11, 12, 40, 75])
def test_any_signature_byte_or_the_timestamp_changed_fails(signed, position: int) -> None:
    """Bytes 0-3 are the key ID (the line is then ignored: an unknown key), 4-11 the
    timestamp, 12-75 the Ed25519 signature (the line then fails to verify)."""
    note, _, witnesses = signed
    keys = [w.verifier for w in witnesses]
    first = note.signatures[1]
    raw = bytearray(first.key_id + first.signature)
    raw[position] ^= 0x01
    tampered = Signature(first.name, bytes(raw[:4]), bytes(raw[4:]))
    changed = Note(note.text, (note.signatures[0], tampered, *note.signatures[2:]))
    count = count_cosigners(changed, keys, NOW)
    assert "witness.example/w0" not in count.cosigned
    assert count.cosigned == ["witness.example/w1", "witness.example/w2"]
    if position >= 4:
        assert count.invalid == ["witness.example/w0"]
    else:
        assert count.invalid == []  # an unknown key ID: ignored, as the spec requires


def test_renamed_cosigner_and_wrong_key_do_not_count(signed) -> None:
    note, log, witnesses = signed
    # The log's own line under another key name is an unknown key: the log did not sign.
    renamed_log = Signature("censorwatch/log/other", *_id_and_sig(note.signatures[0]))
    assert not log_ok(Note(note.text, (renamed_log, *note.signatures[1:])), log)
    other_log = NoteSigner(ORIGIN, Ed25519PrivateKey.generate())  # same name, another key
    assert not log_ok(Note(note.text, (sign_note(note.text, other_log),)), log)
    renamed = Signature("witness.example/other", *_id_and_sig(note.signatures[1]))
    changed = Note(note.text, (note.signatures[0], renamed))
    assert count_cosigners(changed, [witnesses[0].verifier], NOW).cosigned == []
    stranger = NoteSigner("witness.example/w0", Ed25519PrivateKey.generate(), COSIGNATURE_V1_TYPE)
    count = count_cosigners(note, [stranger.verifier], NOW)
    assert count.cosigned == [] and count.invalid == []  # same name, other key ID: unknown
    # A log key (type 0x01) is not a cosigner key, even with the right name and bytes.
    as_log_key = VerifierKey(witnesses[0].name, ED25519_TYPE, witnesses[0].verifier.public_key)
    assert not verify_cosignature(note.text, note.signatures[1], as_log_key)


def _id_and_sig(sig: Signature) -> tuple[bytes, bytes]:
    return sig.key_id, sig.signature


def test_a_cosignature_from_the_future_is_refused(signed) -> None:
    note, _, witnesses = signed
    later = cosign(note.text, witnesses[0], NOW + 3600)
    changed = Note(note.text, (note.signatures[0], later))
    count = count_cosigners(changed, [witnesses[0].verifier], NOW)
    assert count.cosigned == [] and count.invalid == ["witness.example/w0"]


def test_duplicate_cosigner_counts_once_and_quorum(signed) -> None:
    note, _, witnesses = signed
    w0 = witnesses[0]
    twice = Note(
        note.text, (note.signatures[0], note.signatures[1], cosign(note.text, w0, NOW - 5))
    )
    keys = parse_witness_keys([str(w0.verifier), str(w0.verifier), str(witnesses[1].verifier)])
    assert len(keys) == 2  # the same key given twice is one witness
    count = count_cosigners(twice, keys, NOW)
    assert count.cosigned == ["witness.example/w0"]
    assert not decide("ab" * 32, twice, witnesses=keys, quorum=2, now=NOW).trusted
    reached = decide("ab" * 32, twice, witnesses=keys, quorum=1, now=NOW)
    assert reached.trusted and "1 of 2 witnesses" in reached.basis[0]
    full = decide("ab" * 32, note, witnesses=[w.verifier for w in witnesses], now=NOW)
    assert full.trusted  # quorum defaults to all the witnesses named
    short = decide("ab" * 32, twice, witnesses=[w.verifier for w in witnesses], now=NOW)
    assert not short.trusted and not short.problems and "quorum is 3" in short.reasons[0]


@pytest.mark.parametrize(
    "text",
    [
        "a\n1\nAAAA\n\n— a AAAAAAAA\n",  # root not 32 bytes
        "a\n1\n" + base64.b64encode(ROOT).decode() + "\n",  # no signatures
        "a\n1\n" + base64.b64encode(ROOT).decode() + "\n\n— a AAAAAAAA",  # no final newline
        "a\n\x01\n" + base64.b64encode(ROOT).decode() + "\n\n— a AAAAAAAA\n",  # control char
        "a\n1\n" + base64.b64encode(ROOT).decode() + "\n\n- a AAAAAAAA\n",  # hyphen, not em dash
    ],
)
def test_malformed_notes_are_refused(text: str) -> None:
    with pytest.raises(NoteError):
        Checkpoint.parse(Note.parse(text).text)
