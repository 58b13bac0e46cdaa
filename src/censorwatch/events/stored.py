"""Events kept in the store, current as rows are committed, so that reads never re-detect.

``StoredEvents`` owns one ``EventTracker`` whose state lives in the store
(``Store.load_event_state``). After each commit it feeds the committed rows' verdicts, then
saves what changed: first the events (``Store.save_events``: new versions of changed events,
tombstones for ids that went away), then the state with the archive position it has taken.
The state is the lower bound, like the store's checkpoint: after a crash anywhere between the
rows and the state, ``catch_up`` feeds every row from that position again (the tracker skips
what it had already taken) and saves again, so no event is lost or left stale.

The state is the larger write (every series' recent rounds), so a busy writer saves it at most
every ``state_interval`` seconds; events are saved on every commit. Only one process may write
a store's events at a time (the collector, ``events rebuild`` or an ingest).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import msgspec

from censorwatch.events.detector import DetectorParams
from censorwatch.events.platforms import Platform
from censorwatch.events.tracker import Change, EventTracker
from censorwatch.model import Event
from censorwatch.store.base import ArchiveLocation, MeasurementRow, Store

log = logging.getLogger(__name__)

#: What a reader is told when a store has verdicts but no stored events.
REBUILD_HINT = "events were never built for this store: run `censorwatch events rebuild --db URL`"
#: Verdicts fed to the tracker per ``update``: each update ends with a diff of every event,
#: so feeding history in large chunks keeps that cost rare while memory stays bounded.
CHUNK = 200_000
#: Seconds between state saves while commits keep coming (events are saved every commit).
STATE_INTERVAL = 30.0

_encode = msgspec.json.Encoder().encode


class EventsNotBuilt(RuntimeError):
    """The store has verdicts but no stored events (``REBUILD_HINT``)."""


def _position(meta: dict[str, Any]) -> ArchiveLocation | None:
    taken = meta.get("archive_position")
    if not isinstance(taken, list) or len(taken) != 2:
        return None
    return ArchiveLocation(str(taken[0]), int(taken[1]))


def _chunks(records: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for record in records:
        chunk.append(record)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class StoredEvents:
    """The one writer of a store's events: feed committed rows, save events and state."""

    def __init__(
        self,
        store: Store,
        tracker: EventTracker,
        *,
        state_interval: float = STATE_INTERVAL,
    ) -> None:
        self.store = store
        self.tracker = tracker
        self.state_interval = state_interval
        # What the store holds now, by id: a save writes only what differs from it.
        self._saved: dict[str, bytes] = {e.event_id: _encode(e) for e in store.stored_events()}
        self._state_saved_at = 0.0
        self._state_behind = False
        self._dirty = False  # a save failed: catch up from the stored position first
        # Told each feed's changes and the events after it, before they are saved (the
        # collector's alerts: events.alerts.Alerting). ``rebuild`` tells nobody.
        self.on_changes: Callable[[list[Change], list[Event]], None] | None = None

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        store: Store,
        *,
        platforms: list[Platform] | None = None,
        params: DetectorParams | None = None,
        state_interval: float = STATE_INTERVAL,
    ) -> StoredEvents:
        """The writer continuing from the store's saved state; a store that holds no rows yet
        starts from nothing. ``EventsNotBuilt`` for a store with rows but no state (only
        ``rebuild`` may read all of history)."""
        blob = store.load_event_state()
        if blob is None:
            if store.count():
                raise EventsNotBuilt(REBUILD_HINT)
            tracker = EventTracker(platforms=platforms, params=params)
        else:
            tracker = EventTracker.from_bytes(blob, platforms=platforms, params=params)
        return cls(store, tracker, state_interval=state_interval)

    @classmethod
    def rebuild(
        cls,
        store: Store,
        *,
        platforms: list[Platform] | None = None,
        params: DetectorParams | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> StoredEvents:
        """Detect over every stored row from the start, replacing whatever events were stored
        (those no longer found get tombstones); ``progress`` is told of each chunk fed."""
        writer = cls(store, EventTracker(platforms=platforms, params=params))
        writer.catch_up(progress=progress)
        return writer

    # -- feeding -------------------------------------------------------------------------------
    @property
    def position(self) -> ArchiveLocation | None:
        """The archive position up to which every stored row has been fed."""
        return _position(self.tracker.meta)

    def catch_up(self, *, progress: Callable[[int], None] | None = None) -> list[Change]:
        """Feed every row at or past the saved position (all rows when there is none), in
        archive order, then save events and state."""
        since = self.position
        rows: Iterator[MeasurementRow] = (
            self.store.scan_from(since) if since is not None else self._all_rows()
        )
        end: ArchiveLocation | None = None

        def records() -> Iterator[dict[str, Any]]:
            nonlocal end
            for row in rows:  # in archive order: the last one read is the furthest
                end = row.location
                yield row.verdict_record()

        for chunk in _chunks(records(), CHUNK):
            self.tracker.update(chunk, diff=False)
            if progress is not None:
                progress(len(chunk))
        changes = self.tracker.changes()
        self._tell(changes)
        if end is not None:
            # ``scan_from`` is inclusive: re-reading the last block next time costs a block.
            self.tracker.meta["archive_position"] = [end.segment, end.offset]
        self._save(force=True)
        self._dirty = False
        return changes

    def _all_rows(self) -> Iterator[MeasurementRow]:
        return self.store.scan_from(ArchiveLocation("", 0))

    def committed(self, rows: list[MeasurementRow], end: ArchiveLocation) -> list[Change]:
        """Rows just stored (one commit, up to archive position ``end``): feed and save."""
        if self._dirty:
            return self.catch_up()
        try:
            changes = self.tracker.update(r.verdict_record() for r in rows)
            self._tell(changes)
            self.tracker.meta["archive_position"] = [end.segment, end.offset]
            self._state_behind = True
            self._save()
        except Exception:
            self._dirty = True
            raise
        return changes

    def _tell(self, changes: list[Change]) -> None:
        if changes and self.on_changes is not None:
            self.on_changes(changes, self.tracker.events())

    def _save(self, *, force: bool = False) -> None:
        current = self.tracker.events()
        encoded = {e.event_id: _encode(e) for e in current}
        changed = [e for e in current if self._saved.get(e.event_id) != encoded[e.event_id]]
        removed = [i for i in self._saved if i not in encoded]
        if changed or removed:
            self.store.save_events(changed, removed)
            self._saved = encoded
        now = time.monotonic()
        if force or (self._state_behind and now - self._state_saved_at >= self.state_interval):
            self.flush()

    def flush(self) -> None:
        """Save the state now (at a clean stop; ``committed`` saves it every interval)."""
        self.store.save_event_state(self.tracker.to_bytes())
        self._state_saved_at = time.monotonic()
        self._state_behind = False

    def events(self) -> list[Event]:
        return self.tracker.events()
