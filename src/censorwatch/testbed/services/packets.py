"""Reading just enough of a packet's payload to decide, like a middlebox does."""

from __future__ import annotations

import struct


def tls_client_hello_sni(payload: bytes) -> str | None:
    """The server name of a TLS ClientHello, or None if this is not one (or it has none)."""
    try:
        if len(payload) < 6 or payload[0] != 0x16 or payload[5] != 0x01:
            return None
        pos = 5 + 4  # record header, handshake header
        pos += 2 + 32  # client version, random
        pos += 1 + payload[pos]  # session id
        (n,) = struct.unpack_from("!H", payload, pos)
        pos += 2 + n  # cipher suites
        pos += 1 + payload[pos]  # compression methods
        (ext_total,) = struct.unpack_from("!H", payload, pos)
        pos += 2
        end = min(len(payload), pos + ext_total)
        while pos + 4 <= end:
            ext_type, ext_len = struct.unpack_from("!HH", payload, pos)
            pos += 4
            if ext_type == 0:  # server_name
                list_pos = pos + 2
                while list_pos + 3 <= pos + ext_len:
                    name_type, name_len = struct.unpack_from("!BH", payload, list_pos)
                    list_pos += 3
                    if name_type == 0:
                        return payload[list_pos : list_pos + name_len].decode("ascii").lower()
                    list_pos += name_len
                return None
            pos += ext_len
    except (struct.error, IndexError, UnicodeDecodeError):
        return None
    return None


def http_request_host(payload: bytes) -> str | None:
    """The Host header of the start of an HTTP/1.x request, or None."""
    head = payload[:8192]
    first_line_end = head.find(b"\r\n")
    if first_line_end < 0 or b" HTTP/1." not in head[:first_line_end]:
        return None
    for line in head[first_line_end + 2 :].split(b"\r\n"):
        if not line:
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"host":
            return value.strip().split(b":")[0].decode("latin-1").lower()
    return None


def name_matches(name: str, blocked: frozenset[str]) -> bool:
    """A name is blocked when it, or a parent domain of it, is on the list."""
    name = name.rstrip(".").lower()
    while name:
        if name in blocked:
            return True
        _, _, name = name.partition(".")
    return False
