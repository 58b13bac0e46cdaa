"""The web_connectivity analysis, by layer: the names other modules and tests import.

``walk`` follows the hops; ``dns``, ``transport`` (TCP, TLS), ``http`` (and ``page``) and
``throughput`` (and QUIC) judge each layer; ``confidence`` names every confidence;
``outcome`` holds the working verdict and the failure vocabulary.
"""

from __future__ import annotations

from censorwatch.analysis.outcome import Outcome
from censorwatch.analysis.walk import analyze_web
from censorwatch.observations.text import title_of as _title

__all__ = ["Outcome", "_title", "analyze_web"]
