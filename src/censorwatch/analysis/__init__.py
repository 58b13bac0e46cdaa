"""Measurement -> observations -> verdict: ok, blocked (and how), down, or unknown.

Public surface (other stages build on it):

* ``analyze(measurement, *, fingerprints=None, plan=None) -> censorwatch.model.Verdict``
* ``Fingerprints`` (``.load(dir)``, ``.default()``, ``.match_http``, ``.match_dns``)
* ``reader.iter_measurements(paths)`` and ``render.verdict_table(verdicts)``

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
