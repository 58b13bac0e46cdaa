"""Accepting measurements: archive (fsync) -> transparency log (fsync) -> database, in batches.

The commit of a batch is the archive block *and* its log entries: nothing is acknowledged
before both are durable, and a failure in either fails the batch (the caller answers 503).
The archive is the truth, and both the log and the database are derived from it by position:

* the log's position (``ARCHIVE/log-position.json``: the archive position up to which every
  measurement is in the log, with the log's id and size then) is a lower bound written after
  the log's fsync; ``recover`` appends every archived measurement past it, and the log skips
  the UIDs it already holds, so each lands in the log exactly once;
* the database's checkpoint (``Store.checkpoint``) is written after its rows; ``catch_up``
  stores whatever the archive holds past it, skipping the UIDs already stored;
* stored events (``events.stored``, when the pipeline has them) are updated after the rows of
  each commit; their state records the archive position taken, and ``recover`` feeds the rows
  past it again, so a crash before the events were saved loses none.

``recover`` runs before the first commit (and at start-up, and after any failed commit), so a
crash between any two steps is repaired before anything new is accepted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from censorwatch.collector.validate import MAX_ITEMS
from censorwatch.durable import write_atomic
from censorwatch.model import canonical_json, derive_measurement_uid
from censorwatch.observations.budget import count_items
from censorwatch.store.base import ArchiveLocation, MeasurementRow, Store

if TYPE_CHECKING:
    from censorwatch.events.stored import StoredEvents
    from censorwatch.evidence.log import TransparencyLog

log = logging.getLogger(__name__)

#: ``on_accepted(measurement_uid, raw, measurement)``: called once the measurement is durable
#: and logged, before it is acknowledged. ``raw`` is ``canonical_json(measurement)``. Hooks are
#: notifications, not part of the commit: an error is counted and logged, never retried.
AcceptHook = Callable[[str, bytes, dict[str, Any]], None]
#: ``on_accepted_batch(items)``: the same, once per commit with every ``(uid, raw, measurement)``
#: of the block.
BatchAcceptHook = Callable[[list[tuple[str, bytes, dict[str, Any]]]], None]

#: The log's position, kept with the archive.
LOG_POSITION_FILE = "log-position.json"
#: Seconds between writes of the log's position while committing (it is a lower bound: a
#: later one only shortens the replay after a crash).
LOG_POSITION_INTERVAL = 2.0
_REPLAY_BATCH = 2000


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


class _Envelope(msgspec.Struct):
    """An archive line, as ``Pending.envelope`` wrote it."""

    measurement_uid: str
    measurement: dict[str, Any]
    received_at: str
    signature: str = "unverified"
    source: str = "collector"


_decode_envelope = msgspec.json.Decoder(_Envelope).decode


class LogPosition(msgspec.Struct, frozen=True):
    """Every archived measurement before ``archive`` is in the log ``log_id`` (then of
    ``tree_size`` leaves)."""

    log_id: str
    tree_size: int
    archive: ArchiveLocation


@dataclass(frozen=True, slots=True)
class Outcome:
    measurement_uid: str
    stored: bool  # False: the same measurement was already there


@dataclass(frozen=True, slots=True)
class Recovery:
    """What ``Pipeline.recover`` repaired."""

    archive_bytes_dropped: int  # a torn tail cut off the newest segment
    logged: int  # archived measurements appended to the log (a crash before its fsync)
    stored: int  # archived measurements added to the database


class Pipeline:
    """One writer's path from checked measurements to durable, logged, queryable rows."""

    def __init__(
        self,
        archive: Archive,
        store: Store,
        *,
        analyzer: Analyzer | None = None,
        verify_signature: SignatureCheck | None = None,
        metrics: Metrics | None = None,
        log: TransparencyLog | None = None,
        events: StoredEvents | None = None,
    ) -> None:
        from censorwatch.collector.derive import load_analyzer

        self.archive = archive
        self.store = store
        self.log = log
        #: Kept current after every commit when set (the collector's; ``serve`` sets it).
        self.events = events
        self._events_backlog: list[tuple[list[MeasurementRow], ArchiveLocation]] = []
        self.analyzer = analyzer or load_analyzer()
        self.verify_signature = verify_signature or unverified
        self.on_accepted: list[AcceptHook] = []
        self.on_accepted_batch: list[BatchAcceptHook] = []
        self.metrics = metrics or Metrics()
        # False until ``recover`` has run, and again whenever a commit fails past its archive
        # write: the next commit repairs first.
        self._consistent = False
        self._log_position: LogPosition | None = None
        self._log_position_saved = 0.0

    def prepare(
        self, measurement: dict[str, Any], *, source: str = "collector", keep_uid: bool = False
    ) -> Pending:
        """Name, analyse and sign-check a measurement (pure CPU work, any thread)."""
        uid = measurement.get("measurement_uid") if keep_uid else None
        if not isinstance(uid, str) or not uid or len(uid) > 128:
            uid = derive_measurement_uid(measurement)
        measurement = {**measurement, "measurement_uid": uid}
        raw = canonical_json(measurement)  # the log's bytes, and the analysis reads them
        signature = self._signature(measurement)
        verdict = safe_verdict(self.analyzer, measurement, raw)
        pending = Pending(uid, measurement, verdict, signature, source, now_rfc3339())
        # Encode here, on the request's thread, to keep the single writer's share small.
        pending.line = pending.envelope()
        pending.raw = raw
        return pending

    def _signature(self, measurement: dict[str, Any]) -> str:
        try:
            state = self.verify_signature(measurement)
        except Exception:
            log.debug("signature check failed", exc_info=True)
            return "invalid"
        return state if state in ("verified", "unverified", "invalid") else "invalid"

    def row(self, p: Pending, location: ArchiveLocation) -> MeasurementRow:
        """The store's row for a prepared measurement archived at ``location`` (also what a
        reprocessing worker stores)."""
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

    # -- the transparency log ----------------------------------------------------------------
    def _append_to_log(self, items: list[tuple[str, dict[str, Any]]]) -> int:
        """Append durably (one fsync); returns the new leaves. Raises on any storage error."""
        from censorwatch.evidence.log import ConflictingEntryError

        assert self.log is not None
        before = self.log.size
        try:
            self.log.append_many(items)
        except ConflictingEntryError as exc:
            # Everything else was appended; the UID keeps the content logged first, as the
            # database keeps the row stored first.
            self.metrics.log_conflicts.inc()
            log.error("transparency log: %s", exc)
        except Exception:
            self.metrics.log_errors.inc()
            raise
        return self.log.size - before

    @property
    def _log_position_path(self) -> Path:
        return self.archive.directory / LOG_POSITION_FILE

    def log_position(self) -> ArchiveLocation | None:
        """The archive position up to which every measurement is known to be in the log.

        None (replay from the start) unless the saved position is this log's and the log still
        holds the leaves it had then.
        """
        if self.log is None:
            return None
        try:
            saved = msgspec.json.decode(self._log_position_path.read_bytes(), type=LogPosition)
        except FileNotFoundError:
            return None
        except (msgspec.DecodeError, msgspec.ValidationError, OSError):
            log.warning("%s is unreadable; replaying the archive", self._log_position_path)
            return None
        if saved.log_id != self.log.log_id or saved.tree_size > self.log.size:
            log.warning("%s describes another log; replaying the archive", self._log_position_path)
            return None
        return saved.archive

    def _advance_log_position(self, end: ArchiveLocation, *, force: bool = False) -> None:
        if self.log is None:
            return
        self._log_position = LogPosition(self.log.log_id, self.log.size, end)
        if force or time.monotonic() - self._log_position_saved >= LOG_POSITION_INTERVAL:
            self._save_log_position()

    def _save_log_position(self) -> None:
        if self._log_position is None:
            return
        try:
            write_atomic(self._log_position_path, msgspec.json.encode(self._log_position))
        except OSError:  # only a hint: an older position means a longer replay, no more
            log.warning("could not record the log's position", exc_info=True)
            return
        self._log_position_saved = time.monotonic()

    def catch_up_log(self, *, progress: Callable[[int], None] | None = None) -> int:
        """Append to the log every archived measurement past its position; returns the new
        leaves (0 when every one was already logged, as after a clean stop)."""
        if self.log is None:
            return 0
        added = 0
        items: list[tuple[str, dict[str, Any]]] = []
        end: ArchiveLocation | None = None
        for block in self.archive.blocks(since=self.log_position()):
            for line in block.lines:
                env = self.envelope(line, block.location)
                if env is not None:
                    items.append((env.measurement_uid, env.measurement))
            end = ArchiveLocation(block.location.segment, block.end)
            if len(items) >= _REPLAY_BATCH:
                added += self._append_to_log(items)
                if progress is not None:
                    progress(len(items))
                items = []
        if items:
            added += self._append_to_log(items)
        if end is not None:
            self._advance_log_position(end, force=True)
        if added:
            self.metrics.log_replayed.inc(added)
        return added

    # -- committing ----------------------------------------------------------------------------
    def recover(self, *, progress: Callable[[int], None] | None = None) -> Recovery:
        """Make the log and the database whole again from the archive (start-up, after a
        failed commit): cut a torn tail, replay the log, then the database. ``progress`` is
        told of each batch of archived measurements the database replay reads."""
        dropped = self.archive.recover()
        logged = self.catch_up_log()
        stored = self.catch_up(progress=progress)
        self._consistent = True
        if self.events is not None:
            self._catch_up_events()
        return Recovery(dropped, logged, stored)

    def _catch_up_events(self) -> None:
        assert self.events is not None
        try:
            self.events.catch_up()
        except Exception:  # the rows are stored; the next commit catches the events up
            log.exception("could not bring the stored events up to date")

    def feed_events(self) -> None:
        """Feed the rows of the commits made so far to the stored events. A failure leaves the
        rows acknowledged (they are durable) and the events behind: the next commit or start
        catches them up from the events' saved position."""
        backlog, self._events_backlog = self._events_backlog, []
        if self.events is None:
            return
        for rows, end in backlog:
            try:
                self.events.committed(rows, end)
            except Exception:
                self.metrics.hook_errors.inc()
                log.exception("stored events not updated for %d rows; retried later", len(rows))

    def commit(self, items: list[Pending], *, defer_events: bool = False) -> list[Outcome]:
        """Make ``items`` durable, logged and stored; duplicates (in the batch or stored) are
        skipped. Raises if any step fails: then nothing of the batch may be acknowledged.

        The stored events are then updated, or, with ``defer_events``, left for
        ``feed_events`` (the collector's writer acknowledges first: events are derived)."""
        if not items:
            return []
        if not self._consistent:
            self.recover()
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
            self._consistent = False  # until the log and the database hold the block too
            if self.log is not None:
                self._append_to_log([(p.measurement_uid, p.measurement) for p in fresh])
            self._run_hooks((p.measurement_uid, p.raw, p.measurement) for p in fresh)
            rows = [self.row(p, location) for p in fresh]
            self.store.add(rows, checkpoint=end)
            self._consistent = True
            self._advance_log_position(end)
            stored = {p.measurement_uid for p in fresh}
            if self.events is not None:
                self._events_backlog.append((rows, end))
        if not defer_events:
            self.feed_events()
        outcomes = []
        for p in items:
            is_new = p.measurement_uid in stored
            stored.discard(p.measurement_uid)
            outcomes.append(Outcome(p.measurement_uid, is_new))
        return outcomes

    @staticmethod
    def envelope(line: bytes, where: ArchiveLocation) -> _Envelope | None:
        """One archive line's envelope; None, logged, for a line that does not decode."""
        try:
            return _decode_envelope(line)
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.error("archive %s: unreadable record skipped", where)
            return None

    def catch_up(
        self, *, batch_rows: int = _REPLAY_BATCH, progress: Callable[[int], None] | None = None
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
                env = self.envelope(line, block.location)
                if env is None or env.measurement_uid in uids:
                    continue
                p = Pending(
                    env.measurement_uid,
                    env.measurement,
                    {},
                    env.signature,
                    env.source,
                    env.received_at,
                )
                uids.add(p.measurement_uid)
                p.verdict = safe_verdict(self.analyzer, p.measurement)
                rows.append(self.row(p, block.location))
                replayed.append((p.measurement_uid, p.measurement))
            end = ArchiveLocation(block.location.segment, block.end)
            if len(rows) >= batch_rows:
                flush()
        if end is not None:
            flush()
        return added

    def close(self) -> None:
        """Record the log's position and the events' state, and close the archive (the store
        and log stay open)."""
        self._save_log_position()
        if self.events is not None:
            try:
                self.events.flush()
            except Exception:  # only a shorter replay at the next start is lost
                log.exception("could not save the events' state")
        self.archive.close()

    def _archived_line(self, measurement_uid: str) -> bytes | None:
        """The archive line holding ``measurement_uid``, found without decoding any line."""
        location = self.store.location(measurement_uid)
        if location is None:
            return None
        needle = b'"measurement_uid":"' + measurement_uid.encode() + b'"'
        try:
            block = self.archive.read_block(location)
        except TornBlock:
            log.error("archive block %s of %s is unreadable", location, measurement_uid)
            return None
        for line in block:
            if line.endswith(b"}") and needle in line:
                tail = _envelope_tail(line)
                if tail is not None and tail.measurement_uid == measurement_uid:
                    return line
        return None

    def raw_bytes(self, measurement_uid: str) -> bytes | None:
        """The stored measurement as the bytes it was archived as (canonical JSON), cut out of
        its archive line: serving it costs its size, never a decode and re-encode."""
        line = self._archived_line(measurement_uid)
        if line is None:
            return None
        return line[len(_ENVELOPE_HEAD) : line.rfind(_ENVELOPE_TAIL)]

    def raw(
        self, measurement_uid: str, *, max_items: int | None = MAX_ITEMS
    ) -> dict[str, Any] | None:
        """The stored measurement, read back from the archive and decoded.

        Decoding is where a measurement's shape costs memory (a million ``{}`` are 3 MB of
        bytes and ~100 MB of objects), so one of more than ``max_items`` values and keys (the
        collector's own budget; None: no limit) raises ``ValueError`` instead.
        """
        raw = self.raw_bytes(measurement_uid)
        if raw is None:
            return None
        if max_items is not None and count_items(raw, max_items) > max_items:
            raise ValueError(f"{measurement_uid} holds more than {max_items} values and keys")
        return msgspec.json.decode(raw)


#: An archive line is canonical JSON, keys sorted, so it is always
#: ``{"measurement":{...},"measurement_uid":"...","received_at":...}``: the measurement's bytes
#: lie between the head and the *last* ``,"measurement_uid":`` (inside a JSON string a quote is
#: escaped, so that sequence can only be structure; the measurement's own ``measurement_uid``
#: key comes before the envelope's).
_ENVELOPE_HEAD = b'{"measurement":'
_ENVELOPE_TAIL = b',"measurement_uid":'


class _Tail(msgspec.Struct):
    """The envelope's fields after the measurement."""

    measurement_uid: str
    received_at: str


def _envelope_tail(line: bytes) -> _Tail | None:
    """The small fields after the measurement, or None if ``line`` is not an envelope."""
    cut = line.rfind(_ENVELOPE_TAIL)
    if not line.startswith(_ENVELOPE_HEAD) or cut < len(_ENVELOPE_HEAD):
        return None
    try:
        return msgspec.json.decode(b"{" + line[cut + 1 :], type=_Tail)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
