"""Incremental event detection: feed new verdicts, get the events they open, change and end.

The tracker keeps, per series, the detector's state and the newest measurement it has taken;
``save()`` writes all of it to one JSON file (or ``to_bytes`` to a blob a store keeps, see
``events.stored``), so the next run continues where this one stopped instead of recomputing
history. Verdicts older than what a series has already taken are skipped (and counted in
``late``): state is never rewritten backwards.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import zlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import msgspec

from censorwatch.durable import write_atomic
from censorwatch.events.detector import (
    DetectorParams,
    NetworkEvent,
    NetworkNoise,
    SeriesDetector,
    obs_from_state,
    obs_state,
)
from censorwatch.events.platforms import Platform, load_platforms
from censorwatch.events.records import Coverage, national_records, network_record
from censorwatch.events.series import (
    Observation,
    Round,
    SeriesKey,
    observation_from_verdict,
    series_keys,
    split_rounds,
)
from censorwatch.model import Event
from censorwatch.times import parse_time, rfc3339, rfc3339_micro

STATE_VERSION = 1
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True)
class Change:
    """Something an alert reports: ``opened``, ``methods_changed``, ``networks_changed``,
    ``ended``."""

    kind: str
    event: Event


def _key_str(key: SeriesKey) -> str:
    return "|".join(key)


#: Distinct (cc, asn, target, input) whose series keys ``update`` remembers before starting over.
_KEYS_MEMO_SIZE = 1_000_000
_IMMUTABLE = (str, int, float, bool, type(None), Observation, DetectorParams)


def _copied(value: Any) -> Any:
    """A copy that shares what cannot change (observations are frozen) and copies the rest."""
    if isinstance(value, _IMMUTABLE):
        return value
    if isinstance(value, tuple) and all(isinstance(v, _IMMUTABLE) for v in value):
        return value
    if isinstance(value, list):
        return [_copied(v) for v in value]
    if isinstance(value, dict):
        return {k: _copied(v) for k, v in value.items()}
    if isinstance(value, set):
        return {_copied(v) for v in value}
    if isinstance(value, Round):
        return dataclasses.replace(value, observations=list(value.observations))
    return copy.deepcopy(value)


def _twin(det: SeriesDetector, network: NetworkNoise) -> SeriesDetector:
    """A detector to try a round on without touching ``det``: the same state, its own copy of
    everything a round may change (cheaper than a round trip through its saved state)."""
    twin = object.__new__(type(det))
    for name, value in vars(det).items():
        setattr(twin, name, network if name == "network" else _copied(value))
    return twin


class EventTracker:
    def __init__(
        self,
        *,
        platforms: list[Platform] | None = None,
        params: DetectorParams | None = None,
        state_path: str | Path | None = None,
    ) -> None:
        self.platforms = load_platforms() if platforms is None else platforms
        self.params = params or DetectorParams()
        self.state_path = Path(state_path) if state_path else None
        self.detectors: dict[SeriesKey, SeriesDetector] = {}
        self.noise: dict[tuple[str, str], NetworkNoise] = {}
        self.horizon: dict[SeriesKey, tuple[str, list[str]]] = {}
        self.ended: list[NetworkEvent] = []
        self.open_rounds: dict[SeriesKey, list[Observation]] = {}
        self.published: dict[str, dict[str, Any]] = {}
        self.late = 0
        #: Free-form facts a caller keeps with the state (``events.stored``: the archive
        #: position taken so far).
        self.meta: dict[str, Any] = {}
        # Each series' ongoing event as it stands (its open round counted), recomputed only
        # for the networks an update touched: a network's series share its stray record.
        self._ongoing: dict[SeriesKey, NetworkEvent | None] = {}
        self._stale_networks: set[tuple[str, str]] | None = None  # None: every network
        self._keys_memo: dict[tuple[Any, ...], list[SeriesKey]] = {}
        # ``to_bytes``' encoded parts per series, dropped when an update touches the series.
        self._encoded: dict[SeriesKey, tuple[bytes, bytes, bytes]] = {}
        self._ended_encoded: list[bytes] = []
        self._spans: dict[SeriesKey, tuple[str, str] | None] = {}  # coverage, per series
        self._events: list[Event] | None = None  # events() since the last update
        if self.state_path and self.state_path.exists():
            self._load(json.loads(self.state_path.read_text()), str(self.state_path))

    # -- persistence ------------------------------------------------------------------------
    def _load(self, data: dict[str, Any], where: str) -> None:
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"{where}: unsupported state version {data.get('version')}")
        saved = DetectorParams(**data["params"])
        if saved != self.params:
            raise ValueError(
                f"{where} was written with other detector parameters; use a new state file"
            )
        for key_s, det_state in data["series"].items():
            key = tuple(key_s.split("|"))
            self.detectors[key] = det = SeriesDetector.from_state(key, self.params, det_state)
            det.network = self._noise(key)
        for net, counts in data["noise"].items():
            noise = self.noise.setdefault(tuple(net.split("|")), NetworkNoise())
            noise.flips, noise.conclusive = counts["flips"], counts["conclusive"]
        self.horizon = {tuple(k.split("|")): (t, u) for k, (t, u) in data["horizon"].items()}
        self.ended = [NetworkEvent.from_state(e) for e in data["ended"]]
        self.open_rounds = {
            tuple(k.split("|")): [o for o in map(obs_from_state, v) if o is not None]
            for k, v in data["open_rounds"].items()
        }
        self.published = data["published"]
        self.meta = data.get("meta", {})
        # The loaded parts are what ``to_bytes`` would write for series no update touches.
        for key_s, det_state in data["series"].items():
            key = tuple(key_s.split("|"))
            name = _encode(key_s) + b":"
            horizon, pending = data["horizon"].get(key_s), data["open_rounds"].get(key_s)
            self._encoded[key] = (
                name + _encode(det_state),
                name + _encode(horizon) if horizon is not None else b"",
                name + _encode(pending) if pending is not None else b"",
            )

    def state(self) -> dict[str, Any]:
        """Everything the next run needs, as JSON-ready data."""
        return {
            "version": STATE_VERSION,
            "params": asdict(self.params),
            "series": {_key_str(k): d.to_state() for k, d in self.detectors.items()},
            "noise": {"|".join(k): asdict(v) for k, v in self.noise.items()},
            "horizon": {_key_str(k): list(v) for k, v in self.horizon.items()},
            "ended": [e.to_state() for e in self.ended],
            "open_rounds": {
                _key_str(k): [obs_state(o) for o in v] for k, v in self.open_rounds.items()
            },
            "published": self.published,
            "meta": self.meta,
        }

    def save(self) -> None:
        if self.state_path is None:
            return
        write_atomic(self.state_path, json.dumps(self.state(), separators=(",", ":")).encode())

    def to_bytes(self) -> bytes:
        """The state as one compressed blob (the JSON of ``state()``, zlib): what
        ``Store.save_event_state`` keeps. A series' part is encoded again only when an update
        touched it, and level 1 compression, so that frequent saves stay cheap."""
        parts: dict[str, list[bytes]] = {"series": [], "horizon": [], "open_rounds": []}
        for key, det in self.detectors.items():
            encoded = self._encoded.get(key)
            if encoded is None:
                name = _encode(_key_str(key))
                encoded = self._encoded[key] = (
                    name + b":" + _encode(det.to_state()),
                    name + b":" + _encode(list(self.horizon[key])) if key in self.horizon else b"",
                    name + b":" + _encode([obs_state(o) for o in self.open_rounds[key]])
                    if key in self.open_rounds
                    else b"",
                )
            for field_name, part in zip(parts, encoded, strict=True):
                if part:
                    parts[field_name].append(part)
        for event in self.ended[len(self._ended_encoded) :]:  # ended events are only appended
            self._ended_encoded.append(_encode(event.to_state()))
        rest = {
            "version": STATE_VERSION,
            "params": asdict(self.params),
            "noise": {"|".join(k): asdict(v) for k, v in self.noise.items()},
            "published": self.published,
            "meta": self.meta,
        }
        body = b",".join(
            [_encode(rest)[1:-1]]
            + [_encode(f) + b":{" + b",".join(p) + b"}" for f, p in parts.items()]
            + [b'"ended":[' + b",".join(self._ended_encoded) + b"]"]
        )
        return zlib.compress(b"{" + body + b"}", 1)

    @classmethod
    def from_bytes(
        cls,
        blob: bytes,
        *,
        platforms: list[Platform] | None = None,
        params: DetectorParams | None = None,
        where: str = "stored event state",
    ) -> EventTracker:
        """A tracker continuing from ``to_bytes``' blob (``ValueError`` if unreadable or
        written with other detector parameters)."""
        try:
            data = json.loads(zlib.decompress(blob))
        except (zlib.error, ValueError) as exc:
            raise ValueError(f"{where} is unreadable: {exc}") from None
        tracker = cls(platforms=platforms, params=params)
        tracker._load(data, where)
        return tracker

    # -- detection --------------------------------------------------------------------------
    def update(self, verdicts: Iterable[dict[str, Any]], *, diff: bool = True) -> list[Change]:
        """Take new verdicts (any order); return what changed since the last update.

        ``diff=False`` skips working out the changes (each is a pass over every event): for
        feeding history in chunks, with ``changes()`` once at the end."""
        self._events = None
        per_series: dict[SeriesKey, list[Observation]] = defaultdict(list)
        keys_of = self._keys_memo
        if len(keys_of) > _KEYS_MEMO_SIZE:
            keys_of.clear()
        for record in verdicts:
            obs = observation_from_verdict(record)
            if obs is None:
                continue
            # A verdict's series depend only on these four fields; many verdicts share them.
            where = (
                record.get("probe_cc"),
                record.get("probe_asn"),
                record.get("target"),
                record.get("input"),
            )
            keys = keys_of.get(where)
            if keys is None:
                keys = keys_of[where] = series_keys(record, self.platforms)
            for key in keys:
                per_series[key].append(obs)
        closed: list[tuple[Any, SeriesKey, Round]] = []
        for key, observations in per_series.items():
            observations.sort(key=lambda o: (o.time, o.uid))
            fresh = self._after_horizon(key, observations)
            if not fresh:
                continue
            if key not in self.detectors:
                det = self.detectors[key] = SeriesDetector(key, self.params)
                det.network = self._noise(key)
            rounds = list(
                split_rounds(self.open_rounds.pop(key, []) + fresh, self.params.max_round_span)
            )
            # The last round may still be incomplete: keep it open until the next one starts.
            closed.extend((r.start, key, r) for r in rounds[:-1])
            self.open_rounds[key] = rounds[-1].observations
            newest = fresh[-1].time
            self.horizon[key] = (rfc3339_micro(newest), [o.uid for o in fresh if o.time == newest])
            if self._stale_networks is not None:
                self._stale_networks.add((key[0], key[1]))
            self._encoded.pop(key, None)
            self._spans.pop(key, None)
        # All series in time order, so that what a network's series learn from each other
        # (NetworkNoise) is what was known at that time.
        closed.sort(key=lambda item: (item[0], item[1]))
        for _, key, rnd in closed:
            self._feed(self.detectors[key], rnd, self.ended)
        return self._diff() if diff else []

    def changes(self) -> list[Change]:
        """What changed since the changes were last worked out (see ``update``)."""
        return self._diff()

    def _after_horizon(self, key: SeriesKey, observations: list[Observation]):
        seen = self.horizon.get(key)
        if seen is None:
            return observations
        limit, uids = parse_time(seen[0]), set(seen[1])
        fresh = [
            o for o in observations if o.time > limit or (o.time == limit and o.uid not in uids)
        ]
        self.late += sum(1 for o in observations if o.time < limit)
        return fresh

    def _noise(self, key: SeriesKey) -> NetworkNoise:
        return self.noise.setdefault((key[0], key[1]), NetworkNoise())

    @staticmethod
    def _feed(det: SeriesDetector, rnd: Round, ended: list[NetworkEvent]) -> None:
        switched = det.feed(rnd)
        if switched is not None and switched.ended:
            ended.append(switched)

    def network_events(self) -> list[NetworkEvent]:
        """Ended and ongoing network events, counting the rounds still open as they stand."""
        stale = self._stale_networks
        for key, det in self.detectors.items():
            if stale is None or (key[0], key[1]) in stale:
                self._ongoing[key] = self._as_it_stands(key, det)
        self._stale_networks = set()
        ongoing = [ev for key in self.detectors if (ev := self._ongoing[key]) is not None]
        return [*self.ended, *ongoing]

    def _as_it_stands(self, key: SeriesKey, det: SeriesDetector) -> NetworkEvent | None:
        """The series' event if its open round closed now (on a copy: state is untouched).
        A block the open round ends is already in ``ended`` once that round closes; until
        then it is reported here, ended."""
        pending = self.open_rounds.get(key)
        if not pending:
            return det.event
        pooled = det.network
        det = _twin(det, NetworkNoise(dict(pooled.flips), dict(pooled.conclusive)))
        switched = det.feed(Round(list(pending)))
        if switched is not None and switched.ended:
            return switched
        return det.event

    def coverage(self) -> Coverage:
        cov: Coverage = defaultdict(list)
        for key, det in self.detectors.items():
            if key not in self._spans:
                self._spans[key] = self._span(key, det)
            span = self._spans[key]
            if span is not None:
                cov[(key[0], key[2])].append((key[1], *span))
        return cov

    def _span(self, key: SeriesKey, det: SeriesDetector) -> tuple[str, str] | None:
        """When a series was first and last measured (its open round counted)."""
        first, last = det.first_seen, det.last_seen
        pending = self.open_rounds.get(key)
        if pending:
            first = first or rfc3339(pending[0].time)
            last = rfc3339(pending[0].time)
        return (first, last) if first and last else None

    def events(self) -> list[Event]:
        """Every event so far: national ones first, then per network, each by onset."""
        if self._events is None:
            nets = self.network_events()
            national = national_records(nets, self.coverage(), self.params)
            network = [network_record(e) for e in nets]
            national.sort(key=lambda e: (e.onset.before, e.cc, e.target))
            network.sort(key=lambda e: (e.onset.before, e.cc, e.asns, e.target))
            self._events = [*national, *network]
        return list(self._events)  # worked out once per update

    def _diff(self) -> list[Change]:
        changes: list[Change] = []
        for ev in self.events():
            now = {"methods": sorted(ev.methods), "asns": ev.asns, "status": ev.status}
            before = self.published.get(ev.event_id)
            if before is None:
                changes.append(Change("opened", ev))
            else:
                if before["methods"] != now["methods"] and ev.status == "ongoing":
                    changes.append(Change("methods_changed", ev))
                if before["asns"] != now["asns"]:
                    changes.append(Change("networks_changed", ev))
            if ev.status == "ended" and (before is None or before["status"] != "ended"):
                changes.append(Change("ended", ev))
            self.published[ev.event_id] = now
        return changes


def detect_events(
    verdicts: Iterable[dict[str, Any]],
    *,
    platforms: list[Platform] | None = None,
    params: DetectorParams | None = None,
) -> list[Event]:
    """All events in a set of verdict records (national first, then per network)."""
    tracker = EventTracker(platforms=platforms, params=params)
    tracker.update(verdicts)
    return tracker.events()
