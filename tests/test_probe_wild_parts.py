"""The parts of a probe on the real internet, on loopback: STUN, the defaults file, check-in."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from censorwatch import failures
from censorwatch.collector import checkin as collector_checkin
from censorwatch.control import stun_server
from censorwatch.probe import checkin, defaults, geolocate, stun
from censorwatch.probe.config import ProbeConfig

# RFC 5769 §2.2/§2.3: the transaction id of the sample responses and their encoded
# XOR-MAPPED-ADDRESS values for 192.0.2.1:32853 and 2001:db8:1234:5678:11:2233:4455:6677:32853.
RFC5769_TID = bytes.fromhex("b7e7a701bc34d686fa87dfae")
RFC5769_V4 = bytes.fromhex("0001a147e112a643")
RFC5769_V6 = bytes.fromhex("0002a1470113a9faa5d3f179bc25f4b5bed2b9d9")


def test_xor_mapped_address_matches_the_rfc_5769_vectors():
    assert stun.xor_address("192.0.2.1", 32853, RFC5769_TID) == RFC5769_V4
    v6 = "2001:db8:1234:5678:11:2233:4455:6677"
    assert stun.xor_address(v6, 32853, RFC5769_TID) == RFC5769_V6
    for value, expected in ((RFC5769_V4, "192.0.2.1"), (RFC5769_V6, v6)):
        message = stun.Message(
            stun.BINDING_SUCCESS, RFC5769_TID, [(stun.ATTR_XOR_MAPPED_ADDRESS, value)]
        )
        assert stun.mapped_address(stun.decode(stun.encode(message))) == (expected, 32853)


def test_decode_rejects_damaged_messages():
    wire = stun.encode(stun.binding_request(RFC5769_TID))
    assert stun.decode(wire).transaction_id == RFC5769_TID
    flipped = wire[:-1] + bytes([wire[-1] ^ 1])
    with pytest.raises(stun.StunError, match="FINGERPRINT"):
        stun.decode(flipped)
    with pytest.raises(stun.StunError, match="magic cookie"):
        stun.decode(wire[:4] + b"\0\0\0\0" + wire[8:])
    with pytest.raises(stun.StunError, match="length"):
        stun.decode(wire[:-4])
    with pytest.raises(stun.StunError, match="shorter"):
        stun.decode(b"\0\1")
    error = stun.Message(stun.BINDING_ERROR, RFC5769_TID, [(stun.ATTR_ERROR_CODE, b"\0\0\4\0")])
    with pytest.raises(stun.StunError, match="error 400"):
        stun.mapped_address(error)


def _silent_udp_port() -> tuple[socket.socket, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()[1]


@pytest.mark.slow
def test_the_client_learns_its_address_from_the_server_and_skips_a_silent_one():
    async def scenario() -> tuple[tuple[str, int], tuple[str | None, int, str | None], int]:
        transport, responder = await stun_server.serve("127.0.0.1", 0)
        port = transport.get_extra_info("sockname")[1]
        silent, silent_port = _silent_udp_port()
        try:
            mapped, _server = await stun.query("127.0.0.1", port, timeout=2)
            found = await geolocate.public_address(
                [f"127.0.0.1:{port}", f"127.0.0.1:{silent_port}"], timeout=1
            )
            # Garbage is ignored by the server, not answered.
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            probe.sendto(b"GET / HTTP/1.1\r\n\r\n", ("127.0.0.1", port))
            probe.close()
            await asyncio.sleep(0.1)
            return mapped, found, responder.ignored
        finally:
            transport.close()
            silent.close()

    mapped, (address, answers, failure), ignored = asyncio.run(scenario())
    assert mapped[0] == "127.0.0.1" and mapped[1] > 0
    assert (address, answers, failure) == ("127.0.0.1", 1, None)
    assert ignored == 1


@pytest.mark.slow
def test_no_stun_answer_is_a_named_failure_not_a_guess():
    silent, port = _silent_udp_port()
    try:
        found = asyncio.run(geolocate.public_address([f"127.0.0.1:{port}"], timeout=0.6))
    finally:
        silent.close()
    assert found == (None, 0, failures.GEOLOCATION_STUN_FAILED)
    loc = geolocate.locate(ProbeConfig().plan, None, geolocate.METHOD_STUN)
    assert (loc.asn, loc.cc, loc.known) == ("AS0", "ZZ", False)


def test_shipped_defaults_have_several_operators_and_a_file_overrides_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-user-config"))
    shipped = defaults.load(None)
    assert len(shipped.udp_resolvers) >= 2 and len(shipped.doh_urls) >= 2
    operators = {u.split("/")[2].split(".")[-2] for u in shipped.doh_urls}
    assert len(operators) >= 2
    assert len(shipped.control_urls) >= 2 and shipped.stun_servers and shipped.reference_url
    user = tmp_path / "probe.toml"
    user.write_text('[dns]\nudp = ["192.0.2.8:53"]\n[control]\nurls = ["https://c.example/"]\n')
    mine = defaults.load(user)
    assert mine.udp_resolvers == ("192.0.2.8:53",) and mine.doh_urls == shipped.doh_urls
    cfg = ProbeConfig.from_env(env={}, defaults=mine)
    assert cfg.udp_resolver == ("192.0.2.8", 53) and cfg.control_url == "https://c.example/"
    assert cfg.doh_url == shipped.doh_urls[0] and cfg.locate
    named = ProbeConfig.from_env(env={}, defaults=shipped, control_url="https://n.example/")
    assert named.controls == ["https://n.example/"]  # a named control stands alone
    testbed = ProbeConfig.from_env(env={"CENSORWATCH_TESTBED": "x"}, defaults=shipped)
    assert testbed.udp_resolver is None and testbed.stun_servers == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[dns]\nudp = 8\n", "must be a list of strings"),
        ("[dnz]\n", "unknown table"),
        ("[dns]\nudb = []\n", "has no key 'udb'"),
        ('[dns]\ndoh = ["http://plain.example/"]\n', "not an https:// URL"),
        ('[geolocation]\nstun = ["stun.example"]\n', "not HOST:PORT"),
        ('[geolocation]\npublic_prefixes = ["300.0.0.0/8"]\n', "not an address prefix"),
        ("[dns\n", "not valid TOML"),
    ],
)
def test_a_bad_config_file_names_the_file_and_the_key(tmp_path: Path, text: str, message: str):
    path = tmp_path / "probe.toml"
    path.write_text(text)
    with pytest.raises(defaults.ConfigFileError, match=message) as caught:
        defaults.load(path)
    assert str(path) in str(caught.value)


def test_check_in_request_is_checked_and_reported_targets_come_first():
    with pytest.raises(collector_checkin.CheckinError, match="on_wifi"):
        collector_checkin.parse_request(b'{"on_wifi": "yes"}')
    with pytest.raises(collector_checkin.CheckinError, match="JSON object"):
        collector_checkin.parse_request(b"[1]")
    body = collector_checkin.parse_request(b'{"software_name": "censorwatch", "charging": true}')
    reported = "https://reported.example/"
    urls = collector_checkin.test_list("PK", "AS17557", None, [reported])
    assert urls[0]["url"] == reported and len({u["url"] for u in urls}) == len(urls)
    assert any(u["url"].startswith("https://x.com") for u in urls)
    answer = collector_checkin.answer(body, ("AS17557", "PTCL", "PK"), [reported])
    parsed = checkin.parse_response("https://svc.example/", answer)
    assert (parsed.asn, parsed.cc, parsed.network_name) == ("AS17557", "PK", "PTCL")
    assert parsed.targets[0].url == reported and parsed.controls
    social = collector_checkin.test_list("PK", "AS17557", ["GRP"], [])
    assert social and all(u["category_code"] in ("GRP", "MISC") for u in social)
