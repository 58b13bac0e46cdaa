"""STUN Binding (RFC 8489): ask a server which address and port our UDP packets come from.

The probe needs its public address only to look up its own network and country; a STUN
server answers that without learning anything about the run (no test list, no results). Only
the part of the protocol this needs is here: a Binding request with a FINGERPRINT, and the
success response's XOR-MAPPED-ADDRESS (or the classic MAPPED-ADDRESS of RFC 3489 servers).
The same codec answers in the testbed's STUN server.
"""

from __future__ import annotations

import asyncio
import binascii
import ipaddress
import secrets
import struct
from dataclasses import dataclass, field

MAGIC_COOKIE = 0x2112A442
HEADER = struct.Struct("!HHI12s")
BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
BINDING_ERROR = 0x0111

ATTR_MAPPED_ADDRESS = 0x0001
ATTR_ERROR_CODE = 0x0009
ATTR_XOR_MAPPED_ADDRESS = 0x0020
ATTR_SOFTWARE = 0x8022
ATTR_FINGERPRINT = 0x8028
FINGERPRINT_XOR = 0x5354554E

FAMILY_IPV4 = 0x01
FAMILY_IPV6 = 0x02

#: A response is one UDP datagram; anything longer is not a Binding response we need.
MAX_MESSAGE = 1500


class StunError(ValueError):
    """Bytes that are not a STUN message we can use; the message says why."""


@dataclass
class Message:
    """One STUN message: its type, transaction id and attributes (type → raw value)."""

    message_type: int
    transaction_id: bytes
    attributes: list[tuple[int, bytes]] = field(default_factory=list)

    def get(self, attr_type: int) -> bytes | None:
        for kind, value in self.attributes:
            if kind == attr_type:
                return value
        return None


def _pad(value: bytes) -> bytes:
    return value + b"\0" * (-len(value) % 4)


def encode(message: Message, *, fingerprint: bool = True) -> bytes:
    """The message on the wire, with a FINGERPRINT attribute last (RFC 8489 §14.7)."""
    body = b"".join(
        struct.pack("!HH", kind, len(value)) + _pad(value) for kind, value in message.attributes
    )
    length = len(body) + (8 if fingerprint else 0)
    head = HEADER.pack(message.message_type, length, MAGIC_COOKIE, message.transaction_id)
    wire = head + body
    if fingerprint:
        crc = (binascii.crc32(wire) ^ FINGERPRINT_XOR) & 0xFFFFFFFF
        wire += struct.pack("!HHI", ATTR_FINGERPRINT, 4, crc)
    return wire


def decode(wire: bytes) -> Message:
    """Parse and check a message: header, cookie, lengths, and FINGERPRINT when present."""
    if len(wire) < HEADER.size:
        raise StunError(f"{len(wire)} bytes: shorter than a STUN header")
    if len(wire) > MAX_MESSAGE:
        raise StunError(f"{len(wire)} bytes: longer than one STUN datagram")
    message_type, length, cookie, tid = HEADER.unpack_from(wire)
    if message_type & 0xC000:
        raise StunError("the first two bits are not zero: not STUN")
    if cookie != MAGIC_COOKIE:
        raise StunError("no magic cookie: not an RFC 8489 STUN message")
    if length % 4 or HEADER.size + length != len(wire):
        raise StunError(f"message length {length} does not match the {len(wire)} bytes received")
    message = Message(message_type, tid)
    offset = HEADER.size
    while offset < len(wire):
        if offset + 4 > len(wire):
            raise StunError("truncated attribute header")
        kind, size = struct.unpack_from("!HH", wire, offset)
        start, end = offset + 4, offset + 4 + size
        if end > len(wire):
            raise StunError(f"attribute 0x{kind:04x} runs past the end of the message")
        value = wire[start:end]
        if kind == ATTR_FINGERPRINT:
            if size != 4 or end != len(wire):
                raise StunError("FINGERPRINT must be the last attribute and 4 bytes long")
            expected = (binascii.crc32(wire[:offset]) ^ FINGERPRINT_XOR) & 0xFFFFFFFF
            if struct.unpack("!I", value)[0] != expected:
                raise StunError("FINGERPRINT does not match the message")
        message.attributes.append((kind, value))
        offset = end + (-size % 4)
    return message


def binding_request(transaction_id: bytes | None = None) -> Message:
    """A Binding request with a fresh 96-bit transaction id (RFC 8489 §6)."""
    return Message(BINDING_REQUEST, transaction_id or secrets.token_bytes(12))


def xor_address(ip: str, port: int, transaction_id: bytes) -> bytes:
    """The XOR-MAPPED-ADDRESS value for ``ip:port`` (RFC 8489 §14.2)."""
    addr = ipaddress.ip_address(ip)
    family = FAMILY_IPV4 if addr.version == 4 else FAMILY_IPV6
    mask = struct.pack("!I", MAGIC_COOKIE) + (transaction_id if addr.version == 6 else b"")
    raw = bytes(a ^ b for a, b in zip(addr.packed, mask, strict=True))
    return struct.pack("!BBH", 0, family, port ^ (MAGIC_COOKIE >> 16)) + raw


def _address(value: bytes, transaction_id: bytes, *, xored: bool) -> tuple[str, int]:
    if len(value) < 4:
        raise StunError("address attribute too short")
    _, family, port = struct.unpack_from("!BBH", value)
    size = {FAMILY_IPV4: 4, FAMILY_IPV6: 16}.get(family)
    if size is None or len(value) != 4 + size:
        raise StunError(f"address attribute of family {family} and {len(value)} bytes")
    raw = value[4:]
    if xored:
        port ^= MAGIC_COOKIE >> 16
        mask = struct.pack("!I", MAGIC_COOKIE) + (transaction_id if size == 16 else b"")
        raw = bytes(a ^ b for a, b in zip(raw, mask, strict=True))
    return str(ipaddress.ip_address(raw)), port


def mapped_address(message: Message) -> tuple[str, int]:
    """The reflexive address a success response carries (XOR-MAPPED-ADDRESS preferred)."""
    if message.message_type == BINDING_ERROR:
        code = message.get(ATTR_ERROR_CODE) or b"\0\0\0\0"
        number = (code[2] & 0x07) * 100 + code[3] if len(code) >= 4 else 0
        raise StunError(f"the server answered error {number}")
    if message.message_type != BINDING_SUCCESS:
        raise StunError(f"message type 0x{message.message_type:04x} is no Binding response")
    xored = message.get(ATTR_XOR_MAPPED_ADDRESS)
    if xored is not None:
        return _address(xored, message.transaction_id, xored=True)
    plain = message.get(ATTR_MAPPED_ADDRESS)
    if plain is not None:
        return _address(plain, message.transaction_id, xored=False)
    raise StunError("the response carries no mapped address")


def binding_response(request: Message, peer: tuple[str, int], software: str = "") -> Message:
    """What a server answers: the peer's address as XOR-MAPPED-ADDRESS."""
    attrs = [(ATTR_XOR_MAPPED_ADDRESS, xor_address(peer[0], peer[1], request.transaction_id))]
    if software:
        attrs.append((ATTR_SOFTWARE, software.encode()[:128]))
    return Message(BINDING_SUCCESS, request.transaction_id, attrs)


# -- the client ----------------------------------------------------------------------------------


class _Exchange(asyncio.DatagramProtocol):
    def __init__(self, transaction_id: bytes) -> None:
        self.transaction_id = transaction_id
        self.answer: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self.problem: str | None = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            message = decode(data[: MAX_MESSAGE + 1])
        except StunError as exc:
            self.problem = str(exc)  # keep listening: a stray datagram is not the answer
            return
        if message.transaction_id == self.transaction_id and not self.answer.done():
            self.answer.set_result(message)

    def error_received(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)


async def query(
    host: str, port: int, *, timeout: float = 3.0, retransmit: float = 0.5
) -> tuple[tuple[str, int], tuple[str, int]]:
    """Ask one server; returns (our mapped address, the server address used).

    The request is sent again (RFC 8489 §6.2.1 doubles the wait) until an answer or
    ``timeout``. Raises TimeoutError, OSError or :class:`StunError`.
    """
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=2)  # SOCK_DGRAM
    if not infos:
        raise OSError(f"{host}: no address")
    family, _, _, _, server = infos[0]
    request = binding_request()
    wire = encode(request)
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: _Exchange(request.transaction_id), family=family
    )
    try:
        async with asyncio.timeout(timeout):
            wait = retransmit
            while True:
                transport.sendto(wire, server)
                done, _ = await asyncio.wait({protocol.answer}, timeout=wait)
                if done:
                    break
                wait *= 2
        answer = protocol.answer.result()
    except TimeoutError:
        raise TimeoutError(protocol.problem or f"no STUN answer from {host}:{port}") from None
    finally:
        transport.close()
    return mapped_address(answer), (str(server[0]), int(server[1]))


__all__ = [
    "Message",
    "StunError",
    "binding_request",
    "binding_response",
    "decode",
    "encode",
    "mapped_address",
    "query",
    "xor_address",
]
