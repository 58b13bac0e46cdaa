"""The probe's building blocks on their own: scrubbing, targets, configuration, trust."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from censorwatch import failures
from censorwatch.probe import config as probe_config
from censorwatch.probe.dns import format_hostport, parse_hostport
from censorwatch.probe.tls import TrustAnchors
from censorwatch.scrub import SCRUBBED, Scrubber
from censorwatch.targets import profiles, testlists
from censorwatch.testbed.pki import CertificateAuthority


def test_scrubber_replaces_whole_addresses_only():
    s = Scrubber({"10.1.2.3", "2001:db8::7"}, interfaces=False)
    out = s.scrub(
        {
            "body": "from 10.1.2.3, not 10.1.2.34 nor 110.1.2.3; v6 2001:DB8::7 here",
            "10.1.2.3:443": ["x 10.1.2.3", 5, None],
        }
    )
    assert out == {
        "body": f"from {SCRUBBED}, not 10.1.2.34 nor 110.1.2.3; v6 {SCRUBBED} here",
        f"{SCRUBBED}:443": [f"x {SCRUBBED}", 5, None],
    }


def test_scrubber_learns_from_sockets_but_not_from_connections_to_itself():
    import socket

    server = socket.socket()
    server.bind(("127.77.1.1", 0))
    server.listen(4)
    client = socket.socket()
    client.connect(server.getsockname())
    loop_server = socket.socket()
    loop_server.bind(("127.0.0.1", 0))
    loop_server.listen(1)
    self_conn = socket.socket()
    self_conn.connect(loop_server.getsockname())
    try:
        s = Scrubber(interfaces=False)
        s.learn(self_conn)  # 127.0.0.1 -> 127.0.0.1: the peer is the probe itself
        assert s.addresses == frozenset()
        s.learn(client)
        assert s.addresses == {"127.0.0.1"}
    finally:
        for sock in (server, client, loop_server, self_conn):
            sock.close()


def test_interface_addresses_are_scrubbed_by_default():
    s = Scrubber()
    assert all(not a.startswith("127.") for a in s.addresses)


def test_test_list_bad_rows_are_warned_with_file_and_line(tmp_path: Path):
    path = tmp_path / "list.csv"
    path.write_text(
        "url,category_code,category_description,date_added,source,notes\n"
        "https://x.com/,GRP,Social Networking,2017-01-01,citizenlab,\n"
        "ftp://files.example/,FILE,File sharing,2017-01-01,citizenlab,\n"
        "https://short.example/,GRP\n"
        "\n"
        "http://twitter.com/,GRP,Social Networking,2017-01-01,citizenlab,\n"
        "https://x.com/,GRP,Social Networking,2017-01-01,citizenlab,\n"
    )
    warnings: list[str] = []
    targets = testlists.load(path, warn=warnings.append)
    assert [t.url for t in targets] == ["https://x.com/", "http://twitter.com/"]
    assert targets[0].category_code == "GRP" and targets[0].source == f"{path}:2"
    assert len(warnings) == 2
    assert warnings[0].startswith(f"{path}:3: scheme must be http or https")
    assert warnings[1].startswith(f"{path}:4: expected 6 fields, found 2")


def test_real_citizen_lab_list_loads(shared_data: Path):
    warnings: list[str] = []
    targets = testlists.load(shared_data / "test-lists" / "pk.csv", warn=warnings.append)
    assert len(targets) > 600
    assert all(t.url.startswith(("http://", "https://")) for t in targets)
    assert len(targets) + len(warnings) <= 670


def test_profile_x_lists_every_endpoint():
    targets = profiles.load("x")
    hosts = [t.url.split("/")[2] for t in targets]
    assert hosts == [
        "x.com",
        "twitter.com",
        "api.x.com",
        "abs.twimg.com",
        "pbs.twimg.com",
        "video.twimg.com",
        "t.co",
    ]
    assert {t.url for t in targets if t.media} == {
        "https://pbs.twimg.com/",
        "https://video.twimg.com/",
    }
    with pytest.raises(ValueError, match="unknown profile"):
        profiles.load("nope")


def test_environment_contract_and_option_precedence(tmp_path: Path):
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("# comment\nsearch lan\nnameserver 192.0.2.53\nnameserver 192.0.2.54\n")
    assert probe_config.system_resolver(resolv) == ("192.0.2.53", 53)
    env = {
        "CENSORWATCH_CA": "/ca.pem",
        "CENSORWATCH_CONTROL": "https://192.0.2.80/",
        "CENSORWATCH_UDP_RESOLVER": "192.0.2.8:53",
        "CENSORWATCH_DOH_URL": "https://192.0.2.9/dns-query",
        "CENSORWATCH_PROBE_ASN": "as17557",
        "CENSORWATCH_PROBE_CC": "pk",
        "CENSORWATCH_PROBE_NETWORK_NAME": "PTCL",
        "CENSORWATCH_REFERENCE_URL": "https://ref.example/big.bin",
        "CENSORWATCH_TESTBED": "pk-2024-x",
    }
    cfg = probe_config.ProbeConfig.from_env(env=env, system_resolver_opt="192.0.2.2:5353")
    assert cfg.cafile == "/ca.pem" and cfg.control_url == "https://192.0.2.80/"
    assert cfg.udp_resolver == ("192.0.2.8", 53) and cfg.doh_url == "https://192.0.2.9/dns-query"
    assert (cfg.probe_asn, cfg.probe_cc, cfg.probe_network_name) == ("AS17557", "PK", "PTCL")
    assert cfg.reference_url == "https://ref.example/big.bin" and cfg.testbed == "pk-2024-x"
    assert cfg.system_resolver == ("192.0.2.2", 5353)
    override = probe_config.ProbeConfig.from_env(
        env=env, control_url="https://c.example/", probe_asn="AS9541"
    )
    assert override.control_url == "https://c.example/" and override.probe_asn == "AS9541"
    bare = probe_config.ProbeConfig.from_env(env={})
    assert bare.control_url is None and bare.udp_resolver is None and bare.doh_url is None
    assert bare.testbed is None and bare.probe_asn == "AS0"


def test_report_id_shape():
    rid = probe_config.make_report_id(datetime(2024, 2, 17, 9, 5, 1, tzinfo=UTC), "pk", "AS17557")
    assert re.fullmatch(r"20240217T090501Z_webconnectivity_PK_17557_n1_[A-Za-z0-9_-]{16}", rid)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("192.0.2.8", ("192.0.2.8", 53)),
        ("192.0.2.8:5353", ("192.0.2.8", 5353)),
        ("[2001:db8::1]:53", ("2001:db8::1", 53)),
        ("2001:db8::1", ("2001:db8::1", 53)),
    ],
)
def test_resolver_address_forms(text: str, parsed: tuple[str, int]):
    assert parse_hostport(text) == parsed
    assert parse_hostport(format_hostport(*parsed)) == parsed


def test_trust_anchors_judge_chains(tmp_path: Path):
    from cryptography import x509

    ca = CertificateAuthority.create()
    ca.save(tmp_path / "ca.pem", tmp_path / "ca.key")
    leaf = ca.issue(["a.test", "*.b.test"], ["127.0.0.9"], directory=tmp_path)
    chain = x509.load_pem_x509_certificates(leaf.certfile.read_bytes())
    rogue = CertificateAuthority.create("rogue").issue(["a.test"], directory=tmp_path, stem="rogue")
    rogue_chain = x509.load_pem_x509_certificates(rogue.certfile.read_bytes())
    anchors = TrustAnchors(tmp_path / "ca.pem", system=False)
    assert anchors.verify(chain, "a.test") is None
    assert anchors.verify(chain, "x.b.test") is None
    assert anchors.verify(chain, "127.0.0.9") is None
    assert anchors.verify(chain, "c.test") == failures.SSL_INVALID_HOSTNAME
    assert anchors.verify(rogue_chain, "a.test") == failures.SSL_UNKNOWN_AUTHORITY
    assert anchors.verify([], "a.test") == failures.SSL_INVALID_CERTIFICATE
    # the system store alone does not know the testbed CA
    assert TrustAnchors(None, system=True).verify(chain, "a.test") in (
        failures.SSL_UNKNOWN_AUTHORITY,
    )
