"""The one filter parser: the API, the explorer, ``export`` and ``evidence export`` read user
filters alike and refuse a bad value with the same message."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import HTTPException
from typer.testing import CliRunner

from censorwatch.api.params import filters as api_filters
from censorwatch.cli import app
from censorwatch.store.base import Filters
from censorwatch.store.filters import (
    FilterError,
    measurement_matches,
    option_names,
    parse_filters,
)
from censorwatch.web.routes import _form_filters

API_DEFAULTS: dict[str, Any] = {
    "report_id": None, "probe_cc": None, "probe_asn": None, "input": None, "domain": None,
    "test_name": None, "since": None, "until": None, "verdict": None, "method": None,
    "confirmed": None,
}  # fmt: skip


def from_api(**values: Any) -> Filters:
    return api_filters(**{**API_DEFAULTS, **values})


def from_web(**values: str) -> tuple[Filters, str | None]:
    return _form_filters(values)


def test_values_are_read_one_way() -> None:
    f = parse_filters(
        {
            "probe_cc": " pk ",
            "probe_asn": "as09541",
            "domain": "X.com.",
            "since": "2024-02-17",
            "until": "2024-02-18T05:00:00+05:00",
            "verdict": "blocked",
            "method": "",
            "confirmed": "true",
            "input": "https://x.com/ ",
            "unknown": "ignored",
        }
    )
    assert f == Filters(
        probe_cc="PK",
        probe_asn="AS9541",
        domain="x.com",
        since=datetime(2024, 2, 17),
        until=datetime(2024, 2, 18),
        verdict="blocked",
        confirmed=True,
        input="https://x.com/ ",  # an exact match: kept as written
    )
    assert parse_filters({}).is_empty()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("since", "last tuesday", "since must be YYYY-MM-DD or an RFC 3339 time"),
        ("until", "2024-02-30", "until must be YYYY-MM-DD or an RFC 3339 time"),
        ("probe_asn", "ASX", "probe_asn must look like AS1234"),
        ("probe_asn", "AS12345678901", "probe_asn must look like AS1234"),
        ("probe_cc", "PAK", "probe_cc must be a two-letter country code"),
        ("verdict", "maybe", "verdict must be one of ok, blocked, down, unknown"),
        ("confirmed", "perhaps", "confirmed must be true or false"),
        ("domain", "x" * 300, "domain must be a host name of at most 255 characters"),
    ],
)
def test_bad_values_are_named_errors(field: str, value: str, message: str) -> None:
    with pytest.raises(FilterError) as caught:
        parse_filters({field: value})
    assert str(caught.value) == message
    with pytest.raises(FilterError) as cli:
        parse_filters({field: value}, option_names({"probe_cc": "--cc"}))
    expected_name = "--cc" if field == "probe_cc" else "--" + field.replace("_", "-")
    assert str(cli.value) == message.replace(field, expected_name, 1)


def test_the_api_and_the_explorer_read_the_same_filters() -> None:
    values = {"probe_asn": "9541", "domain": "X.com", "since": "2024-02-17",
              "until": "2024-02-18T00:00:00Z", "method": "http.reset"}  # fmt: skip
    web, error = from_web(**values)
    assert error is None and web == from_api(**values)
    assert web.probe_asn == "AS9541" and web.until == datetime(2024, 2, 18)


@pytest.mark.parametrize(
    ("field", "value"),
    [("since", "last tuesday"), ("probe_asn", "ASX"), ("until", "2024-W07")],
)
def test_the_api_and_the_explorer_refuse_alike(field: str, value: str) -> None:
    with pytest.raises(HTTPException) as api:
        from_api(**{field: value})
    web, error = from_web(**{field: value})
    assert api.value.status_code == 400
    assert error == api.value.detail and web == Filters()


def test_both_exports_refuse_alike(tmp_path: Path) -> None:
    runner = CliRunner()
    db = tmp_path / "db.duckdb"
    db.write_bytes(b"")  # exists: the filters are read before the store is opened
    store = runner.invoke(app, ["export", str(tmp_path / "o.csv"), "--db", str(db),
                                "--since", "last tuesday"])  # fmt: skip
    assert store.exit_code == 2
    assert "--since must be YYYY-MM-DD or an RFC 3339 time" in store.output
    folder = tmp_path / "m"
    folder.mkdir()
    bundle = ["evidence", "export", "--out", str(tmp_path / "b.zip"), "--measurements", str(folder)]
    evidence = runner.invoke(app, [*bundle, "--since", "last tuesday"])
    assert evidence.exit_code == 2
    assert "--since must be YYYY-MM-DD or an RFC 3339 time" in evidence.output
    bad_asn = runner.invoke(app, [*bundle, "--asn", "ASX"])
    assert bad_asn.exit_code == 2 and "--asn must look like AS1234" in bad_asn.output


def test_raw_measurements_are_matched_as_the_store_matches_rows() -> None:
    m = json.loads(
        json.dumps(
            {
                "report_id": "r1",
                "probe_cc": "PK",
                "probe_asn": "AS9541",
                "input": "https://X.com./path",
                "test_name": "web_connectivity",
                "measurement_start_time": "2024-02-17 10:00:00",
            }
        )
    )

    def matches(**values: Any) -> bool:
        return measurement_matches(parse_filters(values), m)

    assert matches()
    assert matches(probe_cc="pk", probe_asn="9541", domain="x.com", report_id="r1")
    assert matches(since="2024-02-17", until="2024-02-17T10:00:01Z")
    assert matches(since="2024-02-17T15:00:00+05:00")  # the same instant: inclusive
    assert not matches(until="2024-02-17T15:00:00+05:00")  # exclusive
    assert not matches(probe_asn="AS95410")
    assert not matches(domain="twitter.com")
    assert not matches(test_name="signal")
    assert not measurement_matches(
        parse_filters({"since": "2024-01-01"}), {**m, "measurement_start_time": "soon"}
    )
