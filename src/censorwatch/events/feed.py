"""Block events as an Atom feed (RFC 4287), for people who follow a country or a platform in a
feed reader rather than through a webhook.

An entry is one event; its ``id`` is the event's own (stable across runs), its ``updated`` the
latest time the event is known to have changed (its end, else its onset), so a reader shows an
ended block again as updated. The entry's text is the alert's sentence.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import urljoin

from censorwatch.events.alerts import summary
from censorwatch.model import Event
from censorwatch.times import canonical_time, rfc3339, utcnow

ATOM_TYPE = "application/atom+xml"
ATOM_NS = "http://www.w3.org/2005/Atom"


def updated_of(event: Event) -> str:
    """When the event last changed, as far as its record tells: its end, else its onset."""
    return event.end.before if event.end else event.onset.before


def _text(parent: ET.Element, tag: str, text: str, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, f"{{{ATOM_NS}}}{tag}", attrs)
    element.text = text
    return element


def atom_feed(events: list[Event], self_url: str, base_url: str) -> bytes:
    """The feed document: ``self_url`` is the feed's own address (with its filters), which is
    also its id; entries link to the explorer's page of each event under ``base_url``."""
    ET.register_namespace("", ATOM_NS)
    feed = ET.Element(f"{{{ATOM_NS}}}feed")
    _text(feed, "id", self_url)
    _text(feed, "title", "censorwatch: block events")
    newest = max((updated_of(e) for e in events), default=None)
    _text(feed, "updated", canonical_time(newest) if newest else rfc3339(utcnow()))
    author = ET.SubElement(feed, f"{{{ATOM_NS}}}author")
    _text(author, "name", "censorwatch")
    ET.SubElement(feed, f"{{{ATOM_NS}}}link", {"rel": "self", "href": self_url})
    for event in events:
        entry = ET.SubElement(feed, f"{{{ATOM_NS}}}entry")
        _text(entry, "id", f"urn:censorwatch:event:{event.event_id}")
        _text(entry, "title", summary(event))
        _text(entry, "updated", canonical_time(updated_of(event)))
        _text(entry, "published", canonical_time(event.onset.before))
        page = urljoin(base_url, f"explorer/events/{event.event_id}")
        ET.SubElement(entry, f"{{{ATOM_NS}}}link", {"rel": "alternate", "href": page})
        for term in (event.scope, event.cc, event.target, *event.asns, *event.methods):
            ET.SubElement(entry, f"{{{ATOM_NS}}}category", {"term": term})
        _text(entry, "content", _content(event), type="text")
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)


def _content(event: Event) -> str:
    lines = [summary(event) + "."]
    lines.append(f"Status: {event.status}; confidence {event.confidence:.2f}.")
    onset = event.onset
    lines.append(f"Onset after {onset.after or '(no earlier data)'}, no later than {onset.before}.")
    if event.end:
        lines.append(f"Ended after {event.end.after}, no later than {event.end.before}.")
    counts = event.measurements
    lines.append(f"{counts.get('blocked', 0)} of {counts.get('total', 0)} measurements blocked.")
    return "\n".join(lines)
