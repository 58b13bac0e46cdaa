"""The one failure vocabulary: every OS or protocol error becomes a stable OONI failure string.

Probe, control and analysis all speak these strings, so a measurement made here reads the same
as one made by OONI Probe, and the analysis can compare the two.
"""

from __future__ import annotations

import errno
import socket
import ssl

import dns.exception
import dns.resolver

# OONI failure strings (ooni/spec data-formats/df-007-errors.md).
CONNECTION_REFUSED = "connection_refused"
CONNECTION_RESET = "connection_reset"
CONNECTION_ABORTED = "connection_aborted"
GENERIC_TIMEOUT = "generic_timeout_error"
EOF_ERROR = "eof_error"
HOST_UNREACHABLE = "host_unreachable"
NETWORK_UNREACHABLE = "network_unreachable"
DNS_NXDOMAIN = "dns_nxdomain_error"
DNS_NO_ANSWER = "dns_no_answer"
DNS_REFUSED = "dns_refused_error"
DNS_SERVER_MISBEHAVING = "dns_server_misbehaving"
DNS_BOGON = "dns_bogons_error"
SSL_INVALID_HOSTNAME = "ssl_invalid_hostname"
SSL_UNKNOWN_AUTHORITY = "ssl_unknown_authority"
SSL_INVALID_CERTIFICATE = "ssl_invalid_certificate"
SSL_FAILED_HANDSHAKE = "ssl_failed_handshake"
HTTP_INVALID_REDIRECT = "http_invalid_redirect_location_host"
HTTP_TOO_MANY_REDIRECTS = "stopped_after_10_redirects"
HTTP_PROTOCOL_ERROR = "http_protocol_error"
INTERRUPTED = "interrupted"
UNKNOWN = "unknown_failure"

_ERRNO_FAILURES = {
    errno.ECONNREFUSED: CONNECTION_REFUSED,
    errno.ECONNRESET: CONNECTION_RESET,
    errno.ECONNABORTED: CONNECTION_ABORTED,
    errno.ETIMEDOUT: GENERIC_TIMEOUT,
    errno.EHOSTUNREACH: HOST_UNREACHABLE,
    errno.ENETUNREACH: NETWORK_UNREACHABLE,
    errno.EPIPE: CONNECTION_RESET,
}


def classify(exc: BaseException) -> str:
    """Map an exception raised by a network step to one OONI failure string."""
    if isinstance(exc, TimeoutError | socket.timeout | dns.exception.Timeout):
        return GENERIC_TIMEOUT
    if isinstance(exc, dns.resolver.NXDOMAIN):
        return DNS_NXDOMAIN
    if isinstance(exc, dns.resolver.NoAnswer):
        return DNS_NO_ANSWER
    if isinstance(exc, dns.resolver.NoNameservers):
        return DNS_SERVER_MISBEHAVING
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _classify_cert_error(exc)
    if isinstance(exc, ssl.SSLEOFError):
        return EOF_ERROR
    if isinstance(exc, ssl.SSLError):
        return SSL_FAILED_HANDSHAKE
    if isinstance(exc, ConnectionResetError):
        return CONNECTION_RESET
    if isinstance(exc, ConnectionRefusedError):
        return CONNECTION_REFUSED
    if isinstance(exc, ConnectionAbortedError):
        return CONNECTION_ABORTED
    if isinstance(exc, EOFError):
        return EOF_ERROR
    if isinstance(exc, OSError) and exc.errno in _ERRNO_FAILURES:
        return _ERRNO_FAILURES[exc.errno]
    if isinstance(exc, OSError) and exc.errno is None and "reset" in str(exc).lower():
        return CONNECTION_RESET
    return f"{UNKNOWN}: {type(exc).__name__}: {exc}"[:200]


def _classify_cert_error(exc: ssl.SSLCertVerificationError) -> str:
    message = (exc.verify_message or str(exc)).lower()
    if "hostname mismatch" in message or "ip address mismatch" in message:
        return SSL_INVALID_HOSTNAME
    if (
        "unable to get local issuer" in message
        or "self-signed" in message
        or ("self signed" in message)
    ):
        return SSL_UNKNOWN_AUTHORITY
    return SSL_INVALID_CERTIFICATE


# censorwatch additions (not OONI strings; prefixed like every censorwatch extension).
#: The control service refused to contact an address a user could abuse it for.
CONTROL_REFUSED_ADDRESS = "x_refused_reserved_address"
#: The response head exceeded the probe's byte budget for headers.
HTTP_HEADERS_TOO_LARGE = "x_http_headers_too_large"
#: No control service was configured for the measurement.
CONTROL_NOT_CONFIGURED = "x_control_not_configured"
#: The control stayed busy (503/429) for the whole control budget.
CONTROL_BUSY = "x_control_busy"
#: The control answered with an HTTP error status other than "busy".
CONTROL_HTTP_ERROR = "x_control_http_error"
#: Geolocation (``annotations.x_geolocation.failure``): why the probe does not know where it is.
GEOLOCATION_NO_STUN_SERVER = "x_geolocation_no_stun_server"
GEOLOCATION_STUN_FAILED = "x_geolocation_stun_failed"
GEOLOCATION_STUN_DISAGREE = "x_geolocation_stun_disagree"
GEOLOCATION_NOT_IN_DATABASE = "x_geolocation_not_in_database"
GEOLOCATION_PARTIAL = "x_geolocation_partial"
GEOLOCATION_NO_DATABASE = "x_geolocation_no_database"

# The legacy test-helper spellings OONI's control still answers with (oohelperd keeps them so
# that old probes read new controls); the control service speaks these in its responses.
TH_DNS_NAME_ERROR = "dns_name_error"
TH_DNS_SERVER_FAILURE = "dns_server_failure"
TH_DNS_LOOKUP_ERROR = "dns_lookup_error"
TH_CONNECTION_REFUSED = "connection_refused_error"
TH_UNKNOWN = "unknown_error"
