"""A stored verdict in the words OONI's clients read: the anomaly, confirmed and failure flags,
the ``scores`` object and the integer network of ``measurement_meta``.

One place maps our verdicts onto OONI's flags, so the measurements list, the measurement's
metadata and the aggregation's counts agree: ``anomaly`` is verdict ``blocked``, ``confirmed``
the store's confirmation (a fingerprint matched), ``failure`` verdict ``unknown``. A site that
is ``down`` (from the control too) is none of them, as OONI's fastpath leaves a website that is
down neither anomalous nor failed.
"""

from __future__ import annotations

from typing import Any

from censorwatch.store.base import MeasurementRow

#: OONI's localities of a blocking score; only ``general`` is ever set here (the analysis
#: judges one measurement, not how widely a block reaches).
_LOCALITIES = ("general", "global", "country", "isp", "local")


def anomaly(row: MeasurementRow) -> bool:
    return row.verdict == "blocked"


def failure(row: MeasurementRow) -> bool:
    return row.verdict == "unknown"


def scores(row: MeasurementRow) -> dict[str, Any]:
    """OONI's ``scores`` keys, filled from the verdict: ``blocking_general`` is 1.0 for a
    block, ``analysis.blocking_type`` is the method, ``confirmed`` is set for a confirmed
    block and ``accuracy`` 0.0 for an unknown verdict (fastpath's mark of a failed one)."""
    out: dict[str, Any] = {f"blocking_{place}": 0.0 for place in _LOCALITIES}
    if anomaly(row):
        out["blocking_general"] = 1.0
    if row.method:
        out["analysis"] = {"blocking_type": row.method}
    if row.confirmed:
        out["confirmed"] = True
    if failure(row):
        out["accuracy"] = 0.0
    return out


def asn_number(asn: str) -> int | None:
    """``AS9541`` → 9541 (OONI's ``measurement_meta`` answers the network as an integer)."""
    digits = asn[2:] if asn[:2].upper() == "AS" else asn
    return int(digits) if digits.isdigit() else None
