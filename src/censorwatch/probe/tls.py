"""TLS handshakes that always record what the server sent, then judge it separately.

The handshake itself runs *without* verification so that a forged or misissued certificate is
still captured (base64 DER chain) as evidence; the chain and the name are then verified
against the probe's trust anchors, and a failure becomes ``ssl_unknown_authority``,
``ssl_invalid_hostname`` or ``ssl_invalid_certificate``, exactly as a browser would fail.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import ssl
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.verification import (
    DNSName,
    IPAddress,
    PolicyBuilder,
    Store,
    VerificationError,
)

from censorwatch import failures
from censorwatch.probe.tcp import TCPResult, endpoint

#: An innocuous name offered instead of the real one, to tell SNI filtering from IP blocking.
DECOY_SNI = "example.org"
MAX_CHAIN = 10


class TrustAnchors:
    """The certificates the probe trusts, usable by both ``cryptography`` and ``ssl``."""

    def __init__(self, cafile: str | Path | None = None, *, system: bool = True) -> None:
        self.cafile = str(cafile) if cafile else None
        self.system = system or cafile is None
        certs: list[x509.Certificate] = []
        if self.cafile:
            certs += x509.load_pem_x509_certificates(Path(self.cafile).read_bytes())
        if self.system:
            paths = ssl.get_default_verify_paths()
            for candidate in (paths.cafile, paths.openssl_cafile):
                if candidate and Path(candidate).is_file():
                    try:
                        with warnings.catch_warnings():
                            # some long-lived roots carry non-positive serial numbers
                            warnings.simplefilter("ignore")
                            certs += x509.load_pem_x509_certificates(Path(candidate).read_bytes())
                    except ValueError:
                        continue
                    break
        self.certificates = certs
        self._store = Store(certs) if certs else None
        self._context: ssl.SSLContext | None = None

    def ssl_context(self) -> ssl.SSLContext:
        """A verifying client context (for DoH and the control) over the same anchors."""
        if self._context is None:
            ctx = (
                ssl.create_default_context()
                if self.system
                else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            )
            if self.cafile:
                ctx.load_verify_locations(self.cafile)
            self._context = ctx
        return self._context

    def verify(self, chain: list[x509.Certificate], server_name: str) -> str | None:
        """None when ``chain`` is valid for ``server_name``, else the OONI failure string."""
        if not chain:
            return failures.SSL_INVALID_CERTIFICATE
        if self._store is None:
            return failures.SSL_UNKNOWN_AUTHORITY
        leaf, intermediates = chain[0], chain[1:]
        now = dt.datetime.now(dt.UTC)
        if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
            return failures.SSL_INVALID_CERTIFICATE
        builder = PolicyBuilder().store(self._store).time(now)
        own_name = _first_name(leaf)
        if own_name is None:
            return failures.SSL_INVALID_CERTIFICATE
        try:
            builder.build_server_verifier(own_name).verify(leaf, intermediates)
        except VerificationError:
            return failures.SSL_UNKNOWN_AUTHORITY
        try:
            builder.build_server_verifier(_subject(server_name)).verify(leaf, intermediates)
        except VerificationError:
            return failures.SSL_INVALID_HOSTNAME
        return None


def _subject(name: str) -> DNSName | IPAddress:
    try:
        return IPAddress(ipaddress.ip_address(name.strip("[]")))
    except ValueError:
        return DNSName(name)


def _first_name(cert: x509.Certificate) -> DNSName | IPAddress | None:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for name in san.get_values_for_type(x509.DNSName):
        return DNSName(name.replace("*.", "wildcard-check.", 1))
    for ip in san.get_values_for_type(x509.IPAddress):
        return IPAddress(ip)
    return None


def handshake_context(alpn: list[str] | None = None) -> ssl.SSLContext:
    """A client context that completes any handshake: judging comes afterwards."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(alpn or ["http/1.1"])
    return ctx


@dataclass
class TLSResult:
    address: str
    server_name: str | None
    t0: float
    t: float = 0.0
    failure: str | None = None
    tls_version: str = ""
    cipher_suite: str = ""
    negotiated_protocol: str = ""
    chain_der: list[bytes] = field(default_factory=list)
    verification_failure: str | None = None  # set even if the handshake itself succeeded

    @property
    def ok(self) -> bool:
        return self.failure is None

    def to_entry(self, transaction_id: int, tags: list[str]) -> dict[str, Any]:
        return {
            "network": "tcp",
            "address": self.address,
            "cipher_suite": self.cipher_suite,
            "failure": self.failure,
            "negotiated_protocol": self.negotiated_protocol,
            "no_tls_verify": False,
            "peer_certificates": [
                {"format": "base64", "data": base64.b64encode(d).decode()} for d in self.chain_der
            ]
            or None,
            "server_name": self.server_name or "",
            "t0": round(self.t0, 6),
            "t": round(self.t, 6),
            "tags": tags,
            "tls_version": self.tls_version,
            "transaction_id": transaction_id,
        }


def _classify_handshake_error(exc: BaseException) -> str:
    # asyncio reports a clean close during the handshake as a bare ConnectionResetError
    # with no errno; a real RST carries ECONNRESET.
    if isinstance(exc, ConnectionResetError) and exc.errno is None and not exc.args:
        return failures.EOF_ERROR
    if isinstance(exc, ssl.SSLZeroReturnError):
        return failures.EOF_ERROR
    return failures.classify(exc)


def _cipher_name(ssl_object: ssl.SSLObject) -> str:
    """IANA names for TLS 1.3 suites; OpenSSL's names for older ones, as OpenSSL reports."""
    cipher = ssl_object.cipher()
    return cipher[0] if cipher else ""


def _peer_chain(ssl_object: ssl.SSLObject) -> list[bytes]:
    inner = getattr(ssl_object, "_sslobj", None)
    getter = getattr(ssl_object, "get_unverified_chain", None) or getattr(
        inner, "get_unverified_chain", None
    )
    if getter is not None:
        try:
            chain = getter() or []
            return [c.public_bytes(ssl._ssl.ENCODING_DER) for c in chain][:MAX_CHAIN]  # type: ignore[attr-defined]
        except (AttributeError, ValueError, ssl.SSLError):
            pass
    leaf = ssl_object.getpeercert(binary_form=True)
    return [leaf] if leaf else []


async def handshake(
    conn: TCPResult,
    server_name: str | None,
    *,
    clock: float,
    timeout: float,
    anchors: TrustAnchors,
    verify_name: str | None = None,
    alpn: list[str] | None = None,
) -> TLSResult:
    """Run a TLS handshake over an open connection; on success the connection is TLS.

    ``server_name`` is what goes into the SNI (None: no SNI); ``verify_name`` is the name the
    certificate must be valid for (defaults to ``server_name``).
    """
    result = TLSResult(endpoint(conn.ip, conn.port), server_name, time.monotonic() - clock)
    if conn.writer is None:
        result.failure = conn.failure or failures.UNKNOWN
        return result
    try:
        async with asyncio.timeout(timeout):
            await conn.writer.start_tls(
                handshake_context(alpn), server_hostname=server_name, ssl_handshake_timeout=timeout
            )
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        result.failure = _classify_handshake_error(exc)
        result.t = time.monotonic() - clock
        conn.close()
        return result
    result.t = time.monotonic() - clock
    ssl_object: ssl.SSLObject = conn.writer.get_extra_info("ssl_object")
    result.tls_version = ssl_object.version() or ""
    result.cipher_suite = _cipher_name(ssl_object)
    result.negotiated_protocol = ssl_object.selected_alpn_protocol() or ""
    result.chain_der = _peer_chain(ssl_object)
    name = verify_name or server_name
    if name:
        try:
            chain = [x509.load_der_x509_certificate(d) for d in result.chain_der]
        except ValueError:
            chain = []
        result.verification_failure = anchors.verify(chain, name)
        result.failure = result.verification_failure
    return result
