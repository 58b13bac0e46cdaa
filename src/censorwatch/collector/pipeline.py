"""Accepting measurements: archive (fsync) -> ``on_accepted`` hooks -> database, in batches.

The archive is the truth and the database is derived from it: every commit moves a checkpoint
in the same transaction as its rows, and ``catch_up`` replays whatever the archive holds past
the checkpoint (after a crash between fsync and insert, or for ``store rebuild``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import msgspec

from censorwatch.collector.archive import Archive, TornBlock
from censorwatch.collector.derive import (
    Analyzer,
    SignatureCheck,
    build_row,
    now_rfc3339,
    safe_verdict,
    unverified,
)
from censorwatch.collector.metrics import Metrics
from censorwatch.model import canonical_json, derive_measurement_uid
from censorwatch.store.base import ArchiveLocation, MeasurementRow, Store

log = logging.getLogger(__name__)

#: ``on_accepted(measurement_uid, raw, measurement)``: called once the measurement is durable
#: and before it is acknowledged. ``raw`` is ``canonical_json(measurement)``.
AcceptHook = Callable[[str, bytes, dict[str, Any]], None]
#: ``on_accepted_batch(items)``: the same, once per commit with every ``(uid, raw, measurement)``
#: of the block, for hooks that can make a whole batch durable at once (one fsync).
BatchAcceptHook = Callable[[list[tuple[str, bytes, dict[str, Any]]]], None]


@dataclass(slots=True)
class Pending:
    """A checked, scrubbed measurement with its UID and verdict, waiting to be committed."""

    measurement_uid: str
    measurement: dict[str, Any]
    verdict: dict[str, Any]
    signature: str
    source: str
    received_at: str
    line: bytes = b""  # the archive line, encoded ahead of the writer by ``prepare``
    raw: bytes = b""  # canonical_json(measurement), likewise

    def envelope(self) -> bytes:
        return canonical_json(
            {
                "measurement_uid": self.measurement_uid,
                "received_at": self.received_at,
                "source": self.source,
                "signature": self.signature,
                "measurement": self.measurement,
            }
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    measurement_uid: str
    stored: bool  # False: the same measurement was already there


class Pipeline:
    """One writer's path from checked measurements to durable, queryable rows."""

    def __init__(
        self,
        archive: Archive,
        store: Store,
        *,
        analyzer: Analyzer | None = None,
        verify_signature: SignatureCheck | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        from censorwatch.collector.derive import load_analyzer

        self.archive = archive
        self.store = store
        self.analyzer = analyzer or load_analyzer()
        self.verify_signature = verify_signature or unverified
        self.on_accepted: list[AcceptHook] = []
        self.on_accepted_batch: list[BatchAcceptHook] = []
        self.metrics = metrics or Metrics()

    def prepare(
        self, measurement: dict[str, Any], *, source: str = "collector", keep_uid: bool = False
    ) -> Pending:
        """Name, analyse and sign-check a measurement (pure CPU work, any thread)."""
        uid = measurement.get("measurement_uid") if keep_uid else None
        if not isinstance(uid, str) or not uid or len(uid) > 128:
            uid = derive_measurement_uid(measurement)
        measurement = {**measurement, "measurement_uid": uid}
        signature = self._signature(measurement)
        verdict = safe_verdict(self.analyzer, measurement)
        pending = Pending(uid, measurement, verdict, signature, source, now_rfc3339())
        # Encode here, on the request's thread, to keep the single writer's share small.
        pending.line = pending.envelope()
        pending.raw = canonical_json(measurement)
        return pending

    def _signature(self, measurement: dict[str, Any]) -> str:
        try:
            state = self.verify_signature(measurement)
        except Exception:
            log.debug("signature check failed", exc_info=True)
            return "invalid"
        return state if state in ("verified", "unverified", "invalid") else "invalid"

    def _row(self, p: Pending, location: ArchiveLocation) -> MeasurementRow:
        return build_row(
            p.measurement,
            p.verdict,
            measurement_uid=p.measurement_uid,
            received_at=p.received_at,
            signature=p.signature,
            source=p.source,
            location=location,
        )

    def _run_hooks(self, items: Iterable[tuple[str, bytes, dict[str, Any]]]) -> None:
        if not self.on_accepted and not self.on_accepted_batch:
            return
        batch = [(uid, raw or canonical_json(m), m) for uid, raw, m in items]
        for hook in self.on_accepted_batch:
            try:
                hook(batch)
            except Exception:
                self.metrics.hook_errors.inc()
                log.exception("on_accepted_batch hook failed for %d measurements", len(batch))
        for uid, raw, measurement in batch:
            for one in self.on_accepted:
                try:
                    one(uid, raw, measurement)
                except Exception:
                    self.metrics.hook_errors.inc()
                    log.exception("on_accepted hook failed for %s", uid)

    def commit(self, items: list[Pending]) -> list[Outcome]:
        """Make ``items`` durable and stored; duplicates (in the batch or stored) are skipped."""
        if not items:
            return []
        seen: set[str] = set()
        fresh: list[Pending] = []
        for p in items:
            if p.measurement_uid not in seen:
                seen.add(p.measurement_uid)
                fresh.append(p)
        known = self.store.existing([p.measurement_uid for p in fresh])
        fresh = [p for p in fresh if p.measurement_uid not in known]
        stored: set[str] = set()
        if fresh:
            location, end = self.archive.append([p.line or p.envelope() for p in fresh])
            self._run_hooks((p.measurement_uid, p.raw, p.measurement) for p in fresh)
            self.store.add([self._row(p, location) for p in fresh], checkpoint=end)
            stored = {p.measurement_uid for p in fresh}
        outcomes = []
        for p in items:
            is_new = p.measurement_uid in stored
            stored.discard(p.measurement_uid)
            outcomes.append(Outcome(p.measurement_uid, is_new))
        return outcomes

    def catch_up(
        self, *, batch_rows: int = 2000, progress: Callable[[int], None] | None = None
    ) -> int:
        """Store whatever the archive holds past the checkpoint; returns rows added."""
        added = 0
        rows: list[MeasurementRow] = []
        replayed: list[tuple[str, dict[str, Any]]] = []
        uids: set[str] = set()
        end: ArchiveLocation | None = None

        def flush() -> None:
            nonlocal added, rows, replayed, uids
            known = self.store.existing([r.measurement_uid for r in rows])
            new = set(self.store.add([r for r in rows if r.measurement_uid not in known], end))
            self._run_hooks((u, b"", m) for u, m in replayed if u in new)
            added += len(new)
            if progress is not None:
                progress(len(rows))
            rows, replayed, uids = [], [], set()

        for block in self.archive.blocks(since=self.store.checkpoint()):
            for line in block.lines:
                try:
                    env = msgspec.json.decode(line)
                    p = Pending(
                        env["measurement_uid"],
                        env["measurement"],
                        {},
                        env.get("signature", "unverified"),
                        env.get("source", "collector"),
                        env["received_at"],
                    )
                except (msgspec.DecodeError, KeyError, TypeError):
                    log.error("archive %s: unreadable record skipped", block.location)
                    continue
                if p.measurement_uid in uids:
                    continue
                uids.add(p.measurement_uid)
                p.verdict = safe_verdict(self.analyzer, p.measurement)
                rows.append(self._row(p, block.location))
                replayed.append((p.measurement_uid, p.measurement))
            end = ArchiveLocation(block.location.segment, block.end)
            if len(rows) >= batch_rows:
                flush()
        if end is not None:
            flush()
        return added

    def raw(self, measurement_uid: str) -> dict[str, Any] | None:
        """The stored measurement, read back from the archive."""
        location = self.store.location(measurement_uid)
        if location is None:
            return None
        needle = measurement_uid.encode()
        try:
            block = self.archive.read_block(location)
        except TornBlock:
            log.error("archive block %s of %s is unreadable", location, measurement_uid)
            return None
        for line in block:
            if needle in line:
                env = msgspec.json.decode(line)
                if env.get("measurement_uid") == measurement_uid:
                    return env["measurement"]
        return None
