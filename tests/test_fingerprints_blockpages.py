"""Real blockpages are recognised; ordinary pages are not; false positives are checked first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from censorwatch.analysis.fingerprints import (
    Fingerprint,
    Fingerprints,
    parse_cp_jsonl,
    parse_ooni_csv,
)

ORDINARY_PAGES = {
    "blog": """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Notes from the field: measuring the web</title>
<link rel="stylesheet" href="/static/site.css"></head><body><header><nav><a href="/">Home</a>
<a href="/archive">Archive</a><a href="/about">About</a></nav></header><main><article>
<h1>Notes from the field</h1><p>Last week we visited three cities and talked to people who
run small internet cafes. Most of them told us the connection is slow in the evening.</p>
<p>Read more in the <a href="/archive/2024">archive</a>.</p></article></main>
<footer>&copy; 2024 Field Notes</footer></body></html>""",
    "news": """<!DOCTYPE html><html><head><title>Election results: live updates | Daily Post
</title><meta name="viewport" content="width=device-width"></head><body><div id="app">
<h2>Live: counting continues in several provinces</h2><ul><li>Turnout at 48 percent</li>
<li>Results expected by Friday</li></ul><script src="/js/app.3f2a.js"></script></div>
</body></html>""",
    "shop": """<html><head><title>Cart - Bookshop</title></head><body>
<form action="/checkout" method="post"><input name="qty" value="1"><button>Checkout</button>
</form><p>Free delivery on orders over 20 EUR.</p></body></html>""",
    "testbed_site": """<!doctype html><html><head><title>x.com</title></head>
<body><h1>x.com</h1><p>Welcome to x.com. This page is served by the testbed.</p></body></html>""",
}


@pytest.fixture(scope="module")
def fps(shared_data: Path) -> Fingerprints:
    return Fingerprints.load(shared_data / "fingerprints")


def test_loads_both_databases(fps: Fingerprints):
    counts = fps.counts()
    assert counts["dns"] >= 200
    assert counts["http"] >= 1000
    assert counts["false_positive"] >= 400
    assert {Path(s).name for s in fps.sources} == {
        "fingerprints_dns.csv",
        "fingerprints_http.csv",
        "blockpage_signatures.json",
        "false_positive_signatures.json",
    }


def test_real_blockpages_match(fps: Fingerprints, shared_data: Path, capsys):
    root = shared_data / "fingerprints" / "citizenlab-filtering-annotations"
    pages = sorted(root.rglob("*.html"))
    assert len(pages) >= 160
    misses = []
    for page in pages:
        result = fps.classify_http(page.read_bytes(), {}, None)
        if result.blockpage is not True:
            label = "false positive " + str(result.name) if result.blockpage is False else "none"
            misses.append(f"{page.name}: {label}")
    rate = (len(pages) - len(misses)) / len(pages)
    with capsys.disabled():
        print(
            f"\nreal blockpages matched: {len(pages) - len(misses)}/{len(pages)} "
            f"({rate:.1%}); unmatched: {', '.join(m.split(':')[0] for m in misses)}"
        )
    assert rate >= 0.9, misses


def test_ordinary_pages_match_nothing(fps: Fingerprints, shared_data: Path):
    for name, html in ORDINARY_PAGES.items():
        result = fps.classify_http(html, {"Content-Type": "text/html"}, "PK")
        assert result.blockpage is not True, (name, result.name)
    # The pages the wc05_qa control and the uncensored probe fetched.
    seen = 0
    for path in sorted((shared_data / "ooni" / "wc05_qa").glob("*.json")):
        if not path.stem.startswith(("success", "idna", "controlFailure", "dnsHijackingToProxy")):
            continue
        for req in json.loads(path.read_bytes())["test_keys"]["requests"] or []:
            resp = req["response"]
            if resp.get("body"):
                seen += 1
                assert fps.match_http(resp["body"], resp.get("headers") or {}, "IT") is None
    assert seen >= 6


def test_false_positive_first_is_three_valued():
    db = Fingerprints(
        entries=parse_cp_jsonl(
            '{"fingerprint":"b_generic","pattern":"Access Denied"}\n'
            '{"fingerprint":"b_specific","pattern":"blocked by the Telecom Authority of Ruritania"}'
            "\n",
            false_positive=False,
        )
        + parse_cp_jsonl(
            '{"fingerprint":"x_cdn","pattern":"Access Denied - Ray ID: [0-9a-f]+"}\n',
            false_positive=True,
        )
    )
    assert db.classify_http("<h1>Access Denied</h1>").blockpage is True
    cdn = db.classify_http("<h1>Access Denied - Ray ID: 7d2f</h1>")
    assert (cdn.blockpage, cdn.name) == (False, "x_cdn")
    assert db.match_http("<h1>Access Denied - Ray ID: 7d2f</h1>") is None
    assert db.classify_http("<p>hello</p>").blockpage is None
    # A page that also names a specific authority outweighs a short generic false positive.
    both = "Access Denied - Ray ID: 7d2f; blocked by the Telecom Authority of Ruritania"
    assert db.match_http(both) == "b_specific"


def test_ooni_locations_and_pattern_types():
    csv_text = (
        "name,scope,other_names,location_found,pattern_type,pattern,confidence_no_fp,"
        "expected_countries,source,exp_url,notes\n"
        "t.loc,isp,,header.location,prefix,http://blocked.example/,5,PK,t,,\n"
        "t.srv,prod,,header.server,full,WireFilter,5,,t,,\n"
        "t.body,nat,,body,contains,site is blocked by the authority,5,PK,t,,\n"
        "t.re,nat,,body,regexp,blocked \\(case [0-9]+\\),5,,t,,\n"
        "t.fp,fp,,body,contains,Welcome to nginx,5,,t,,\n"
        "t.dns,isp,,dns,full,10.10.34.34,5,IR,t,,\n"
        "t.dnsany,isp,,dns,full,203.0.113.66,5,,t,,\n"
    )
    db = Fingerprints(entries=parse_ooni_csv(csv_text))
    assert db.match_http("", {"Location": "http://blocked.example/?u=x"}) == "t.loc"
    assert db.match_http("", {"Location": "https://elsewhere/http://blocked.example/"}) is None
    assert db.match_http("", {"server": ["WireFilter"]}) == "t.srv"
    assert db.match_http("", {"Server": "WireFilter 2"}) is None
    assert db.match_http(b"this site is blocked by the authority", {}, "PK") == "t.body"
    assert db.match_http("page blocked (case 1234)") == "t.re"
    assert db.classify_http("Welcome to nginx!").blockpage is False
    assert db.match_dns("10.10.34.34", "IR") == "t.dns"
    assert db.match_dns("10.10.34.34", "PK") is None  # scoped to Iran
    assert db.match_dns("10.10.34.34", None) == "t.dns"  # unknown country: any
    assert db.match_dns("203.0.113.66", "PK") == "t.dnsany"
    assert db.match_dns("203.0.113.67", "PK") is None


def test_base64_and_latin1_bodies(fps: Fingerprints):
    page = "Доступ к ресурсу ограничен".encode("cp1251")
    assert isinstance(fps.classify_http(page, {}).blockpage, bool | type(None))
    hdr = {"Location": {"format": "base64", "data": "aHR0cDovL2Jsb2NrZWQuZXhhbXBsZS8="}}
    db = Fingerprints(
        entries=[Fingerprint("t", "header.location", "prefix", "http://blocked.example/")]
    )
    assert db.match_http(None, hdr) == "t"


def test_load_errors_are_clear(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="no fingerprint files"):
        Fingerprints.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="not found"):
        Fingerprints.load(tmp_path / "missing")


def test_default_location_and_env(tmp_path: Path, shared_data: Path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.delenv("CENSORWATCH_FINGERPRINTS", raising=False)
    assert len(Fingerprints.default()) == 0  # nothing synced yet
    monkeypatch.setenv("CENSORWATCH_FINGERPRINTS", str(shared_data / "fingerprints"))
    assert len(Fingerprints.default()) > 2000


def test_meta_refresh_forward_is_matched_like_a_location(fps: Fingerprints, shared_data: Path):
    page = next((shared_data / "fingerprints").rglob("isp_kr_lg_cleanweb_forward.html"))
    assert fps.match_http(page.read_bytes(), {}, "KR") == "ooni.kr_6"
    # The same URL in running text is not a forward.
    assert fps.match_http("see http://cleanweb1.uplus.co.kr/kren for details", {}, "KR") is None
