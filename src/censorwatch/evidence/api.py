"""The log's HTTP face: the read-only routes that monitors and auditors use.

``log_router(log)`` returns a FastAPI router; the collector's app includes it. Hashes are
lower-case hex, signatures standard base64 (docs/evidence.md, "Log API").
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import PlainTextResponse

from censorwatch.evidence import merkle
from censorwatch.evidence.log import TransparencyLog
from censorwatch.signing.encoding import b64encode

MAX_UID_LENGTH = 256


def log_router(log: TransparencyLog, prefix: str = "/api/v1/log") -> APIRouter:
    router = APIRouter(prefix=prefix, tags=["log"])

    @router.get("/sth")
    def sth() -> dict[str, Any]:
        """The latest signed tree head, covering every measurement accepted so far."""
        return log.publish_head().to_json()

    @router.get("/checkpoint", response_class=PlainTextResponse)
    def checkpoint() -> PlainTextResponse:
        """The latest tree head as a C2SP checkpoint (signed note), for witnesses."""
        note = log.checkpoint_for(log.publish_head())
        return PlainTextResponse(str(note), media_type="text/plain; charset=utf-8")

    @router.get("/key")
    def key() -> dict[str, Any]:
        """The log's public key; monitors pin it on first contact."""
        return {"alg": "ed25519", "log_id": log.log_id, "public_key": b64encode(log.public_key)}

    @router.get("/proof/inclusion")
    def inclusion(
        measurement_uid: str = Query(..., min_length=1, max_length=MAX_UID_LENGTH),
        tree_size: int | None = Query(None, ge=1),
    ) -> dict[str, Any]:
        """Where the measurement sits, and the audit path to a published head's root."""
        if log.index_of(measurement_uid) is None:
            raise HTTPException(404, f"{measurement_uid} is not in the log")
        try:
            head = log.head_for(tree_size)
            proof = log.inclusion_for(measurement_uid, head)
        except merkle.ProofError as exc:
            raise HTTPException(400, str(exc)) from None
        return {**proof.to_json(), "sth": head.to_json()}

    @router.get("/proof/consistency")
    def consistency(
        first: int = Query(..., ge=0), second: int | None = Query(None, ge=0)
    ) -> dict[str, Any]:
        """The hashes that prove the tree of ``first`` leaves is a prefix of ``second``'s."""
        if second is None:
            second = log.publish_head().tree_size
        try:
            path = log.consistency_proof(first, second)
        except merkle.ProofError as exc:
            raise HTTPException(400, str(exc)) from None
        return {"consistency_path": [h.hex() for h in path], "first": first, "second": second}

    return router
