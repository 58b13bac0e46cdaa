"""The one scrubber: every spelling of the probe's address leaves, for the probe and the collector.

The same hostile spellings are given to both callers: the probe's ``Scrubber`` (addresses it
learned) and the collector's ``scrub_submission`` (the submitter's address and ``probe_ip``).
"""

from __future__ import annotations

import ipaddress
import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from censorwatch.netinfo import identifies_nobody
from censorwatch.scrub import PROBE_IP_PLACEHOLDER, SCRUBBED, Scrubber, scrub_submission

PROBE_V4 = "203.0.113.77"  # cb00:714d in hex
PROBE_V6 = "2001:db8:abcd::77"

#: Spellings of PROBE_V4 that must not survive.
V4_SPELLINGS = [
    "203.0.113.77",
    "::ffff:203.0.113.77",
    "::FFFF:203.0.113.77",
    "::ffff:cb00:714d",
    "::FFFF:CB00:714D",
    "0:0:0:0:0:ffff:cb00:714d",
    "0000:0000:0000:0000:0000:ffff:cb00:714d",
    "0:0:0:0:0:ffff:203.0.113.77",
    "::0:ffff:cb00:714d",
    "64:ff9b::203.0.113.77",
    "64:ff9b::cb00:714d",
    "203%2E0%2E113%2E77",
]
#: Spellings of PROBE_V6 that must not survive.
V6_SPELLINGS = [
    "2001:db8:abcd::77",
    "2001:DB8:ABCD::77",
    "2001:db8:abcd:0:0:0:0:77",
    "2001:db8:abcd:0::77",
    "2001:db8:abcd::0:0:77",
    "2001:0db8:abcd:0000:0000:0000:0000:0077",
    "2001:0DB8:ABCD:0000:0000:0000:0000:0077",
    "2001:db8:abcd::0.0.0.119",
    "2001%3Adb8%3Aabcd%3A%3A77",
]
#: Where an address hides: each context puts the spelling in place of ``{}``.
CONTEXTS = [
    "{}",
    "[{}]:443",
    "http://[{}]:8080/path?q=1",
    "http://{}/",
    "https%3A%2F%2F%5B{}%5D%2F",
    "<p>your address is {}</p>",
    "X-Forwarded-For: {}, 192.0.2.1",
    "connect to {}:443 failed: connection_refused",
    "{}.",
]
#: Text that looks close to the addresses and is none of them: it must stay as it is.
BYSTANDERS = [
    "1203.0.113.77",
    "203.0.113.770",
    "203.0.113.7",
    "203.0.113.77.5",
    "2001:db8:abcd::770",
    "2001:db8:abcd::7",
    "12001:db8:abcd::77",
    "::ffff:cb00:714e",
    "127.0.0.1",
    "10.10.34.35",
]


def _probe(values: Any) -> Any:
    return Scrubber({PROBE_V4, PROBE_V6}, interfaces=False).scrub(values)


def _collector(values: Any) -> Any:
    measurement = {"probe_ip": PROBE_V4, "test_keys": values}
    return scrub_submission(measurement, [PROBE_V6])["test_keys"]


CALLERS = pytest.mark.parametrize("scrub", [_probe, _collector], ids=["probe", "collector"])


@CALLERS
@pytest.mark.parametrize("spelling", V4_SPELLINGS + V6_SPELLINGS)
@pytest.mark.parametrize("context", CONTEXTS)
def test_no_spelling_survives_in_any_context(scrub, spelling: str, context: str) -> None:
    text = context.format(spelling)
    out = scrub({"value": text, text: [text]})
    assert out["value"] == context.format(SCRUBBED)
    assert list(out) == ["value", context.format(SCRUBBED)]
    assert out[context.format(SCRUBBED)] == [context.format(SCRUBBED)]


@CALLERS
@pytest.mark.parametrize("bystander", BYSTANDERS)
def test_other_addresses_stay(scrub, bystander: str) -> None:
    assert scrub({"a": f"seen {bystander} here"}) == {"a": f"seen {bystander} here"}


@CALLERS
def test_every_place_of_a_measurement_is_scrubbed(scrub) -> None:
    keys = {
        "client_resolver": PROBE_V4,
        "network_events": [
            {"operation": "connect", "address": f"[{PROBE_V6}]:443", "failure": None},
            {"operation": "read", "address": "93.184.216.34:443", "failure": None},
        ],
        "tcp_connect": [{"ip": "93.184.216.34", "port": 443, "status": {"success": True}}],
        "requests": [
            {
                "failure": f"dial tcp {PROBE_V4}:54321->93.184.216.34:80: connection_reset",
                "request": {"url": f"http://[{PROBE_V6}]/", "headers": {"Host": PROBE_V4}},
                "response": {
                    "body": f"<html>you are ::ffff:cb00:714d, {PROBE_V4}</html>",
                    "headers": {"X-Client-IP": PROBE_V6.upper()},
                },
            }
        ],
        "queries": [{"answers": [{"ipv4": "127.0.0.1"}, {"ipv6": "::1"}]}],
    }
    out = scrub(keys)
    text = json.dumps(out)
    for spelling in ("203.0.113.77", "cb00:714d", "2001:db8:abcd::77", "2001:DB8:ABCD::77"):
        assert spelling not in text
    assert out["client_resolver"] == SCRUBBED
    assert out["network_events"][0]["address"] == f"[{SCRUBBED}]:443"
    assert out["network_events"][1]["address"] == "93.184.216.34:443"
    assert out["requests"][0]["failure"] == (
        f"dial tcp {SCRUBBED}:54321->93.184.216.34:80: connection_reset"
    )
    assert out["requests"][0]["response"]["body"] == f"<html>you are {SCRUBBED}, {SCRUBBED}</html>"
    assert out["queries"] == keys["queries"]  # loopback answers are the evidence of a block


def test_the_collector_scrubs_probe_ip_and_the_submitter_but_not_loopback() -> None:
    m = {"probe_ip": "198.51.100.9", "test_keys": {"a": "198.51.100.9 2001:db8::5 127.0.0.1"}}
    out = scrub_submission(m, ["2001:db8::5"])
    assert out["probe_ip"] == PROBE_IP_PLACEHOLDER
    assert out["test_keys"]["a"] == f"{SCRUBBED} {SCRUBBED} 127.0.0.1"
    assert m["test_keys"]["a"] == "198.51.100.9 2001:db8::5 127.0.0.1"  # input untouched
    # A submitter on loopback, and a measurement the probe already scrubbed: nothing to do.
    again = scrub_submission(out, ["127.0.0.1", "::ffff:127.0.0.1", None])
    assert again == out and again is not out


def test_the_probe_scrubs_what_it_learned_even_on_loopback_but_never_the_unspecified() -> None:
    s = Scrubber({"127.0.0.1", "0.0.0.0", "::", "::ffff:127.0.0.1"}, interfaces=False)
    assert s.addresses == {"127.0.0.1"}
    assert s.text("you are 127.0.0.1 and ::ffff:7f00:1") == f"you are {SCRUBBED} and {SCRUBBED}"


def _spell_ipv6(value: int, rnd: random.Random) -> str:
    """A random valid spelling of the IPv6 address ``value``."""
    groups = [(value >> (112 - 16 * i)) & 0xFFFF for i in range(8)]
    dotted = rnd.random() < 0.3
    if dotted:
        tail = str(ipaddress.IPv4Address(value & 0xFFFFFFFF))
        groups = groups[:6]
    words = []
    for g in groups:
        word = f"{g:x}".rjust(rnd.choice([1, 2, 3, 4]), "0")
        words.append(word.upper() if rnd.random() < 0.5 else word)
    zero_runs = [
        (i, j)
        for i in range(len(groups))
        for j in range(i + 1, len(groups) + 1)
        if not any(groups[i:j])
    ]
    if zero_runs and rnd.random() < 0.7:
        i, j = rnd.choice(zero_runs)
        text = ":".join(words[:i]) + "::" + ":".join(words[j:])
        if dotted:
            text += tail if j == len(groups) else ":" + tail
    else:
        text = ":".join(words) + (":" + tail if dotted else "")
    assert ipaddress.ip_address(text) == ipaddress.IPv6Address(value)
    return text


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(
        st.ip_addresses(v=4),
        st.ip_addresses(v=6).filter(lambda a: a.ipv4_mapped is None),
    ).filter(lambda a: not identifies_nobody(a)),
    st.randoms(use_true_random=False),
    st.sampled_from(CONTEXTS),
)
@pytest.mark.slow
def test_no_spelling_of_a_random_address_survives(address, rnd: random.Random, context) -> None:
    if isinstance(address, ipaddress.IPv4Address):
        wrapped = rnd.choice([None, 0xFFFF << 32, int(ipaddress.IPv6Address("64:ff9b::"))])
        spelling = str(address) if wrapped is None else _spell_ipv6(wrapped | int(address), rnd)
    else:
        spelling = _spell_ipv6(int(address), rnd)
    if rnd.random() < 0.2:
        spelling = spelling.replace(":", "%3A")
    text = context.format(spelling)
    expected = context.format(SCRUBBED)
    assert Scrubber({str(address)}, interfaces=False).text(text) == expected
    measurement = {"probe_ip": str(address), "test_keys": {"x": text}}
    assert scrub_submission(measurement, [])["test_keys"]["x"] == expected
