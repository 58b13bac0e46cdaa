"""MaxMind-format IP databases: the record shapes of OONI, DB-IP and GeoLite2, the file valid
at each measurement's date, bad files, and `geo sync` against a real HTTP server on 127.0.0.1.

The databases are real MaxMind DB files, written with ``mmdb-writer`` in each publisher's
record layout and read back through ``maxminddb`` (the reader OONI's pipeline uses too).
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import threading
import zlib
from collections.abc import Iterator
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from mmdb_writer import MmdbU32, MMDBWriter
from netaddr import IPSet
from typer.testing import CliRunner

from censorwatch.app.geo_sync import GeoSyncError, Source, SyncResult, sync_databases
from censorwatch.cli import app
from censorwatch.geo import (
    ASN_FIELD,
    COUNTRY_FIELD,
    DatedPlan,
    GeoDatabaseError,
    MaxMindPlan,
    date_in_name,
    ip_database,
    open_ip_database,
    open_mmdb,
)
from censorwatch.netinfo import AddressPlan

runner = CliRunner()

MOVED = "83.224.65.0/24"  # the prefix that changes hands between the dated files
MOVED_IP = "83.224.65.41"


# -- writing databases in each publisher's shape --------------------------------------------------


def write_mmdb(path: Path, records: dict[str, dict[str, Any]], database_type: str) -> Path:
    """An IPv6 tree with IPv4 mapped in (as every one of these publishers ships)."""
    writer = MMDBWriter(
        ip_version=6, ipv4_compatible=True, database_type=database_type, languages=["en"],
        description="censorwatch test database",
    )  # fmt: skip
    for network, record in records.items():
        writer.insert_network(IPSet([network]), record)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer.to_db_file(str(path))
    return path


def ooni_record(asn: int, org: str, cc: str, as_cc: str = "") -> dict[str, Any]:
    """OONI's ip2country_as: a DB-IP country record enriched with CAIDA's AS facts."""
    return {
        "country": {"iso_code": cc, "names": {"en": cc}},
        "autonomous_system_number": MmdbU32(asn),
        "autonomous_system_organization": org,
        "autonomous_system_country": as_cc or cc,
        "autonomous_system_name": f"{org.split()[0].upper()}-AS",
    }


def asn_record(asn: int, org: str) -> dict[str, Any]:
    """GeoLite2-ASN and DB-IP ASN Lite."""
    return {"autonomous_system_number": MmdbU32(asn), "autonomous_system_organization": org}


def country_record(cc: str, *, registered_only: bool = False) -> dict[str, Any]:
    """GeoLite2-Country and DB-IP Country Lite (some GeoLite2 networks carry only the
    registered country)."""
    place = {"iso_code": cc, "geoname_id": MmdbU32(1000), "names": {"en": cc}}
    if registered_only:
        return {"registered_country": place, "continent": {"code": "EU"}}
    return {"country": place, "registered_country": place, "continent": {"code": "EU"}}


def ooni_dir(root: Path) -> Path:
    """Three monthly OONI files; MOVED belongs to a different AS in each."""
    shared = {
        "93.184.216.0/24": ooni_record(15133, "Edgecast Inc.", "US"),
        "2a00:1450::/32": ooni_record(15169, "Google LLC", "IE", "US"),
    }
    for day, (asn, org, cc) in {
        "20240101": (30722, "Vodafone Italia S.p.A.", "IT"),
        "20240201": (15133, "Edgecast Inc.", "US"),
        "20240301": (3269, "Telecom Italia S.p.A.", "IT"),
    }.items():
        write_mmdb(
            root / f"{day}-ip2country_as.mmdb",
            {**shared, MOVED: ooni_record(asn, org, cc)},
            "DBIP-Country-Lite",
        )
    return root


# -- dated selection -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "asn"),
    [
        ("2023-06-01 12:00:00", 30722),  # before every file: the oldest
        ("2024-01-15 08:00:00", 30722),
        ("2024-01-31 23:59:59", 30722),
        ("2024-02-01 00:00:00", 15133),  # on the file's own day
        ("2024-02-29T18:00:00Z", 15133),  # RFC 3339 as well as OONI's format
        (datetime(2024, 3, 1, tzinfo=UTC), 3269),
        (date(2025, 7, 4), 3269),  # after every file: the newest
    ],
)
def test_each_date_gets_the_file_valid_then(tmp_path: Path, when: object, asn: int):
    plan = open_ip_database(ooni_dir(tmp_path))
    assert isinstance(plan, DatedPlan)
    info = plan.at(when).lookup(MOVED_IP)
    assert info is not None and info.asn == asn
    # The address that did not move answers the same from every file.
    assert plan.at(when).lookup("93.184.216.34").asn == 15133


def test_ooni_record_gives_asn_org_and_the_address_country(tmp_path: Path):
    plan = open_ip_database(ooni_dir(tmp_path)).at("2024-01-10 00:00:00")
    facts = plan.facts(MOVED_IP)
    assert (facts.asn, facts.as_org_name, facts.cc) == (30722, "Vodafone Italia S.p.A.", "IT")
    assert facts.source == "20240101-ip2country_as.mmdb"
    # The country is where the address is (country.iso_code), not where its AS registered.
    assert plan.facts("2a00:1450:4001:80b::200e").cc == "IE"


def test_ipv6_and_its_spellings(tmp_path: Path):
    plan = open_ip_database(ooni_dir(tmp_path)).at("2024-02-10 00:00:00")
    assert plan.lookup("2a00:1450:4001:80b::200e").asn == 15169
    assert plan.lookup("[2a00:1450:4001:80b::200e]").asn == 15169
    assert plan.lookup("::ffff:83.224.65.41").asn == 15133  # IPv4-mapped reads as the IPv4


def test_addresses_the_database_does_not_know(tmp_path: Path):
    plan = open_ip_database(ooni_dir(tmp_path)).at("2024-02-10 00:00:00")
    assert plan.lookup("1.1.1.1") is None
    assert plan.lookup("2001:4860:4860::8888") is None
    assert plan.lookup("not an address") is None
    assert plan.facts("1.1.1.1") is None
    v4_only = tmp_path / "v4" / "GeoLite2-ASN.mmdb"
    writer = MMDBWriter(ip_version=4, database_type="GeoLite2-ASN")
    writer.insert_network(IPSet(["8.8.8.0/24"]), asn_record(15169, "GOOGLE"))
    v4_only.parent.mkdir()
    writer.to_db_file(str(v4_only))
    single = open_ip_database(v4_only)
    assert single.lookup("8.8.8.8").asn == 15169
    assert single.lookup("2a00:1450::1") is None  # IPv6 in an IPv4-only file: unknown


def test_dbip_asn_and_country_series_answer_together(tmp_path: Path):
    for month, (asn, org, cc) in {
        "2024-01": (30722, "Vodafone Italia S.p.A.", "IT"),
        "2024-02": (3269, "Telecom Italia S.p.A.", "SM"),
    }.items():
        write_mmdb(
            tmp_path / f"dbip-asn-lite-{month}.mmdb",
            {MOVED: asn_record(asn, org)},
            "DBIP-ASN-Lite (compat=GeoLite2-ASN)",
        )
        write_mmdb(
            tmp_path / f"dbip-country-lite-{month}.mmdb",
            {"83.224.0.0/16": country_record(cc)},
            "DBIP-Country-Lite",
        )
    plan = open_ip_database(tmp_path)
    assert isinstance(plan, DatedPlan)
    assert sorted(plan.series) == ["dbip-asn-lite-*.mmdb", "dbip-country-lite-*.mmdb"]
    jan = plan.facts(MOVED_IP, "2024-01-20 10:00:00")
    assert (jan.asn, jan.cc) == (30722, "IT")
    assert jan.source == "dbip-asn-lite-2024-01.mmdb, dbip-country-lite-2024-01.mmdb"
    feb = plan.facts(MOVED_IP, "2024-02-20 10:00:00")
    assert (feb.asn, feb.as_org_name, feb.cc) == (3269, "Telecom Italia S.p.A.", "SM")
    # An address only the country file knows has a country but no AS.
    assert plan.facts("83.224.1.1", "2024-02-20").asn == 0
    assert plan.at("2024-02-20").lookup("83.224.1.1") is None


def test_geolite2_undated_files_are_dated_by_their_build_time(tmp_path: Path):
    write_mmdb(
        tmp_path / "GeoLite2-ASN.mmdb", {MOVED: asn_record(30722, "Vodafone")}, "GeoLite2-ASN"
    )
    write_mmdb(
        tmp_path / "GeoLite2-Country.mmdb",
        {"83.224.0.0/16": country_record("IT", registered_only=True)},
        "GeoLite2-Country",
    )
    plan = open_ip_database(tmp_path)
    built = {f.path.name: f.day for f in plan.files}
    assert set(built) == {"GeoLite2-ASN.mmdb", "GeoLite2-Country.mmdb"}
    for name, day in built.items():  # written just now: today's build time
        assert day == datetime.fromtimestamp(os.path.getmtime(tmp_path / name), UTC).date()
    facts = plan.facts(MOVED_IP)
    assert (facts.asn, facts.cc) == (30722, "IT")  # registered_country when no country
    one = open_ip_database(tmp_path / "GeoLite2-ASN.mmdb")
    assert isinstance(one, MaxMindPlan) and one.at("2010-01-01") is one


def test_file_names_carry_their_dates():
    assert date_in_name("20240201-ip2country_as.mmdb") == (date(2024, 2, 1), "*-ip2country_as.mmdb")
    assert date_in_name("20240201_ip2country_as.mmdb") == (date(2024, 2, 1), "*_ip2country_as.mmdb")
    assert date_in_name("dbip-asn-lite-2024-02.mmdb") == (date(2024, 2, 1), "dbip-asn-lite-*.mmdb")
    assert date_in_name("geo-2024-02-17.mmdb") == (date(2024, 2, 17), "geo-*.mmdb")
    assert date_in_name("GeoLite2-ASN.mmdb") is None
    assert date_in_name("20241399-x.mmdb") is None  # no such day


# -- bad files ------------------------------------------------------------------------------------


@pytest.fixture()
def good_bytes(tmp_path: Path) -> bytes:
    path = write_mmdb(
        tmp_path / "good" / "GeoLite2-ASN.mmdb",
        {f"83.224.{i}.0/24": asn_record(30722 + i, f"AS {i}") for i in range(64)},
        "GeoLite2-ASN",
    )
    return path.read_bytes()


@pytest.mark.parametrize(
    ("name", "damage", "message"),
    [
        ("random.mmdb", lambda b: os.urandom(4096), "not a MaxMind DB file"),
        ("truncated.mmdb", lambda b: b[: len(b) // 2], "truncated or corrupt"),
        ("empty.mmdb", lambda b: b"", "not a MaxMind DB file"),
        ("html.mmdb", lambda b: b"<html>Access denied</html>", "not a MaxMind DB file"),
        # The search tree zeroed: the metadata still reads, the records do not.
        ("tree.mmdb", lambda b: b[:32] + b"\x00" * 200 + b[232:], "corrupt"),
    ],
)
def test_bad_files_give_a_clear_error(tmp_path: Path, good_bytes: bytes, name, damage, message):
    bad = tmp_path / name
    bad.write_bytes(damage(good_bytes))
    with pytest.raises(GeoDatabaseError, match=message) as caught:
        open_ip_database(bad)
    assert name in str(caught.value)
    result = runner.invoke(app, ["analyze", "--asn-db", str(bad), str(bad)])
    assert result.exit_code == 2
    assert "cannot read the ASN database" in result.output and name in result.output


def test_a_database_without_as_or_country_records_is_refused(tmp_path: Path):
    path = write_mmdb(tmp_path / "city.mmdb", {MOVED: {"city": {"names": {"en": "Rome"}}}}, "X")
    with pytest.raises(GeoDatabaseError, match="holds no AS number or country records"):
        open_mmdb(path)
    asn_only = write_mmdb(tmp_path / "asn.mmdb", {MOVED: asn_record(1, "x")}, "GeoLite2-ASN")
    with pytest.raises(GeoDatabaseError, match="holds no country records"):
        open_mmdb(asn_only, expect={COUNTRY_FIELD})
    assert open_mmdb(asn_only, expect={ASN_FIELD}).fields == {ASN_FIELD}


def test_a_directory_without_databases_and_a_missing_path(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("nothing here\n")
    with pytest.raises(GeoDatabaseError, match=r"no \.mmdb files"):
        open_ip_database(tmp_path)
    with pytest.raises(GeoDatabaseError, match="no such file"):
        open_ip_database(tmp_path / "absent.mmdb")


def test_the_existing_formats_open_through_the_same_door(tmp_path: Path):
    plan_file = tmp_path / "address-plan.json"
    plan_file.write_text(json.dumps({
        "public_prefixes": ["198.51.100.0/24"],
        "networks": [{"prefix": "198.51.100.0/24", "asn": 13414, "as_org_name": "X Corp",
                      "cc": "US"}],
    }))  # fmt: skip
    plan = ip_database(plan_file)
    assert type(plan) is AddressPlan and plan.at("2024-01-01") is plan
    assert plan.lookup("198.51.100.7").asn == 13414
    assert not plan.is_bogon("198.51.100.7") and plan.is_bogon("203.0.113.1")
    tsv = tmp_path / "ip2asn-v4.tsv"
    tsv.write_text("83.224.65.0\t83.224.65.255\t30722\tIT\tVODAFONE-IT\n")
    assert ip_database(tsv).lookup(MOVED_IP).as_org_name == "VODAFONE-IT"


def test_the_environment_names_a_directory_and_new_files_are_seen(tmp_path: Path, monkeypatch):
    root = ooni_dir(tmp_path / "db")
    monkeypatch.setenv("CENSORWATCH_ASN_DB", str(root))
    assert ip_database().at("2024-06-01").lookup(MOVED_IP).asn == 3269
    write_mmdb(
        root / "20240601-ip2country_as.mmdb",
        {MOVED: ooni_record(12874, "Fastweb SpA", "IT")},
        "DBIP-Country-Lite",
    )
    assert ip_database().at("2024-06-01").lookup(MOVED_IP).asn == 12874


def test_the_probe_and_the_collector_take_a_directory(tmp_path: Path, shared_data: Path):
    from censorwatch.app.services import build_analyzer
    from censorwatch.probe.config import ProbeConfig

    root = ooni_dir(tmp_path / "db")
    config = ProbeConfig.from_env(asn_db=str(root), env={})
    assert config.plan.lookup(MOVED_IP).asn == 3269  # a probe measures today: the newest
    analyzer = build_analyzer(None, root)
    measurement = unannotated(shared_data)
    feb = analyzer(measurement)
    march = analyzer({**measurement, "measurement_start_time": "2024-03-05 10:00:00"})
    assert (feb["verdict"], feb["method"]) == ("blocked", "tcp.reset")
    assert march["method"] == "dns.forged"


# -- the analysis uses the file valid at each measurement ------------------------------------------


def unannotated(shared_data: Path) -> dict[str, Any]:
    """OONI's own measurement of a forged DNS answer (83.224.65.41 instead of 93.184.216.34)
    followed by a refused connection, made on 2024-02-12, without the AS annotations its probe
    and test helper added (as older OONI probes wrote them): the AS facts then come from the
    IP database, the way the analysis reads measurements of those years."""
    path = shared_data / "ooni" / "wc05_qa" / "tcpBlockingConnectionRefusedWithInconsistentDNS.json"
    m = json.loads(path.read_text())
    for query in m["test_keys"]["queries"]:
        for answer in query.get("answers") or []:
            answer.pop("asn", None)
            answer.pop("as_org_name", None)
    m["test_keys"]["control"].pop("ip_info", None)
    return m


def test_analyze_cli_uses_the_database_of_each_measurements_day(tmp_path: Path, shared_data):
    root = ooni_dir(tmp_path / "db")
    m = unannotated(shared_data)
    assert m["measurement_start_time"] == "2024-02-12 20:33:47"
    lines = [m, {**m, "measurement_start_time": "2024-03-05 10:00:00", "measurement_uid": "b"}]
    file = tmp_path / "measurements.jsonl"
    file.write_text("".join(json.dumps(x) + "\n" for x in lines))
    result = runner.invoke(app, ["analyze", "--json", "--asn-db", str(root), str(file)])
    assert result.exit_code == 0, result.output
    feb, march = (json.loads(line) for line in result.stdout.splitlines())
    # February's file puts the probe's answer in the control's AS (15133): the DNS answer is
    # consistent, and the block is the refused connection.
    assert (feb["verdict"], feb["method"]) == ("blocked", "tcp.reset")
    assert "83.224.65.41 differs from control but is in the same AS (AS15133)" in " ".join(
        feb["evidence"]
    )
    # March's file puts it in AS3269: no address or AS in common, a forged answer.
    assert (march["verdict"], march["method"]) == ("blocked", "dns.forged")
    assert "no address or AS overlap (AS3269 vs AS15133)" in " ".join(march["evidence"])


def test_the_measurements_own_annotations_still_come_first(tmp_path: Path, shared_data):
    """OONI's probe wrote the answer's AS (30722) and its test helper the control's (15133);
    those facts of the day win over any database."""
    root = ooni_dir(tmp_path / "db")
    path = shared_data / "ooni" / "wc05_qa" / "tcpBlockingConnectionRefusedWithInconsistentDNS.json"
    result = runner.invoke(app, ["analyze", "--json", "--asn-db", str(root), str(path)])
    record = json.loads(result.stdout)
    assert record["method"] == "dns.forged"
    assert "(AS30722 vs AS15133)" in " ".join(record["evidence"])


def test_geo_lookup_cli(tmp_path: Path):
    root = ooni_dir(tmp_path / "db")
    result = runner.invoke(
        app, ["geo", "lookup", MOVED_IP, "1.1.1.1", "--asn-db", str(root), "--date", "2024-01-15"]
    )
    assert result.exit_code == 0, result.output
    assert f"{MOVED_IP}: AS30722 Vodafone Italia S.p.A. IT [20240101-ip2country_as.mmdb]" in (
        result.output
    )
    assert "1.1.1.1: not in the database" in result.output


# -- geo sync against a real server on loopback ----------------------------------------------------


class Mirror:
    """A small HTTP server on 127.0.0.1 serving fixed bodies by file name."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.requests: list[str] = []
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                mirror.requests.append(self.path)
                body = mirror.files.get(self.path.rsplit("/", 1)[-1])
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/geo"

    def source(self, name: str, expect: frozenset[str] = frozenset()) -> Source:
        return Source(f"{self.base}/{name}", name.removesuffix(".gz"), expect)


@pytest.fixture()
def mirror_files(tmp_path: Path) -> dict[str, bytes]:
    built = tmp_path / "built"
    asn = write_mmdb(built / "a.mmdb", {MOVED: asn_record(30722, "Vodafone")}, "GeoLite2-ASN")
    cc = write_mmdb(built / "c.mmdb", {"83.224.0.0/16": country_record("IT")}, "GeoLite2-Country")
    ooni = ooni_dir(built / "ooni") / "20240201-ip2country_as.mmdb"
    return {
        "dbip-asn-lite-2024-02.mmdb.gz": gzip.compress(asn.read_bytes()),
        "dbip-country-lite-2024-01.mmdb.gz": gzip.compress(cc.read_bytes()),
        "20240201-ip2country_as.mmdb.gz": gzip.compress(ooni.read_bytes()),
        "GeoLite2-ASN.mmdb": asn.read_bytes(),  # served uncompressed
    }


@pytest.fixture()
def mirror(mirror_files: dict[str, bytes]) -> Iterator[Mirror]:
    server = Mirror(mirror_files)
    yield server
    server.server.shutdown()
    server.server.server_close()


def monthly(mirror: Mirror, template: str, expect: set[str]) -> Source:
    return Source(f"{mirror.base}/{template}.gz", template, frozenset(expect))


def test_sync_fetches_checks_and_writes(tmp_path: Path, mirror: Mirror):
    out = tmp_path / "geoip"
    sources = [
        monthly(mirror, "dbip-asn-lite-{month}.mmdb", {ASN_FIELD}),
        # Only January's country file is published: February's 404 falls back to it.
        monthly(mirror, "dbip-country-lite-{month}.mmdb", {COUNTRY_FIELD}),
        monthly(mirror, "{day}-ip2country_as.mmdb", {ASN_FIELD, COUNTRY_FIELD}),
        mirror.source("GeoLite2-ASN.mmdb", frozenset({ASN_FIELD})),
    ]
    results = sync_databases(out, sources, timeout=5, today=date(2024, 2, 17))
    assert all(isinstance(r, SyncResult) for r in results), results
    assert [r.status for r in results] == ["written"] * 4
    assert sorted(p.name for p in out.iterdir()) == [
        "20240201-ip2country_as.mmdb",
        "GeoLite2-ASN.mmdb",
        "dbip-asn-lite-2024-02.mmdb",
        "dbip-country-lite-2024-01.mmdb",
    ]
    assert any(path.endswith("dbip-country-lite-2024-02.mmdb.gz") for path in mirror.requests)
    plan = open_ip_database(out)
    # Series answer in name order: OONI's file first, and it knows both facts.
    facts = plan.facts(MOVED_IP, "2024-02-17")
    assert (facts.asn, facts.cc, facts.source) == (15133, "US", "20240201-ip2country_as.mmdb")
    assert plan.facts("83.224.1.1", "2024-02-17").cc == "IT"  # only DB-IP's country file

    # Again: the dated files are kept without a download, the undated one is unchanged.
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    mirror.requests.clear()
    again = sync_databases(out, sources, timeout=5, today=date(2024, 2, 17))
    assert [r.status for r in again] == ["present", "present", "present", "unchanged"]
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    # Asked again: February's country file (it may be out by now) and the undated file.
    assert [p.rsplit("/", 1)[-1] for p in mirror.requests] == [
        "dbip-country-lite-2024-02.mmdb.gz",
        "GeoLite2-ASN.mmdb",
    ]


def test_sync_refuses_a_body_over_its_byte_budget(tmp_path: Path, mirror: Mirror):
    source = mirror.source("20240201-ip2country_as.mmdb.gz")
    size = len(mirror.files["20240201-ip2country_as.mmdb.gz"])
    [result] = sync_databases(tmp_path / "g", [source], timeout=5, max_download=size - 1)
    assert isinstance(result, GeoSyncError) and "refused" in str(result)
    assert f"over {size - 1}" in str(result)
    assert not (tmp_path / "g" / "20240201-ip2country_as.mmdb").exists()


def test_sync_refuses_a_gzip_bomb(tmp_path: Path, mirror: Mirror):
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"\x00" * (1024 * 1024)
    bomb = b"".join(packer.compress(block) for _ in range(64)) + packer.flush()
    assert len(bomb) < 100_000  # 64 MiB of zeros in well under 100 kB
    mirror.files["bomb.mmdb.gz"] = bomb
    [result] = sync_databases(
        tmp_path / "g", [mirror.source("bomb.mmdb.gz")], timeout=5, max_database=8 * 1024 * 1024
    )
    assert isinstance(result, GeoSyncError) and "gzip bomb" in str(result)
    assert not (tmp_path / "g").exists() or not any((tmp_path / "g").iterdir())


def test_sync_refuses_what_is_no_database_and_keeps_the_old_file(tmp_path: Path, mirror):
    out = tmp_path / "g"
    first = sync_databases(out, [mirror.source("GeoLite2-ASN.mmdb")], timeout=5)
    assert first[0].status == "written"
    old = (out / "GeoLite2-ASN.mmdb").read_bytes()
    for body in (
        gzip.compress(b"<html><title>Rate limited</title></html>"),  # no database
        gzip.compress(old)[:-40],  # a truncated gzip stream
        old[: len(old) // 2],  # a truncated database
    ):
        mirror.files["GeoLite2-ASN.mmdb"] = body
        [result] = sync_databases(out, [mirror.source("GeoLite2-ASN.mmdb")], timeout=5)
        assert isinstance(result, GeoSyncError), result
        assert "refused" in str(result)
        assert (out / "GeoLite2-ASN.mmdb").read_bytes() == old
    # A real database without the records the source promises is refused too.
    mirror.files["GeoLite2-ASN.mmdb"] = mirror.files["dbip-country-lite-2024-01.mmdb.gz"]
    [result] = sync_databases(
        out, [mirror.source("GeoLite2-ASN.mmdb", frozenset({ASN_FIELD}))], timeout=5
    )
    assert isinstance(result, GeoSyncError) and "holds no asn records" in str(result)
    assert (out / "GeoLite2-ASN.mmdb").read_bytes() == old
    assert [p.name for p in out.iterdir()] == ["GeoLite2-ASN.mmdb"]  # no temporary left


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_sync_offline_is_a_clear_error(tmp_path: Path):
    url = f"http://127.0.0.1:{closed_port()}/GeoLite2-ASN.mmdb.gz"
    [result] = sync_databases(tmp_path / "g", [Source(url, "GeoLite2-ASN.mmdb")], timeout=2)
    assert isinstance(result, GeoSyncError) and "cannot connect (offline?)" in str(result)
    cli = runner.invoke(app, ["geo", "sync", "--dir", str(tmp_path / "g"), "--source", url])
    assert cli.exit_code == 1
    assert "cannot connect (offline?)" in cli.output and "1 of 1 database(s) not synced" in (
        cli.output
    )


def test_sync_cli(tmp_path: Path, mirror: Mirror):
    out = tmp_path / "g"
    url = f"{mirror.base}/20240201-ip2country_as.mmdb.gz"
    result = runner.invoke(app, ["geo", "sync", "--dir", str(out), "--source", url])
    assert result.exit_code == 0, result.output
    assert f"{out / '20240201-ip2country_as.mmdb'}: written (DBIP-Country-Lite)" in result.output
    assert f"--asn-db {out}" in result.output
    bad = runner.invoke(app, ["geo", "sync", "--dir", str(out), "--source", f"{mirror.base}/x.csv"])
    assert bad.exit_code == 2 and ".mmdb" in bad.output


def test_evidence_export_names_the_one_file_a_bundle_carries(tmp_path: Path, shared_data):
    root = ooni_dir(tmp_path / "db")
    file = tmp_path / "m.json"
    file.write_text(json.dumps(unannotated(shared_data)))
    args = ["evidence", "export", "--out", str(tmp_path / "b.zip"), "--measurements", str(file)]
    result = runner.invoke(app, [*args, "--asn-db", str(root)])
    assert result.exit_code == 2
    assert "a bundle carries one IP database file" in result.output
    assert not (tmp_path / "b.zip").exists()


def test_an_evidence_bundle_carries_the_mmdb_and_verifies_with_it(tmp_path: Path, shared_data):
    import zipfile

    from censorwatch.evidence.bundle import export_bundle, verify_bundle
    from censorwatch.evidence.log import TransparencyLog
    from censorwatch.model import derive_measurement_uid

    feb = ooni_dir(tmp_path / "db") / "20240201-ip2country_as.mmdb"
    m = unannotated(shared_data)
    m["measurement_uid"] = derive_measurement_uid(m)
    out = tmp_path / "bundle.zip"
    with TransparencyLog(tmp_path / "log") as log:
        log.append(m["measurement_uid"], m)
        export_bundle(out, log=log, measurements=[m], asn_db=feb)
    with zipfile.ZipFile(out) as bundle:
        verdicts = json.loads(bundle.read("verdicts.json"))
        assert bundle.read(f"analysis/asn_db/{feb.name}") == feb.read_bytes()
    assert verdicts[0]["method"] == "tcp.reset"  # the AS came from the bundled database
    result = verify_bundle(out)
    assert result.ok, result.problems
