"""Incremental event detection: feed new verdicts, get the events they open, change and end.

The tracker keeps, per series, the detector's state and the newest measurement it has taken;
``save()`` writes all of it to one JSON file, so the next run continues where this one stopped
instead of recomputing history. Verdicts older than what a series has already taken are
skipped (and counted in ``late``): state is never rewritten backwards.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class Change:
    """Something an alert reports: ``opened``, ``methods_changed``, ``networks_changed``,
    ``ended``."""

    kind: str
    event: Event


def _key_str(key: SeriesKey) -> str:
    return "|".join(key)


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
        if self.state_path and self.state_path.exists():
            self._load(json.loads(self.state_path.read_text()))

    # -- persistence ------------------------------------------------------------------------
    def _load(self, data: dict[str, Any]) -> None:
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"{self.state_path}: unsupported state version {data.get('version')}")
        saved = DetectorParams(**data["params"])
        if saved != self.params:
            raise ValueError(
                f"{self.state_path} was written with other detector parameters; "
                "use a new state file"
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

    def save(self) -> None:
        if self.state_path is None:
            return
        data = {
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
        }
        write_atomic(self.state_path, json.dumps(data, separators=(",", ":")).encode())

    # -- detection --------------------------------------------------------------------------
    def update(self, verdicts: Iterable[dict[str, Any]]) -> list[Change]:
        """Take new verdicts (any order); return what changed since the last update."""
        per_series: dict[SeriesKey, list[Observation]] = defaultdict(list)
        for record in verdicts:
            obs = observation_from_verdict(record)
            if obs is None:
                continue
            for key in series_keys(record, self.platforms):
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
        # All series in time order, so that what a network's series learn from each other
        # (NetworkNoise) is what was known at that time.
        closed.sort(key=lambda item: (item[0], item[1]))
        for _, key, rnd in closed:
            self._feed(self.detectors[key], rnd, self.ended)
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
        ended = list(self.ended)
        ongoing = []
        for key, det in self.detectors.items():
            pending = self.open_rounds.get(key)
            if pending:
                pooled = det.network
                det = SeriesDetector.from_state(key, self.params, det.to_state())
                det.network = NetworkNoise(dict(pooled.flips), dict(pooled.conclusive))
                self._feed(det, Round(list(pending)), ended)
            if det.event is not None:
                ongoing.append(det.event)
        return [*ended, *ongoing]

    def coverage(self) -> Coverage:
        cov: Coverage = defaultdict(list)
        for key, det in self.detectors.items():
            first, last = det.first_seen, det.last_seen
            pending = self.open_rounds.get(key)
            if pending:
                first = first or rfc3339(pending[0].time)
                last = rfc3339(pending[0].time)
            if first and last:
                cov[(key[0], key[2])].append((key[1], first, last))
        return cov

    def events(self) -> list[Event]:
        """Every event so far: national ones first, then per network, each by onset."""
        nets = self.network_events()
        national = national_records(nets, self.coverage(), self.params)
        network = [network_record(e) for e in nets]
        national.sort(key=lambda e: (e.onset.before, e.cc, e.target))
        network.sort(key=lambda e: (e.onset.before, e.cc, e.asns, e.target))
        return [*national, *network]

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
