"""One special-address rule (``netinfo.is_special``), answered alike by every stage that asks.

The control refuses special targets (outside testbed mode), the probe warns about a special
control URL, the analysis calls special DNS answers bogons, and the collector's scrubber leaves
addresses that name nobody alone: all from the same rule.
"""

from __future__ import annotations

import ipaddress

import pytest

from censorwatch.control.service import ControlSettings, is_forbidden
from censorwatch.netinfo import AddressPlan, identifies_nobody, is_special
from censorwatch.probe import control_client
from censorwatch.probe.tls import TrustAnchors

SPECIAL = [
    "0.0.0.0",
    "0.1.2.3",
    "10.1.2.3",
    "100.64.0.1",  # shared address space (CGNAT)
    "100.127.255.254",
    "127.0.0.1",
    "127.77.1.1",
    "169.254.169.254",
    "172.16.5.4",
    "192.0.0.9",
    "192.0.2.10",  # documentation
    "192.168.1.1",
    "198.18.0.1",  # benchmarking
    "198.51.100.7",
    "203.0.113.5",
    "224.0.0.251",  # multicast
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "[::1]",
    "::ffff:127.0.0.1",  # IPv4-mapped: judged as the IPv4 address
    "::ffff:7f00:1",
    "::ffff:10.0.0.1",
    "64:ff9b::7f00:1",  # NAT64 of loopback
    "64:ff9b::10.0.0.1",
    "64:ff9b::a9fe:a9fe",  # NAT64 of the cloud metadata address
    "64:ff9b:1::808:808",  # local-use NAT64 prefix
    "2002:7f00:1::1",  # 6to4 of loopback
    "2002:c0a8:101::1",  # 6to4 of 192.168.1.1
    "100::1",  # discard-only
    "2001:db8::1",  # documentation
    "3fff::1",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "fe80::1%eth0",
    "fec0::1",
    "ff02::1",
]
PUBLIC = [
    "1.1.1.1",
    "8.8.8.8",
    "93.184.216.34",
    "100.128.0.1",  # just past 100.64.0.0/10
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",  # NAT64 of a public address
    "2002:808:808::1",  # 6to4 of a public address
    "2606:4700:4700::1111",
    "2a00:1450:4001:82b::200e",
]


@pytest.mark.parametrize("address", SPECIAL)
def test_special_addresses(address: str) -> None:
    assert is_special(address)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses(address: str) -> None:
    assert not is_special(address)


def test_text_that_is_no_address_is_an_error_not_an_answer() -> None:
    for text in ("", "example.com", "1.2.3", "999.1.1.1", "::g"):
        with pytest.raises(ValueError):
            is_special(text)


def test_public_ranges_of_an_address_plan_are_not_special() -> None:
    public = [ipaddress.ip_network("198.51.100.0/24"), ipaddress.ip_network("2001:db8:7::/48")]
    assert not is_special("198.51.100.7", public)
    assert not is_special("::ffff:198.51.100.7", public)
    assert not is_special("2001:db8:7::1", public)
    assert is_special("2001:db8:8::1", public)
    assert is_special("203.0.113.5", public)


def _settings(testbed: bool, public: list[str] | None = None) -> ControlSettings:
    plan = AddressPlan()
    plan.public_prefixes = [ipaddress.ip_network(p) for p in public or []]
    return ControlSettings(
        resolver=None, anchors=TrustAnchors(), plan=plan.freeze(), testbed=testbed
    )


@pytest.mark.parametrize("address", SPECIAL)
def test_every_user_of_the_rule_agrees_on_special_addresses(address: str) -> None:
    plan = AddressPlan().freeze()
    bare = address.strip("[]")
    assert is_forbidden(bare, _settings(testbed=False))
    assert not is_forbidden(bare, _settings(testbed=True))  # the testbed's exception
    assert plan.is_bogon(bare)
    host = f"[{bare.split('%')[0]}]" if ":" in bare else bare
    assert control_client.is_reserved_host(f"https://{host}/")


@pytest.mark.parametrize("address", PUBLIC)
def test_every_user_of_the_rule_agrees_on_public_addresses(address: str) -> None:
    plan = AddressPlan().freeze()
    assert not is_forbidden(address, _settings(testbed=False))
    assert not plan.is_bogon(address)
    host = f"[{address}]" if ":" in address else address
    assert not control_client.is_reserved_host(f"https://{host}/")


def test_the_users_keep_their_own_answers_for_what_is_no_address() -> None:
    assert is_forbidden("not-an-ip", _settings(testbed=False))  # refuse what cannot be judged
    assert not AddressPlan().freeze().is_bogon("not-an-ip")
    assert control_client.is_reserved_host("https://localhost:8443/")
    assert not control_client.is_reserved_host("https://control.example/")


def test_the_control_allows_the_testbed_plans_public_ranges() -> None:
    settings = _settings(testbed=False, public=["198.51.100.0/24"])
    assert not is_forbidden("198.51.100.7", settings)
    assert is_forbidden("203.0.113.7", settings)


def test_addresses_that_identify_nobody() -> None:
    for address in ("127.0.0.1", "::1", "::ffff:127.0.0.1", "0.0.0.0", "::", "junk"):
        assert identifies_nobody(address)
    for address in ("10.0.0.1", "198.51.100.9", "2001:db8::7", "::ffff:198.51.100.9"):
        assert not identifies_nobody(address)
