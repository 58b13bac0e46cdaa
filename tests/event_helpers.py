"""What the tests of the events' additive fields share: their verdict records as stored rows,
and the events of x.com split by scope."""

from __future__ import annotations

from typing import Any

from censorwatch.store.base import MeasurementRow
from censorwatch.times import naive_utc


def stored_rows(records: list[dict[str, Any]]) -> list[MeasurementRow]:
    """The verdict records as the store holds them, with their summary and localization."""
    return [
        MeasurementRow(
            measurement_uid=r["measurement_uid"], report_id=r["report_id"],
            test_name="web_connectivity", probe_cc="PK", probe_asn=r["probe_asn"],
            input=r["input"], domain="x.com", target="x.com",
            measurement_start_time=naive_utc(r["measurement_start_time"]),
            received_at=naive_utc(r["measurement_start_time"]), verdict=r["verdict"],
            method=r["method"], confidence=0.8, confirmed=False, fingerprint=None,
            evidence=[], layers={}, signature="verified", source="collector",
            archive_segment="seg-00000001.jsonl.gz", archive_offset=i,
            workarounds=r.get("workarounds"), locate=r.get("locate"),
        )
        for i, r in enumerate(records)
    ]  # fmt: skip


def by_scope(events: Any) -> tuple[list[Any], dict[str, Any]]:
    """x.com's national events, and its network events by network."""
    national = [e for e in events if e.scope == "national" and e.target == "x.com"]
    network = {e.asns[0]: e for e in events if e.scope == "network" and e.target == "x.com"}
    return national, network
