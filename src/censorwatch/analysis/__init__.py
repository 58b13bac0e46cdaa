"""Measurement -> observations -> verdict: ok, blocked (and how), down, or unknown.

Public surface (other stages build on it):

* ``core.analyze_json(raw_bytes, ...)``, ``core.analyze_raw`` and ``core.analyze_files(paths,
  ...)``: the one road, bytes -> typed decode -> observations -> verdict
* ``analyze(measurement, *, fingerprints=None, plan=None) -> censorwatch.model.Verdict``: the
  same verdict for a caller that holds only a dict
* ``Fingerprints`` (``.load(dir)``, ``.default()``, ``.match_http``, ``.match_dns``)
* ``render.verdict_table(verdicts)``

The rules live by layer (``walk``, ``dns``, ``transport``, ``http``, ``page``, ``throughput``),
their confidences in ``confidence``.

Attributes load on first use, so that ``censorwatch --help`` does not pay for the matcher.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from censorwatch.analysis.core import analyze, analyze_many
    from censorwatch.analysis.fingerprints import Fingerprints

__all__ = ["Fingerprints", "analyze", "analyze_many"]


def __getattr__(name: str) -> Any:
    if name in ("analyze", "analyze_many"):
        from censorwatch.analysis import core

        return getattr(core, name)
    if name == "Fingerprints":
        from censorwatch.analysis.fingerprints import Fingerprints

        return Fingerprints
    raise AttributeError(f"module 'censorwatch.analysis' has no attribute {name!r}")
