"""How events nest: a platform's event holds its hosts' events, a national event the network
events it groups.

One national block of X produces dozens of event records (per host and per platform, per
network and national). A reader wants the top of that tree with its contents: the explorer
groups details under their top event, the table folds host events into their platform's row,
an alert for a national event names the networks and hosts inside it, and a subscriber
chooses how deep to be told (``national``, ``network``, ``host``). All of them use
``contains``, so they agree on what is inside what.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from censorwatch.events.platforms import Platform
from censorwatch.model import Event

AlertScope = Literal["national", "network", "host"]
ALERT_SCOPES: tuple[AlertScope, ...] = ("national", "network", "host")


def _overlaps(a: Event, b: Event) -> bool:
    a_end = a.end.before if a.end else "9999"
    b_end = b.end.before if b.end else "9999"
    return a.onset.before <= b_end and b.onset.before <= a_end


def _covers(target: str, host: str, platforms: Iterable[Platform]) -> bool:
    """Whether ``target`` is ``host`` itself or a platform that owns it."""
    return target == host or any(p.name == target and p.owns(host) for p in platforms)


def contains(outer: Event, inner: Event, platforms: Iterable[Platform]) -> bool:
    """Whether ``inner`` is a detail of ``outer``: one of its hosts, or one of its networks
    (same country, overlapping in time, ``inner``'s networks among ``outer``'s)."""
    if outer.event_id == inner.event_id or outer.cc != inner.cc or not _overlaps(outer, inner):
        return False
    if not set(inner.asns) <= set(outer.asns):
        return False
    if outer.scope == inner.scope:
        return outer.target != inner.target and _covers(outer.target, inner.target, platforms)
    return outer.scope == "national" and _covers(outer.target, inner.target, platforms)


def group_events(events: list[Event], platforms: list[Platform]) -> list[tuple[Event, list[Event]]]:
    """Top-level events (in the given order), each with the events that are its details.

    "X blocked in PK on 2 networks" stands for "x.com blocked on AS17557" and the rest, so a
    reader sees each block once and can open its parts.
    """
    tops = [e for e in events if not any(contains(o, e, platforms) for o in events)]
    return [(t, [e for e in events if contains(t, e, platforms)]) for t in tops]


def _held_by_same_scope(event: Event, events: list[Event], platforms: list[Platform]) -> bool:
    """A host's event that its platform's event of the same scope holds."""
    return any(o.scope == event.scope and contains(o, event, platforms) for o in events)


def fold_hosts(events: list[Event], platforms: list[Platform]) -> list[tuple[Event, int]]:
    """The table's rows: a host's event is folded into its platform's event of the same scope
    that holds it. Returns each event shown, in the given order, with the number folded in."""
    shown = [e for e in events if not _held_by_same_scope(e, events, platforms)]
    return [
        (e, sum(1 for h in events if h.scope == e.scope and contains(e, h, platforms)))
        for e in shown
    ]


def contents(event: Event, events: list[Event], platforms: list[Platform]) -> dict[str, Any]:
    """What an event holds, for an alert: its target's network events (methods, onset,
    status) and, for a platform, each host with the networks and methods of its events."""
    inside = [e for e in events if e.scope == "network" and contains(event, e, platforms)]
    if event.scope == "network":
        inside = []
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
    hosts: dict[str, dict[str, set[str]]] = {}
    for e in events:
        if e.target != event.target and contains(event, e, platforms):
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


def in_scope(
    event: Event, events: list[Event], platforms: list[Platform], depth: AlertScope
) -> bool:
    """Whether a subscriber at ``depth`` hears of ``event``; each depth includes the ones
    above it.

    - ``national``: national events that no other event holds (a platform's, not its hosts');
    - ``network``: network events too, a platform's rather than its hosts';
    - ``host``: every event.
    """
    if depth == "host":
        return True
    if event.scope == "national":
        return not any(contains(o, event, platforms) for o in events)
    return depth == "network" and not _held_by_same_scope(event, events, platforms)
