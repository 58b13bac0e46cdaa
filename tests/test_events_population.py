"""How many people a block touches: per-AS user estimates in APNIC's layouts, chosen by date,
summed over the blocking networks of a national event, and stated by the record, the API, the
explorer and the alert; absent, never zero, when no estimate covers the networks."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from censorwatch.cli import app
from censorwatch.events.alerts import summary
from censorwatch.events.api import router as events_router
from censorwatch.events.population import (
    PopulationError,
    impact_of,
    load_all,
    load_estimates,
    with_impact,
)
from censorwatch.events.stored import StoredEvents
from censorwatch.events.tracker import detect_events
from censorwatch.store import open_store
from censorwatch.testbed.scenario import scenario_population
from censorwatch.web.routes import router as web_router
from test_events_cli import PLAN, verdicts, write
from test_events_store import row

BLOCKING = [asn for asn, (start, _, _) in PLAN.items() if start is not None]
# APNIC's per-economy table, as its CSV export lays it out (figures made up for the test)
APNIC_CSV = """Rank,AS,AS Name,CC,Users (est.),% of Country,% of Internet,Samples
1,AS17557,PTCL,PK,"20,000,000",20.00,0.4,100000
2,AS135407,Example Mobile,PK,"30,000,000",30.00,0.6,150000
3,AS9541,Cybernet,PK,"5,000,000",5.00,0.1,25000
4,AS23674,Nayatel,PK,"1,000,000",1.00,0.02,5000
"""


def national_x(estimates) -> dict:
    events = with_impact(detect_events(verdicts()), estimates)
    return next(e for e in events if e.scope == "national" and e.target == "x").to_record()


def test_apnic_csv_gives_users_per_network_and_the_country_total(tmp_path: Path):
    path = tmp_path / "aspop-PK-2024-02-15.csv"
    path.write_text(APNIC_CSV)
    est = load_estimates(path)
    assert est.estimated_on == date(2024, 2, 15) and est.source == "APNIC"
    assert est.users("PK", "AS17557") == 20_000_000 and est.users("pk", "as9541") == 5_000_000
    assert est.countries["PK"].total == (100_000_000, "estimate")  # from "% of Country"
    impact = national_x([est])["impact"]
    # AS140499 blocks but has no row: it is named, and counted nowhere
    assert impact["users"] == 55_000_000 and impact["share"] == 0.55
    assert impact["networks_without_estimate"] == ["AS140499"]
    assert impact["estimated_on"] == "2024-02-15"


def test_apnic_json_and_a_table_without_shares(tmp_path: Path):
    rows = [
        {"as": 17557, "autnum": "PTCL", "cc": "PK", "users": 4000, "percent": 40.0},
        {"as": "AS9541", "autnum": "Cybernet", "cc": "PK", "users": 1000, "percent": 10.0},
    ]
    path = tmp_path / "PK.asns.json"
    path.write_text(json.dumps(rows))
    est = load_estimates(path, estimated_on=date(2024, 1, 1))
    assert est.countries["PK"].total == (10_000, "estimate")
    bare = tmp_path / "bare-2024-01-01.csv"
    bare.write_text("AS,CC,Users\n17557,PK,300\n9541,PK,100\n23674,PK,100\n")
    impact = national_x(load_all([bare]))["impact"]
    assert impact["share_basis"] == "listed networks"
    assert impact["users"] == 400 and impact["country_users"] == 500


def test_broken_files_are_named(tmp_path: Path):
    undated = tmp_path / "aspop.csv"
    undated.write_text(APNIC_CSV)
    with pytest.raises(PopulationError, match="no date of the estimate"):
        load_estimates(undated)
    wrong = tmp_path / "x-2024-01-01.csv"
    wrong.write_text("name,value\na,1\n")
    with pytest.raises(PopulationError, match="no asn, cc, users column"):
        load_estimates(wrong)
    binary = tmp_path / "b-2024-01-01.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(PopulationError, match="not UTF-8"):
        load_estimates(binary)
    empty_rows = tmp_path / "e-2024-01-01.csv"
    empty_rows.write_text("AS,CC,Users\nx,PK,1\n17557,PAK,1\n")
    with pytest.raises(PopulationError, match="no row"):
        load_estimates(empty_rows)


def test_the_estimate_nearest_before_the_onset_is_used(tmp_path: Path):
    old, new, later = (tmp_path / f"pk-{d}.csv" for d in ("2023-01-01", "2024-02-01", "2030-01-01"))
    for path, users in ((old, 1), (new, 2), (later, 3)):
        path.write_text(f"AS,CC,Users\n17557,PK,{users}\n")
    impact = national_x(load_all([tmp_path]))["impact"]
    onset = national_x([])["onset"]["before"]
    assert onset.startswith("2024-") and impact["users"] == 2
    assert impact["estimated_on"] == "2024-02-01"


def test_without_an_estimate_there_is_no_impact_field():
    record = national_x([])
    assert "impact" not in record
    other_country = load_estimates(scenario_population("pk-2024-x"))
    other_country.countries = {"IR": other_country.countries["PK"]}
    assert "impact" not in national_x([other_country])
    event = detect_events(verdicts())[0]
    assert impact_of(event, []) is None


def test_events_command_and_population_load(tmp_path: Path):
    csv_file = tmp_path / "aspop-PK-2024-02-15.csv"
    csv_file.write_text(APNIC_CSV)
    into = tmp_path / "estimates"
    runner = CliRunner()
    loaded = runner.invoke(app, ["population", "load", str(csv_file), "--into", str(into)])
    assert loaded.exit_code == 0, loaded.output
    assert "4 networks in 1 countries, estimated on 2024-02-15 by APNIC" in loaded.output
    listed = runner.invoke(app, ["population", "list", "--into", str(into)])
    assert "PK  4 networks  100,000,000 users (estimate)  APNIC 2024-02-15" in listed.output
    data = write(tmp_path / "v.jsonl", verdicts())
    result = runner.invoke(app, ["events", "--json", "--population", str(into), str(data)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    national = [r for r in records if r["scope"] == "national"]
    assert national and all(r["impact"]["users"] == 55_000_000 for r in national)
    assert not any("impact" in r for r in records if r["scope"] == "network")
    bad = tmp_path / "bad-2024-01-01.csv"
    bad.write_text("nothing,useful\n")
    refused = runner.invoke(app, ["events", "--population", str(bad), str(data)])
    assert refused.exit_code == 2 and "no asn" in refused.output


def test_the_alert_states_the_users_affected():
    event = with_impact(detect_events(verdicts()), load_all([scenario_population("pk-2024-x")]))
    national = next(e for e in event if e.scope == "national" and e.target == "x")
    text = summary(national)
    assert "≈ 61.0 million users (61 % of the country's users) on the blocking networks" in text
    assert "illustrative" in text  # the testbed's figures say what they are


def test_api_and_explorer_show_the_users_affected(tmp_path: Path):
    store = open_store(tmp_path / "store.duckdb")
    store.add([row(v) for v in verdicts()])
    StoredEvents.rebuild(store)
    web = FastAPI()
    web.state.store = store
    web.state.population = load_all([scenario_population("pk-2024-x")])
    web.include_router(events_router)
    web.include_router(web_router)
    with TestClient(web) as client:
        body = client.get("/api/v1/events", params={"scope": "national"}).json()
        national = next(e for e in body["results"] if e["target"] == "x")
        assert national["impact"]["users"] == sum(
            national["impact"]["networks"][a] for a in BLOCKING
        )
        page = client.get(f"/explorer/events/{national['event_id']}").text
        assert "61.0 million users (61 % of the country" in page
        overview = client.get("/explorer").text
        assert "61.0 million users" in overview
    getattr(store, "close", lambda: None)()
