"""The witness's add-checkpoint (C2SP tlog-witness) against a real log: every status code, the
persistent per-log state, and no cosignature for a rollback or a fork."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from censorwatch.evidence.log import TransparencyLog
from censorwatch.evidence.note import (
    Checkpoint,
    Note,
    NoteSigner,
    Signature,
    sign_checkpoint,
    verify_cosignature,
)
from censorwatch.evidence.witness import (
    SIZE_CONTENT_TYPE,
    Witness,
    WitnessError,
    add_checkpoint_body,
)


def grow(log: TransparencyLog, start: int, count: int) -> Note:
    for i in range(start, start + count):
        log.append(f"uid-{i}", {"n": i})
    return log.checkpoint_for(log.publish_head())


def cosigned(witness: Witness, note: Note, body: str) -> bool:
    (line,) = body.splitlines()
    return verify_cosignature(note.text, Signature.parse_line(line), witness.verifier)


def test_add_checkpoint_follows_the_spec(tmp_path: Path) -> None:
    witness = Witness(tmp_path / "witness", "witness.example/w1")
    with TransparencyLog(tmp_path / "log") as log, TransparencyLog(tmp_path / "other") as other:
        first = grow(log, 0, 5)
        # An unknown log: 404, nothing recorded.
        assert witness.add_checkpoint(add_checkpoint_body(0, [], first)).status == 404
        assert witness.add_log(log.public_key) == log.origin
        # Signed by another key under this log's origin: 403.
        forged = sign_checkpoint(Checkpoint.parse(first.text), NoteSigner(log.origin, other._key))
        assert witness.add_checkpoint(add_checkpoint_body(0, [], forged)).status == 403
        # Malformed: 400.
        assert witness.add_checkpoint(b"old x\n\n" + str(first).encode()).status == 400
        assert witness.add_checkpoint(add_checkpoint_body(9, [], first)).status == 400
        # First contact: old size 0, empty proof, cosigned.
        answer = witness.add_checkpoint(add_checkpoint_body(0, [], first))
        assert answer.status == 200 and cosigned(witness, first, answer.body)
        assert witness.latest(log.origin) == Checkpoint.parse(first.text)

        second = grow(log, 5, 6)
        # The old size must be the one the witness holds: 409 with that size.
        stale = witness.add_checkpoint(add_checkpoint_body(0, [], second))
        assert (stale.status, stale.body, stale.content_type) == (409, "5\n", SIZE_CONTENT_TYPE)
        # A proof that does not verify: 422, state unchanged.
        wrong = log.consistency_proof(4, 11)
        assert witness.add_checkpoint(add_checkpoint_body(5, wrong, second)).status == 422
        assert witness.latest(log.origin).tree_size == 5
        good = witness.add_checkpoint(add_checkpoint_body(5, log.consistency_proof(5, 11), second))
        assert good.status == 200 and cosigned(witness, second, good.body)

        # Rollback: the log presents its older checkpoint again.
        rollback = witness.add_checkpoint(add_checkpoint_body(5, [], first))
        assert rollback.status == 409 and rollback.body == "11\n"
        rollback = witness.add_checkpoint(add_checkpoint_body(11, [], first))
        assert rollback.status == 400  # old size beyond the checkpoint's

    # Fork: the same key signs another tree of the same size.
    with TransparencyLog(tmp_path / "log") as log:
        key = log._key  # the log's own key, as a misbehaving operator would use it
    fork_root = bytes(32)
    fork = sign_checkpoint(Checkpoint(log.origin, 11, fork_root), NoteSigner(log.origin, key))
    forked = witness.add_checkpoint(add_checkpoint_body(11, [], fork))
    assert forked.status == 409 and forked.body == "11\n"
    assert witness.latest(log.origin).root_hash != fork_root
    refused = [json.loads(line) for line in (tmp_path / "witness" / "refused.jsonl").open()]
    assert [r["reason"] for r in refused] == [
        "consistency proof does not verify",
        "same size, another root",
    ]

    # The state survives a restart; the name is fixed at first use.
    again = Witness(tmp_path / "witness")
    assert again.verifier == witness.verifier
    assert again.latest(log.origin).tree_size == 11
    with pytest.raises(WitnessError, match="named"):
        Witness(tmp_path / "witness", "witness.example/other")
