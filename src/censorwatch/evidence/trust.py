"""Whom a verifier trusts: pinned log ids, the trust file, and quorums of witnesses.

A bundle that checks out proves only that it is consistent with the log key it carries;
anyone can make a fresh log, sign a tree head over a fabricated measurement and bundle it.
What turns "consistent" into "verified" is one of three trust sources the verifier chose:

- ``--log-id``: the id the log's operator publishes, given on the command line;
- the trust file: log ids the user added with ``evidence trust add`` (one per line,
  ``LOG_ID NAME``), ``$CENSORWATCH_TRUST_FILE`` or ``$XDG_CONFIG_HOME/censorwatch/trusted-logs``;
- witnesses: at least ``quorum`` of the given cosigner keys cosigned the bundle's checkpoint,
  i.e. independently checked that this tree head extends everything the log showed them.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from censorwatch.durable import write_atomic
from censorwatch.evidence.note import (
    COSIGNATURE_V1_TYPE,
    Note,
    NoteError,
    VerifierKey,
    verify_cosignature,
)

TRUST_FILE_ENV = "CENSORWATCH_TRUST_FILE"
LOG_ID_PATTERN = re.compile(r"[0-9a-f]{64}")
#: Cosignatures dated later than this many seconds after now are refused (clock skew).
FUTURE_SKEW_S = 600


class TrustFileError(ValueError):
    """The trust file, or a log id given for it, is not in its one accepted form."""


def default_trust_file() -> Path:
    env = os.environ.get(TRUST_FILE_ENV)
    if env:
        return Path(env)
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "censorwatch" / "trusted-logs"


def normalise_log_id(text: str) -> str:
    value = text.strip().lower()
    if not LOG_ID_PATTERN.fullmatch(value):
        raise TrustFileError(f"{text!r} is not a log id (64 hex digits)")
    return value


def read_trust_file(path: Path) -> dict[str, str]:
    """Log id -> name. A missing file trusts nothing; a malformed line is an error."""
    if not path.exists():
        return {}
    trusted: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        lid, _, name = line.partition(" ")
        try:
            trusted[normalise_log_id(lid)] = name.strip()
        except TrustFileError as exc:
            raise TrustFileError(f"{path}:{number}: {exc}") from None
    return trusted


def write_trust_file(path: Path, trusted: dict[str, str]) -> None:
    """Replace the trust file whole (temporary file, fsync, rename)."""
    lines = ["# log ids censorwatch evidence verify trusts: LOG_ID NAME (evidence trust add)"]
    lines += [f"{lid} {name}".rstrip() for lid, name in sorted(trusted.items())]
    write_atomic(path, ("\n".join(lines) + "\n").encode("utf-8"))


def trust_log(path: Path, log_id: str, name: str = "") -> bool:
    """Add ``log_id``; False when it was already there (a name given then replaces its name;
    none keeps the one it had)."""
    lid = normalise_log_id(log_id)
    if any(c in name for c in "\n\r"):
        raise TrustFileError("a name is one line")
    trusted = read_trust_file(path)
    new = lid not in trusted
    if new or name.strip():
        trusted[lid] = name.strip()
    write_trust_file(path, trusted)
    return new


def distrust_log(path: Path, log_id: str) -> bool:
    """Remove ``log_id``; False when it was not there."""
    lid = normalise_log_id(log_id)
    trusted = read_trust_file(path)
    if lid not in trusted:
        return False
    del trusted[lid]
    write_trust_file(path, trusted)
    return True


# -- witness quorum ----------------------------------------------------------------------------


@dataclass
class WitnessCount:
    """Which of the given witnesses cosigned a checkpoint, and which signatures failed."""

    cosigned: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)


def parse_witness_keys(texts: list[str]) -> list[VerifierKey]:
    """Cosigner vkeys (type 0x04), each counted once however often it is given."""
    keys: dict[bytes, VerifierKey] = {}
    for text in texts:
        key = VerifierKey.parse(text)
        if key.sig_type != COSIGNATURE_V1_TYPE:
            raise NoteError(f"{key.name}: a witness key is a cosigner key (type 0x04)")
        keys.setdefault(key.public_key, key)
    return list(keys.values())


def count_cosigners(
    note: Note, witnesses: list[VerifierKey], now: int | None = None
) -> WitnessCount:
    """The witnesses with a valid cosignature/v1 on ``note``; a witness with several lines
    counts once. A line that names a given witness (name and key ID) but does not verify is
    reported as invalid: the note was altered, or the witness misbehaved."""
    now = int(time.time()) if now is None else now
    count = WitnessCount()
    for key in witnesses:
        lines = note.signed_by(key)
        good = [
            s for s in lines
            if verify_cosignature(note.text, s, key, not_after=now + FUTURE_SKEW_S)
        ]  # fmt: skip
        if len(good) != len(lines):
            count.invalid.append(key.name)
        if good:
            count.cosigned.append(key.name)
    return count


# -- the decision ------------------------------------------------------------------------------


@dataclass
class TrustDecision:
    """Whether a consistent bundle rests on a log the verifier trusts, and on what."""

    trusted: bool = False
    #: What the trust rests on, in words (printed under VERIFIED).
    basis: list[str] = field(default_factory=list)
    #: What contradicts the bundle (a pinned id that differs, a forged cosignature): FAILED.
    problems: list[str] = field(default_factory=list)
    #: Why it is not trusted although consistent (quorum not reached, log not trusted).
    reasons: list[str] = field(default_factory=list)
    witnesses: WitnessCount | None = None


def decide(
    log_id: str | None,
    checkpoint: Note | None,
    *,
    pinned_log_id: str | None = None,
    trusted_logs: dict[str, str] | None = None,
    witnesses: list[VerifierKey] | None = None,
    quorum: int | None = None,
    now: int | None = None,
) -> TrustDecision:
    """Every trust source the verifier named on the command line must hold (``--log-id``
    must match; ``--witness`` must reach its quorum); with none named, the trust file decides.
    """
    decision = TrustDecision()
    if log_id is None:
        decision.problems.append("the bundle names no usable log key")
        return decision
    named = False
    if pinned_log_id is not None:
        named = True
        if log_id != pinned_log_id.strip().lower():
            decision.problems.append(f"the bundle's log is {log_id}, not {pinned_log_id}")
        else:
            decision.basis.append(f"log {log_id} is the one you pinned with --log-id")
    if witnesses:
        named = True
        need = len(witnesses) if quorum is None else quorum
        if checkpoint is None:
            decision.reasons.append("the bundle carries no checkpoint, hence no cosignatures")
        else:
            count = count_cosigners(checkpoint, witnesses, now)
            decision.witnesses = count
            for name in count.invalid:
                decision.problems.append(
                    f"a cosignature of witness {name} does not verify (altered or forged)"
                )
            if len(count.cosigned) >= need:
                decision.basis.append(
                    f"{len(count.cosigned)} of {len(witnesses)} witnesses you named cosigned the "
                    f"checkpoint (quorum {need}): {', '.join(count.cosigned)}"
                )
            else:
                decision.reasons.append(
                    f"only {len(count.cosigned)} of the {len(witnesses)} witnesses you named "
                    f"cosigned the checkpoint; the quorum is {need}"
                )
    if not named:
        trusted = trusted_logs or {}
        if log_id in trusted:
            label = f" ({trusted[log_id]})" if trusted[log_id] else ""
            decision.basis.append(f"log {log_id}{label} is in your trust file")
        else:
            decision.reasons.append(f"log {log_id} is not in your trust file")
    decision.trusted = bool(decision.basis) and not decision.reasons and not decision.problems
    return decision
