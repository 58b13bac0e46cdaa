"""How events nest: a platform's event holds the host events it explains, a national event the
network events it groups.

One national block of X produces dozens of event records (per host and per platform, per
network and national). A reader wants the top of that tree with its contents: the table folds
host events into their platform's row, an alert for a national event names the networks and
hosts inside it, and a subscriber chooses how deep to be told (``national``, ``network``,
``host``). All three use the rules of this module, so they agree on what is inside what.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from censorwatch.events.platforms import Platform
from censorwatch.model import Event

AlertScope = Literal["national", "network", "host"]
ALERT_SCOPES: tuple[AlertScope, ...] = ("national", "network", "host")


def _covers(outer: Event, inner: Event) -> bool:
    """``inner`` began while ``outer`` was going on."""
    return outer.onset.before <= inner.onset.before and (
        outer.end is None or inner.onset.before <= outer.end.before
    )


def fold_hosts(events: list[Event], platforms: list[Platform]) -> list[tuple[Event, int]]:
    """The events a reader sees first: a host's event is folded into its platform's event
    when the platform has one of the same scope, country and networks that covers the host's
    onset. Returns each event shown, in the given order, with the number folded into it."""
    owners = {p.name: p for p in platforms}
    folded: set[str] = set()
    count: dict[str, int] = {}
    for ev in events:
        platform = owners.get(ev.target)
        if platform is None:
            continue
        hosts = [
            h
            for h in events
            if h.event_id not in folded
            and h.target not in owners
            and platform.owns(h.target)
            and (h.scope, h.cc, h.asns) == (ev.scope, ev.cc, ev.asns)
            and _covers(ev, h)
        ]
        folded.update(h.event_id for h in hosts)
        count[ev.event_id] = len(hosts)
    return [(e, count.get(e.event_id, 0)) for e in events if e.event_id not in folded]


def is_host_level(event: Event, platforms: Iterable[Platform]) -> bool:
    """A host's event whose host belongs to a platform (the platform's event is the headline)."""
    names = {p.name for p in platforms}
    if event.target in names:
        return False
    return any(p.owns(event.target) for p in platforms)


def contents(event: Event, events: list[Event], platforms: list[Platform]) -> dict[str, Any]:
    """What an event holds, for an alert or a feed entry: per network, the network events of
    the same target (methods, onset, status); and per host of a platform, the networks and
    methods of its own events, from the events that ``event`` covers."""
    inside = [
        e
        for e in events
        if e.scope == "network"
        and e.cc == event.cc
        and set(e.asns) <= set(event.asns)
        and (_covers(event, e) or _covers(e, event))
    ]
    networks = [
        {
            "asn": e.asns[0],
            "methods": e.methods,
            "onset": {"after": e.onset.after, "before": e.onset.before},
            "status": e.status,
            "event_id": e.event_id,
        }
        for e in inside
        if e.target == event.target
    ]
    platform = next((p for p in platforms if p.name == event.target), None)
    hosts: dict[str, dict[str, set[str]]] = {}
    if platform is not None:
        for e in inside:
            if e.target != event.target and platform.owns(e.target):
                entry = hosts.setdefault(e.target, {"asns": set(), "methods": set()})
                entry["asns"].update(e.asns)
                entry["methods"].update(e.methods)
    return {
        "networks": sorted(networks, key=lambda n: n["asn"]),
        "hosts": [
            {"host": h, "asns": sorted(v["asns"]), "methods": sorted(v["methods"])}
            for h, v in sorted(hosts.items())
        ],
    }


def in_scope(event: Event, shown: set[str], platforms: list[Platform], depth: AlertScope) -> bool:
    """Whether a subscriber at ``depth`` hears of ``event``; each depth includes the ones
    above it. ``shown`` holds the ids that ``fold_hosts`` keeps.

    - ``national``: national events, a platform's rather than its hosts' where it covers them;
    - ``network``: network events too, folded the same way;
    - ``host``: every event, each host's own included.
    """
    if depth == "host":
        return True
    if event.event_id not in shown:
        return False
    return event.scope == "national" or depth == "network"
