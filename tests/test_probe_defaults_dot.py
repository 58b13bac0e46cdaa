"""The ``[dns] dot`` list of the probe's defaults: its spelling, its checks, its override, and
that the testbed serves every shipped entry under the name its certificate must carry."""

from __future__ import annotations

from pathlib import Path

import pytest

from censorwatch.probe import defaults
from censorwatch.probe.defaults import DoTResolver
from censorwatch.testbed import plan as testbed_plan


@pytest.fixture
def shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> defaults.ProbeDefaults:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-user-config"))
    return defaults.load(None)


def test_the_shipped_list_names_three_operators_by_address_and_name(shipped):
    assert len(shipped.dot_resolvers) == 3
    assert all(r.port == 853 for r in shipped.dot_resolvers)
    operators = {r.name.split(".")[-2] for r in shipped.dot_resolvers}
    assert len(operators) == 3
    # each is served by the testbed at that address, with a certificate for that name
    served = {
        address: name for address, (name, _asn, _org) in testbed_plan.PUBLIC_RESOLVERS.items()
    }
    assert {r.address: r.name for r in shipped.dot_resolvers} == served


@pytest.mark.parametrize(
    ("spelling", "parsed"),
    [
        ("9.9.9.9#dns.quad9.net", DoTResolver("9.9.9.9", 853, "dns.quad9.net")),
        ("1.1.1.1:8853#One.One.One.One.", DoTResolver("1.1.1.1", 8853, "one.one.one.one")),
        ("[2001:db8::53]:853#dns.example", DoTResolver("2001:db8::53", 853, "dns.example")),
        ("2001:db8::53#dns.example", DoTResolver("2001:db8::53", 853, "dns.example")),
    ],
)
def test_each_spelling_parses_and_prints_back(spelling: str, parsed: DoTResolver):
    assert DoTResolver.parse(spelling) == parsed
    assert DoTResolver.parse(str(parsed)) == parsed


def test_a_file_replaces_the_list(tmp_path: Path, shipped):
    user = tmp_path / "probe.toml"
    user.write_text('[dns]\ndot = ["192.0.2.53:8853#dns.testbed.example"]\n')
    mine = defaults.load(user)
    assert mine.dot_resolvers == (DoTResolver("192.0.2.53", 8853, "dns.testbed.example"),)
    assert mine.doh_urls == shipped.doh_urls and mine.udp_resolvers == shipped.udp_resolvers
    user.write_text("[dns]\ndot = []\n")
    assert defaults.load(user).dot_resolvers == ()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("8.8.8.8", "is not ADDRESS"),  # no name: the certificate could not be checked
        ("dns.google#dns.google", "is not an IP address"),  # a name would need a resolver
        ("8.8.8.8:0#dns.google", "is not a port"),
        ("8.8.8.8#not a name", "is not ADDRESS"),
        ("[2001:db8::53]853#dns.example", "is not ADDRESS"),
    ],
)
def test_a_bad_entry_names_the_file_and_the_key(tmp_path: Path, entry: str, message: str):
    path = tmp_path / "probe.toml"
    path.write_text(f'[dns]\ndot = ["{entry}"]\n')
    with pytest.raises(defaults.ConfigFileError, match=message) as caught:
        defaults.load(path)
    assert str(path) in str(caught.value) and "[dns] dot" in str(caught.value)
