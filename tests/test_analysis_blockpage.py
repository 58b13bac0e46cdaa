"""The generic block-page recogniser: pages that say they are block pages, and only those."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest

from censorwatch.analysis import analyze
from censorwatch.analysis.blockpage import MAX_BODY_CHARS, blockpage_reason
from censorwatch.analysis.fingerprints import Fingerprints, decode_body, parse_cp_jsonl
from censorwatch.analysis.webconnectivity import _title
from censorwatch.netinfo import AddressPlan, ASInfo
from censorwatch.testbed.services.censord import blockpage_html
from test_fingerprints_blockpages import ORDINARY_PAGES

X_IP = "198.51.100.10"
CONTROL_TITLE = "x.com – home"


@pytest.fixture(scope="module")
def plan() -> AddressPlan:
    p = AddressPlan()
    p.public_prefixes = [ipaddress.ip_network("198.51.100.0/24")]
    p.add_prefix("198.51.100.0/24", ASInfo(13414, "X Corp", "US"))
    return p.freeze()


def page_measurement(
    body: str, status: int = 200, control_title: str = CONTROL_TITLE, control: bool = True
) -> dict[str, Any]:
    """A plain-HTTP fetch of http://x.com/ that got ``body``; the control got x.com's page."""
    ctrl = {
        "dns": {"failure": None, "addrs": [X_IP]},
        "tcp_connect": {f"{X_IP}:80": {"status": True, "failure": None}},
        "http_request": {
            "failure": None,
            "status_code": 200,
            "body_length": 5210,
            "title": control_title,
            "headers": {"Content-Type": "text/html"},
        },
        "ip_info": {X_IP: {"asn": 13414}},
    }
    return {
        "measurement_start_time": "2026-11-23 12:00:00",
        "probe_asn": "AS64501",
        "probe_cc": "PK",
        "input": "http://x.com/",
        "test_name": "web_connectivity",
        "test_keys": {
            "queries": [
                {
                    "hostname": "x.com",
                    "engine": "udp",
                    "failure": None,
                    "query_type": "A",
                    "answers": [{"answer_type": "A", "ipv4": X_IP}],
                    "tags": ["classic", "x_resolver=system"],
                }
            ],
            "tcp_connect": [{"ip": X_IP, "port": 80, "status": {"success": True, "failure": None}}],
            "requests": [
                {
                    "tags": ["depth=0"],
                    "request": {"url": "http://x.com/", "method": "GET"},
                    "response": {
                        "code": status,
                        "body": body,
                        "headers": {"Content-Type": "text/html"},
                    },
                    "failure": None,
                }
            ],
            "control": ctrl if control else None,
            "control_failure": None if control else "generic_timeout_error",
        },
    }


def reads_as_blockpage(body: str, status: int = 200, control_title: str | None = "Home") -> bool:
    return blockpage_reason(body, status, _title(body), control_title) is not None


def test_testbed_blockpage_is_a_blockpage_without_fingerprints(plan: AddressPlan) -> None:
    v = analyze(page_measurement(blockpage_html().decode()), plan=plan)
    assert (v.verdict, v.method, v.layers.http) == ("blocked", "http.blockpage", "blocked"), v
    assert v.confirmed is False and v.fingerprint is None
    assert "no known fingerprint" in v.evidence[0] and "instructions" in v.evidence[0]
    assert any(e.startswith("control: http status 200") for e in v.evidence)
    assert 0.8 <= v.confidence < 0.99


def test_testbed_blockpage_with_the_real_databases(plan: AddressPlan, shared_data: Path) -> None:
    """No catalogued fingerprint knows the testbed's page: still a block page, unconfirmed."""
    fps = Fingerprints.load(shared_data / "fingerprints")
    v = analyze(page_measurement(blockpage_html().decode()), fingerprints=fps, plan=plan)
    assert (v.verdict, v.method, v.confirmed, v.fingerprint) == (
        "blocked",
        "http.blockpage",
        False,
        None,
    )


def test_fingerprints_and_false_positives_come_first(plan: AddressPlan) -> None:
    page = blockpage_html().decode()
    known = Fingerprints(
        entries=parse_cp_jsonl(
            '{"fingerprint":"b_testbed","pattern":"instructions of the telecommunication"}\n',
            false_positive=False,
        )
    )
    v = analyze(page_measurement(page), fingerprints=known, plan=plan)
    assert (v.method, v.confirmed, v.fingerprint) == ("http.blockpage", True, "b_testbed")
    settled = Fingerprints(
        entries=parse_cp_jsonl(
            '{"fingerprint":"fp_testbed","pattern":"Website blocked"}\n', false_positive=True
        )
    )
    v = analyze(page_measurement(page), fingerprints=settled, plan=plan)
    assert v.verdict == "ok" and any("fp_testbed" in e for e in v.evidence), v


@pytest.mark.parametrize(
    "body",
    [
        # Russian (Roskomnadzor register)
        "<html><head><title>Доступ ограничен</title></head><body><p>Доступ к информационному "
        "ресурсу ограничен на основании Федерального закона от 27.07.2006 № 149-ФЗ.</p>"
        "</body></html>",
        # Turkish
        "<html><head><title>Uyarı</title></head><body>Bu internet sitesine erişim "
        "engellenmiştir. Mahkeme kararı ile tedbir uygulanmaktadır.</body></html>",
        # French
        "<html><head><title>Site bloqué</title></head><body>L'accès à ce site a été bloqué "
        "en application d'une décision de l'autorité administrative.</body></html>",
        # Spanish
        "<html><head><title>Aviso</title></head><body>El acceso a este sitio ha sido "
        "bloqueado por orden judicial.</body></html>",
        # Portuguese
        "<html><head><title>Aviso</title></head><body>O acesso a este site foi bloqueado "
        "por ordem do tribunal.</body></html>",
        # German
        "<html><head><title>Hinweis</title></head><body>Der Zugriff auf diese Seite wurde "
        "gesperrt. Grundlage ist eine Anordnung der Behörde.</body></html>",
        # Indonesian
        "<html><head><title>Internet Positif</title></head><body>Situs ini diblokir sesuai "
        "Peraturan Menteri Kominfo.</body></html>",
        # Arabic
        "<html dir='rtl'><head><title>تنبيه</title></head><body>عذرا، هذا الموقع محجوب بموجب "
        "قرار الهيئة.</body></html>",
        # Persian
        "<html dir='rtl'><head><title>peyvandha</title></head><body>دسترسی به این وب سایت "
        "امکان پذیر نمی باشد. طبق قانون جرایم رایانه ای.</body></html>",
        # English, a court order
        "<html><head><title>Notice</title></head><body><h1>This website has been blocked"
        "</h1><p>Access has been disabled by order of the High Court.</p></body></html>",
    ],
)
def test_block_notices_in_several_languages(body: str) -> None:
    assert reads_as_blockpage(body), body
    assert reads_as_blockpage(body, status=451) and reads_as_blockpage(body, status=403)


NOT_CENSORSHIP = {
    # A CDN's own bot/geo refusal: "access denied", but no authority behind it.
    "akamai": "<HTML><HEAD>\n<TITLE>Access Denied</TITLE>\n</HEAD><BODY>\n<H1>Access Denied"
    '</H1>\n \nYou don\'t have permission to access "http&#58;&#47;&#47;x&#46;com&#47;" on '
    "this server.<P>\nReference&#32;&#35;18&#46;6f2c1002&#46;1700000000&#46;1a2b3c</BODY>\n"
    "</HTML>\n",
    "cloudflare_1020": "<!DOCTYPE html><html><head><title>Access denied | x.com used "
    "Cloudflare to restrict access</title></head><body><h1>Error 1020</h1><h2>Access denied"
    "</h2><p>The site owner may have set restrictions that prevent you from accessing the "
    "site.</p><p>Cloudflare Ray ID: 7a1b2c3d4e5f6a7b</p></body></html>",
    # A site that refuses EU visitors itself: a server's decision, not a censor's.
    "gdpr_451": "<html><head><title>451: Unavailable due to legal reasons</title></head>"
    "<body><p>We recognize you are attempting to access this website from a country "
    "belonging to the European Economic Area (EEA) including the EU which enforces the "
    "General Data Protection Regulation (GDPR) and therefore access cannot be granted at "
    "this time.</p></body></html>",
    "nginx_403": "<html>\r\n<head><title>403 Forbidden</title></head>\r\n<body>\r\n<center>"
    "<h1>403 Forbidden</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
    "login": "<html><head><title>Sign in</title></head><body><p>Access denied. This content "
    "is restricted to subscribers; please sign in.</p></body></html>",
    "wc05_jurisdiction": "<!doctype html>\n<html>\n<head>\n\t<title>Access Denied</title>\n"
    "</head>\n<body>\n<div>\n\t<h1>Access Denied</h1>\n\t<p>This request cannot be served in "
    "your jurisdiction.</p>\n</div>\n</body>\n</html>\n",
}


def test_ordinary_pages_are_not_blockpages() -> None:
    for name, body in {**ORDINARY_PAGES, **NOT_CENSORSHIP}.items():
        for status in (200, 403, 451):
            assert not reads_as_blockpage(body, status), (name, status)


def test_conservative_conditions() -> None:
    notice = blockpage_html().decode()
    assert reads_as_blockpage(notice)
    # Not the page's own look: the control got the same title.
    assert not reads_as_blockpage(notice, control_title="website BLOCKED")
    # A site whose own title talks of blocking (a list of blocked sites, say).
    assert not reads_as_blockpage(notice, control_title="Sites blocked in 2024")
    # No control page to compare with: a lone page proves nothing.
    assert not reads_as_blockpage(notice, control_title=None)
    # Redirects and server errors are judged elsewhere.
    for status in (301, 302, 404, 500, 503):
        assert not reads_as_blockpage(notice, status)
    # A long page (an article about a court-ordered block) is not a notice.
    article = notice.replace("</body>", "<p>" + "Reporting continues. " * 900 + "</p></body>")
    assert len(article) > MAX_BODY_CHARS and not reads_as_blockpage(article)
    # Blocked, but no reason given: stays a mere difference from the control.
    assert not reads_as_blockpage("<title>Website blocked</title><p>This site is blocked.</p>")


def test_verdicts_without_a_control_or_over_https(plan: AddressPlan) -> None:
    page = blockpage_html().decode()
    v = analyze(page_measurement(page, control=False), plan=plan)
    assert v.method != "http.blockpage", v
    v = analyze(page_measurement(NOT_CENSORSHIP["cloudflare_1020"], status=403), plan=plan)
    assert v.method != "http.blockpage", v
    v = analyze(page_measurement(ORDINARY_PAGES["news"]), plan=plan)
    assert v.method != "http.blockpage", v


def test_no_wc05_response_reads_as_a_blockpage(shared_data: Path) -> None:
    seen = 0
    for path in sorted((shared_data / "ooni" / "wc05_qa").glob("*.json")):
        for req in json.loads(path.read_bytes())["test_keys"]["requests"] or []:
            body = (req.get("response") or {}).get("body")
            if isinstance(body, str) and body:
                seen += 1
                assert not reads_as_blockpage(body, control_title="Other"), path.name
    assert seen >= 15


def test_reads_many_real_blockpages_alone(shared_data: Path, capsys) -> None:
    """Without any database, a good share of Citizen Lab's real block pages read as such."""
    root = shared_data / "fingerprints" / "citizenlab-filtering-annotations"
    pages = sorted(root.rglob("*.html"))
    hits = sum(reads_as_blockpage(decode_body(p.read_bytes())) for p in pages)
    with capsys.disabled():
        print(f"\nreal blockpages read as such without fingerprints: {hits}/{len(pages)}")
    assert hits >= 50
