"""Signed notes, checkpoints and cosignatures: the transparency-log ecosystem's formats.

Implemented from the C2SP specifications, so that the log's tree heads can be read, cosigned
and checked by any tool of that ecosystem:

- ``signed-note``: text ending in a newline, a blank line, then signature lines
  ``— <key name> <base64(key ID (4 bytes) || signature)>``; an Ed25519 key ID is
  ``SHA-256(name || 0x0A || 0x01 || public key)[:4]``. Verifier keys ("vkeys") are written
  ``<name>+<hex key ID>+<base64(type || public key)>``.
- ``tlog-checkpoint``: the note text is the origin line, the tree size in decimal and the
  base64 root hash (extension lines are refused here: the log never writes them).
- ``tlog-cosignature`` (cosignature/v1): signature type 0x04, key ID
  ``SHA-256(name || 0x0A || 0x04 || public key)[:4]``, signature bytes
  ``u64 timestamp (big-endian) || Ed25519 signature`` over
  ``cosignature/v1\\ntime <timestamp>\\n<checkpoint text>``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from censorwatch.signing.encoding import ed25519_verify, public_key_bytes

ED25519_TYPE = 0x01
COSIGNATURE_V1_TYPE = 0x04
SIGNATURE_PREFIX = "— "  # em dash, space
MAX_NOTE_BYTES = 64 << 10
MAX_SIGNATURES = 64
HASH_SIZE = 32


class NoteError(ValueError):
    """A note, checkpoint, key or signature that is not in its one accepted form."""


def _b64decode(text: str) -> bytes:
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise NoteError("not standard base64") from None
    if base64.b64encode(data).decode("ascii") != text:
        raise NoteError("not canonical base64")
    return data


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _check_name(name: str) -> None:
    if not name or any(c.isspace() or c == "+" for c in name):
        raise NoteError(f"key name {name!r} is empty or holds a space or '+'")


def key_id(name: str, sig_type: int, public_key: bytes) -> bytes:
    """The 4-byte key ID: SHA-256(name || 0x0A || type || public key)[:4]."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([sig_type]) + public_key).digest()[
        :4
    ]


# -- keys ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifierKey:
    """A named public key of one signature type (Ed25519 note signer or cosigner)."""

    name: str
    sig_type: int
    public_key: bytes

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.sig_type, self.public_key)

    def __str__(self) -> str:
        """The vkey text: ``<name>+<hex key ID>+<base64(type || public key)>``."""
        return f"{self.name}+{self.key_id.hex()}+{_b64(bytes([self.sig_type]) + self.public_key)}"

    @classmethod
    def parse(cls, text: str) -> VerifierKey:
        """Parse a vkey; its key ID must be the one its name and key derive."""
        parts = text.strip().split("+", 2)
        if len(parts) != 3:
            raise NoteError("a verifier key is NAME+KEYID+BASE64")
        name, hex_id, material = parts
        _check_name(name)
        if len(hex_id) != 8 or hex_id != hex_id.lower():
            raise NoteError("a verifier key's ID is 8 lower-case hex digits")
        raw = _b64decode(material)
        if len(raw) != 33 or raw[0] not in (ED25519_TYPE, COSIGNATURE_V1_TYPE):
            raise NoteError("only Ed25519 keys (type 0x01) and cosigners (type 0x04) are known")
        key = cls(name, raw[0], raw[1:])
        try:
            if bytes.fromhex(hex_id) != key.key_id:
                raise NoteError("the key ID does not match the name and key")
        except ValueError:
            raise NoteError("the key ID is not hex") from None
        return key


@dataclass(frozen=True)
class NoteSigner:
    """A private key with its name, signing notes (type 0x01) or cosigning (type 0x04)."""

    name: str
    key: Ed25519PrivateKey
    sig_type: int = ED25519_TYPE

    def __post_init__(self) -> None:
        _check_name(self.name)

    @property
    def verifier(self) -> VerifierKey:
        return VerifierKey(self.name, self.sig_type, public_key_bytes(self.key))


# -- notes -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signature:
    """One signature line: the key name, the 4-byte key ID and the signature bytes."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        return f"{SIGNATURE_PREFIX}{self.name} {_b64(self.key_id + self.signature)}\n"

    @classmethod
    def parse_line(cls, line: str) -> Signature:
        if not line.startswith(SIGNATURE_PREFIX):
            raise NoteError("a signature line starts with an em dash and a space")
        parts = line[len(SIGNATURE_PREFIX) :].split(" ")
        if len(parts) != 2:
            raise NoteError("a signature line is '— NAME BASE64'")
        name, blob = parts
        _check_name(name)
        raw = _b64decode(blob)
        if len(raw) < 5:
            raise NoteError("a signature is a key ID and at least one byte")
        return cls(name, raw[:4], raw[4:])


@dataclass(frozen=True)
class Note:
    """A signed note: its text (ending in a newline) and its signature lines, in order."""

    text: str
    signatures: tuple[Signature, ...]

    def __str__(self) -> str:
        return self.text + "\n" + "".join(s.line() for s in self.signatures)

    @classmethod
    def parse(cls, data: str | bytes) -> Note:
        """Strict parsing: UTF-8, no control characters but newlines, a bounded size."""
        if isinstance(data, bytes):
            if len(data) > MAX_NOTE_BYTES:
                raise NoteError("the note is too large")
            try:
                data = data.decode("utf-8")
            except UnicodeDecodeError:
                raise NoteError("a note is UTF-8") from None
        if len(data.encode("utf-8")) > MAX_NOTE_BYTES:
            raise NoteError("the note is too large")
        if any(ord(c) < 0x20 and c != "\n" for c in data):
            raise NoteError("a note holds no control characters but newlines")
        if not data.endswith("\n"):
            raise NoteError("a note ends with a newline")
        split = data.rfind("\n\n")
        if split < 0:
            raise NoteError("a note has a blank line before its signatures")
        text, sig_block = data[: split + 1], data[split + 2 :]
        lines = sig_block.split("\n")[:-1]
        if not lines:
            raise NoteError("a note has at least one signature")
        if len(lines) > MAX_SIGNATURES:
            raise NoteError(f"more than {MAX_SIGNATURES} signatures")
        return cls(text, tuple(Signature.parse_line(line) for line in lines))

    def signed_by(self, key: VerifierKey) -> list[Signature]:
        """The signature lines whose name and key ID are both ``key``'s (the others are
        ignored, as the specification requires for unknown keys)."""
        return [s for s in self.signatures if s.name == key.name and s.key_id == key.key_id]


def sign_note(text: str, signer: NoteSigner) -> Signature:
    """An Ed25519 note signature (type 0x01) over ``text``."""
    if signer.sig_type != ED25519_TYPE:
        raise NoteError("a cosigner signs with cosign(), not sign_note()")
    if not text.endswith("\n"):
        raise NoteError("a note text ends with a newline")
    return Signature(signer.name, signer.verifier.key_id, signer.key.sign(text.encode("utf-8")))


def verify_note_signature(text: str, sig: Signature, key: VerifierKey) -> bool:
    """Whether ``sig`` is ``key``'s valid Ed25519 note signature over ``text``."""
    return (
        key.sig_type == ED25519_TYPE
        and sig.name == key.name
        and sig.key_id == key.key_id
        and ed25519_verify(key.public_key, sig.signature, text.encode("utf-8"))
    )


# -- checkpoints -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A log's tree head as C2SP checkpoint text: origin, size, base64 root hash."""

    origin: str
    tree_size: int
    root_hash: bytes

    def text(self) -> str:
        return f"{self.origin}\n{self.tree_size}\n{_b64(self.root_hash)}\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) != 4 or lines[3] != "":
            raise NoteError("a checkpoint here is exactly three lines (no extension lines)")
        origin, size, root = lines[:3]
        if not origin:
            raise NoteError("the origin line is empty")
        if not size.isascii() or not size.isdigit() or (size != "0" and size.startswith("0")):
            raise NoteError("the tree size is a decimal number without leading zeroes")
        tree_size = int(size)
        if tree_size >= 2**63:
            raise NoteError("the tree size is too large")
        root_hash = _b64decode(root)
        if len(root_hash) != HASH_SIZE:
            raise NoteError("the root hash is 32 bytes")
        return cls(origin, tree_size, root_hash)


def sign_checkpoint(checkpoint: Checkpoint, signer: NoteSigner) -> Note:
    """The checkpoint as a signed note, signed by the log (whose key name is the origin)."""
    text = checkpoint.text()
    return Note(text, (sign_note(text, signer),))


# -- cosignatures (cosignature/v1) -----------------------------------------------------------------


def cosignature_message(checkpoint_text: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n{checkpoint_text}".encode()


def cosign(checkpoint_text: str, signer: NoteSigner, timestamp: int) -> Signature:
    """A timestamped Ed25519 cosignature (type 0x04) over a checkpoint's note text."""
    if signer.sig_type != COSIGNATURE_V1_TYPE:
        raise NoteError("a cosignature is made with a cosigner key (type 0x04)")
    if not 0 <= timestamp < 2**63:
        raise NoteError("the timestamp is out of range")
    sig = signer.key.sign(cosignature_message(checkpoint_text, timestamp))
    return Signature(signer.name, signer.verifier.key_id, struct.pack(">Q", timestamp) + sig)


def cosignature_time(sig: Signature) -> int:
    if len(sig.signature) != 8 + 64:
        raise NoteError("a cosignature is an 8-byte timestamp and a 64-byte signature")
    return struct.unpack(">Q", sig.signature[:8])[0]


def verify_cosignature(
    checkpoint_text: str, sig: Signature, key: VerifierKey, *, not_after: int | None = None
) -> bool:
    """Whether ``sig`` is ``key``'s valid cosignature/v1 over the checkpoint text
    (and, with ``not_after``, made no later than that POSIX time)."""
    if key.sig_type != COSIGNATURE_V1_TYPE or sig.name != key.name or sig.key_id != key.key_id:
        return False
    try:
        timestamp = cosignature_time(sig)
    except NoteError:
        return False
    if timestamp >= 2**63 or (not_after is not None and timestamp > not_after):
        return False
    message = cosignature_message(checkpoint_text, timestamp)
    return ed25519_verify(key.public_key, sig.signature[8:], message)
