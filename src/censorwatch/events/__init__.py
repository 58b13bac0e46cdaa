"""Events: verdict series per (country, network, target) → block events with bracketed onset
and end, grouped into national events, with alerts.

``detect_events(verdicts)`` for a one-off answer; ``EventTracker`` to run incrementally.
"""

from censorwatch.events.detector import DetectorParams
from censorwatch.events.platforms import Platform, load_platforms
from censorwatch.events.tracker import Change, EventTracker, detect_events

__all__ = [
    "Change",
    "DetectorParams",
    "EventTracker",
    "Platform",
    "detect_events",
    "load_platforms",
]
