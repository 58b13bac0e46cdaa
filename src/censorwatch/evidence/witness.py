"""A transparency-log witness (C2SP tlog-witness): it cosigns only what extends what it saw.

A witness keeps, per log (identified by its checkpoint origin), the latest checkpoint it
verified and cosigned. ``add-checkpoint`` takes the old size, a consistency proof and a new
checkpoint; it answers 404 for an unknown log, 403 when the log's signature does not verify,
400 for a malformed request, 409 (with the size it holds, ``text/x.tlog.size``) when the old
size is not the one it holds or the same size comes with another root, 422 when the proof does
not verify, and otherwise persists the new checkpoint and returns its cosignature/v1 line.
Checking the old size and persisting the new state happen under one lock, so two requests can
never roll the state back.

The state directory::

    witness.key      the witness's Ed25519 private key (0600), created on first use
    witness.json     its name (the key name of its cosignatures)
    logs.json        the logs it witnesses: origin -> public key (base64) and URL
    state/<sha256(origin)>.json   the latest cosigned checkpoint of each log
    refused.jsonl    checkpoints refused for a conflict or a bad proof: evidence of a log's
                     misbehaviour (the log's signature on them verified)

``Follower`` polls logs (``/api/v1/log/checkpoint`` and ``/proof/consistency``) and feeds
their checkpoints through the very same ``add_checkpoint``; ``request_cosignatures`` is the
client side a log uses to ask a witness.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from censorwatch.durable import write_atomic
from censorwatch.evidence import merkle
from censorwatch.evidence.formats import checkpoint_origin, consistency_from_json, log_id
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
    verify_note_signature,
)
from censorwatch.signing.encoding import b64decode, b64encode, public_key_bytes
from censorwatch.signing.keys import load_or_create

SIZE_CONTENT_TYPE = "text/x.tlog.size"
MAX_REQUEST_BYTES = 64 << 10
MAX_PROOF_LINES = 63
TIMEOUT_S = 10.0


class WitnessError(Exception):
    """A log or witness could not be asked, or answered something unusable."""


@dataclass(frozen=True)
class Answer:
    """An ``add-checkpoint`` answer: HTTP status, body and its content type."""

    status: int
    body: str
    content_type: str = "text/plain; charset=utf-8"


def _b64_hashes(lines: list[str]) -> list[bytes]:
    hashes = []
    for line in lines:
        try:
            raw = base64.b64decode(line.encode("ascii"), validate=True)
        except (ValueError, UnicodeEncodeError):
            raise NoteError("a proof line is one base64 hash") from None
        if len(raw) != merkle.HASH_SIZE or base64.b64encode(raw).decode() != line:
            raise NoteError("a proof line is one base64 hash")
        hashes.append(raw)
    return hashes


def add_checkpoint_body(old_size: int, proof: list[bytes], note: Note | str) -> bytes:
    """The request body of ``add-checkpoint``."""
    lines = [f"old {old_size}\n", *(base64.b64encode(h).decode() + "\n" for h in proof), "\n"]
    return ("".join(lines) + str(note)).encode("utf-8")


def parse_add_checkpoint(body: bytes) -> tuple[int, list[bytes], Note]:
    """Old size, proof and signed checkpoint of an ``add-checkpoint`` body (NoteError if bad)."""
    if len(body) > MAX_REQUEST_BYTES:
        raise NoteError("the request is too large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise NoteError("the request is UTF-8") from None
    head, sep, rest = text.partition("\n\n")
    if not sep:
        raise NoteError("the request has a blank line before the checkpoint")
    lines = head.split("\n")
    first = lines[0]
    digits = first.removeprefix("old ")
    if (
        not first.startswith("old ")
        or not digits.isascii()
        or not digits.isdigit()
        or (digits != "0" and digits.startswith("0"))
    ):
        raise NoteError("the first line is 'old SIZE'")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise NoteError(f"more than {MAX_PROOF_LINES} proof lines")
    return int(digits), _b64_hashes(lines[1:]), Note.parse(rest)


class Witness:
    """The witness's key, the logs it knows and its per-log state (thread-safe)."""

    def __init__(self, state_dir: Path, name: str | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = load_or_create(self.state_dir / "witness.key")
        meta_path = self.state_dir / "witness.json"
        stored = json.loads(meta_path.read_text())["name"] if meta_path.exists() else None
        default = f"censorwatch-witness/{hashlib.sha256(public_key_bytes(key)).hexdigest()[:16]}"
        if stored and name and name != stored:
            raise WitnessError(
                f"this witness is named {stored!r}; a new name would be a new witness "
                "(use another --state directory)"
            )
        chosen = stored or name or default
        if not stored:
            write_atomic(meta_path, json.dumps({"name": chosen}).encode() + b"\n")
        self.signer = NoteSigner(chosen, key, COSIGNATURE_V1_TYPE)
        self._lock = threading.Lock()

    @property
    def verifier(self) -> VerifierKey:
        """What verifiers pass to ``evidence verify --witness``."""
        return self.signer.verifier

    # -- the logs it witnesses -------------------------------------------------------------------

    def _logs_path(self) -> Path:
        return self.state_dir / "logs.json"

    def logs(self) -> dict[str, dict[str, Any]]:
        path = self._logs_path()
        return json.loads(path.read_text()) if path.exists() else {}

    def add_log(self, public_key: bytes, url: str | None = None) -> str:
        """Witness the log with this key; returns its origin. A known origin keeps its key."""
        origin = checkpoint_origin(log_id(public_key))
        with self._lock:
            logs = self.logs()
            known = logs.get(origin)
            if known is not None and known["public_key"] != b64encode(public_key):
                raise WitnessError(f"{origin} is already known with another key")
            if known is None or (url and known.get("url") != url):
                logs[origin] = {"public_key": b64encode(public_key), "url": url}
                write_atomic(self._logs_path(), json.dumps(logs, indent=2).encode() + b"\n")
        return origin

    def _log_key(self, origin: str) -> VerifierKey | None:
        entry = self.logs().get(origin)
        if entry is None:
            return None
        return VerifierKey(origin, ED25519_TYPE, b64decode(entry["public_key"], 32))

    # -- per-log state ---------------------------------------------------------------------------

    def _state_path(self, origin: str) -> Path:
        return self.state_dir / "state" / f"{hashlib.sha256(origin.encode()).hexdigest()}.json"

    def latest(self, origin: str) -> Checkpoint | None:
        """The latest checkpoint of ``origin`` this witness cosigned."""
        path = self._state_path(origin)
        if not path.exists():
            return None
        return Checkpoint.parse(json.loads(path.read_text())["checkpoint"])

    def _refused(self, reason: str, old: int, note: Note) -> None:
        record = {"note": str(note), "old": old, "reason": reason, "time": int(time.time())}
        with open(self.state_dir / "refused.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")

    # -- the protocol ----------------------------------------------------------------------------

    def add_checkpoint(self, body: bytes) -> Answer:
        """C2SP tlog-witness ``add-checkpoint``: check, persist, cosign."""
        try:
            old, proof, note = parse_add_checkpoint(body)
            checkpoint = Checkpoint.parse(note.text)
        except NoteError as exc:
            return Answer(400, f"malformed request: {exc}\n")
        key = self._log_key(checkpoint.origin)
        if key is None:
            return Answer(404, f"unknown log {checkpoint.origin}\n")
        if not any(verify_note_signature(note.text, s, key) for s in note.signed_by(key)):
            return Answer(403, "no signature from the log's key verifies\n")
        if old > checkpoint.tree_size:
            return Answer(400, "the old size is larger than the checkpoint's\n")
        if old == 0 and proof:
            return Answer(400, "the proof from size 0 is empty\n")
        with self._lock:
            latest = self.latest(checkpoint.origin)
            held = latest.tree_size if latest else 0
            if old != held:
                return Answer(409, f"{held}\n", SIZE_CONTENT_TYPE)
            if latest is not None and old == checkpoint.tree_size:
                if latest.root_hash != checkpoint.root_hash:
                    self._refused("same size, another root", old, note)
                    return Answer(409, f"{held}\n", SIZE_CONTENT_TYPE)
            elif (
                latest is not None
                and old > 0
                and not merkle.verify_consistency(
                    old, checkpoint.tree_size, latest.root_hash, checkpoint.root_hash, proof
                )
            ):
                self._refused("consistency proof does not verify", old, note)
                return Answer(422, "the consistency proof does not verify\n")
            state = {"checkpoint": note.text, "origin": checkpoint.origin}
            write_atomic(
                self._state_path(checkpoint.origin), json.dumps(state).encode("utf-8") + b"\n"
            )
            signature = cosign(note.text, self.signer, int(time.time()))
        return Answer(200, signature.line())


# -- HTTP ------------------------------------------------------------------------------------------


def witness_app(witness: Witness) -> Any:
    """The witness's HTTP face: ``POST /add-checkpoint`` and its verifier key at ``GET /``."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    async def add(request: Request) -> Response:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_REQUEST_BYTES:
                return PlainTextResponse("request too large\n", status_code=413)
        answer = witness.add_checkpoint(bytes(body))
        return Response(answer.body, status_code=answer.status, media_type=answer.content_type)

    async def key(request: Request) -> Response:
        return PlainTextResponse(f"{witness.verifier}\n")

    return Starlette(
        routes=[Route("/add-checkpoint", add, methods=["POST"]), Route("/", key, methods=["GET"])]
    )


def _get(client: httpx.Client, url: str, params: dict[str, Any] | None = None) -> httpx.Response:
    try:
        response = client.get(url, params=params)
    except httpx.HTTPError as exc:
        raise WitnessError(f"{url}: {type(exc).__name__}: {exc}") from None
    if response.status_code != 200 or len(response.content) > MAX_REQUEST_BYTES:
        raise WitnessError(f"{url}: HTTP {response.status_code}: {response.text[:200]!r}")
    return response


class Follower:
    """Follows logs over their HTTP API and witnesses every new checkpoint they publish."""

    def __init__(self, witness: Witness, urls: list[str], interval: float = 5.0) -> None:
        self.witness = witness
        self.urls = [u.rstrip("/") for u in urls]
        self.interval = interval
        self._stop = threading.Event()

    def poll(self, url: str, client: httpx.Client) -> str:
        """Witness ``url``'s latest checkpoint once; returns what happened, in words."""
        doc = _get(client, f"{url}/api/v1/log/key").json()
        if not isinstance(doc, dict):
            raise WitnessError(f"{url}: the log key is not a JSON object")
        public_key = b64decode(doc.get("public_key"), 32)
        if doc.get("log_id") != log_id(public_key):
            raise WitnessError(f"{url}: the log id does not name the key")
        origin = self.witness.add_log(public_key, url)
        note = Note.parse(_get(client, f"{url}/api/v1/log/checkpoint").content)
        size = Checkpoint.parse(note.text).tree_size
        latest = self.witness.latest(origin)
        held = latest.tree_size if latest else 0
        proof: list[bytes] = []
        if 0 < held < size:
            answer = _get(
                client, f"{url}/api/v1/log/proof/consistency", {"first": held, "second": size}
            ).json()
            first, second, proof = consistency_from_json(answer)
            if (first, second) != (held, size):
                raise WitnessError(f"{url}: a proof from {first} to {second}, not {held}-{size}")
        elif held > size:
            self.witness._refused("the log went back in size", held, note)
            return f"ALERT {url}: the log serves size {size} after {held} (rolled back)"
        result = self.witness.add_checkpoint(add_checkpoint_body(held, proof, note))
        if result.status != 200:
            return f"ALERT {url}: checkpoint of size {size} refused ({result.status}): " + (
                result.body.strip()
            )
        return f"OK {url}: cosigned size {size}"

    def run(self, report: Callable[[str], None]) -> None:
        with httpx.Client(timeout=TIMEOUT_S) as client:
            while not self._stop.is_set():
                for url in self.urls:
                    try:
                        report(self.poll(url, client))
                    except Exception as exc:  # one log's bad answer must not stop the others
                        report(f"ERROR {url}: {type(exc).__name__}: {exc}")
                self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()


# -- the client side: a log asking a witness -------------------------------------------------------


def request_cosignatures(
    witness_url: str, note: Note, proof_from: Callable[[int], list[bytes]]
) -> list[Signature]:
    """Ask the witness at ``witness_url`` to cosign ``note``; returns its signature lines.

    The first request says old size 0; a witness that holds another size answers 409 with it,
    and the request is made again with the consistency proof from that size (``proof_from``).
    """
    url = witness_url.rstrip("/") + "/add-checkpoint"
    size = Checkpoint.parse(note.text).tree_size
    old = 0
    with httpx.Client(timeout=TIMEOUT_S) as client:
        for _ in range(3):
            body = add_checkpoint_body(old, proof_from(old) if 0 < old < size else [], note)
            try:
                response = client.post(url, content=body)
            except httpx.HTTPError as exc:
                raise WitnessError(f"{url}: {type(exc).__name__}: {exc}") from None
            if response.status_code == 409 and response.headers.get("content-type", "").startswith(
                SIZE_CONTENT_TYPE
            ):
                held = response.text.strip()
                if not held.isdigit() or int(held) == old:
                    break
                old = int(held)
                if old > size:
                    raise WitnessError(f"{url}: the witness holds size {old}, beyond {size}")
                continue
            if response.status_code != 200:
                raise WitnessError(f"{url}: HTTP {response.status_code}: {response.text[:200]}")
            lines = response.text.split("\n")
            if lines[-1] != "" or len(lines) < 2:
                raise WitnessError(f"{url}: the answer is not signature lines")
            try:
                return [Signature.parse_line(line) for line in lines[:-1]]
            except NoteError as exc:
                raise WitnessError(f"{url}: {exc}") from None
    raise WitnessError(f"{url}: the witness refused the checkpoint (409 conflict)")
