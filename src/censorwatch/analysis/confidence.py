"""Every confidence the analysis gives a verdict, named, in one place.

A confidence says how sure a verdict is, from 0 (no judgement) to 1. The figures follow one
scale (docs/verdicts.md): a censor's own fingerprint is near certainty; a failure the control
did not see is strong; a failure seen without a control, or only through an encrypted resolver's
second opinion, is weaker; a rule that reads only words or sizes is weakest. Adjustments
(``*_BONUS``, ``*_PENALTY``) are added to a base figure; the verdict record rounds the result
to two decimals and clamps it to [0, 1].
"""

from __future__ import annotations

#: No judgement: the verdict is ``unknown``.
NONE = 0.0

#: A blockpage or DNS answer that a fingerprint database attributes to a censor.
FINGERPRINT_MATCH = 0.99

# -- DNS -------------------------------------------------------------------------------------

#: The probe's lookup failed and the control's failed too: the name does not resolve anywhere.
DNS_DOWN = 0.85
#: The lookup returned NXDOMAIN (or Android's "no data") while the control resolved the name.
DNS_NXDOMAIN = 0.9
#: Any other lookup failure (timeout, refused, no answer) while the control resolved the name.
DNS_FAILURE = 0.8
#: Added when an encrypted resolver (DoH/DoT) on the probe's own network resolved the name.
DNS_ENCRYPTED_AGREES_BONUS = 0.05
#: A lookup failure never reaches more than this, whatever backs it.
DNS_FAILURE_MAX = 0.95
#: Taken off when only an encrypted resolver, not the control, says the name resolves.
DNS_NO_CONTROL_PENALTY = 0.2
#: Taken off a lookup failure seen inside the HTTP step (a redirect's host), not the DNS step.
DNS_IN_HTTP_PENALTY = 0.05
#: Both the probe and the control got private/bogon addresses: the site's own DNS is broken.
DNS_BOGON_DOWN = 0.7
#: A bogon answer where the control resolved the name to public addresses.
DNS_BOGON = 0.95
#: A bogon answer where only an encrypted resolver gave a public address.
DNS_BOGON_ENCRYPTED = 0.8
#: A second, different UDP answer raced the first (injection), with no control for the hop.
DNS_INJECTED_NO_CONTROL = 0.85
#: No address or AS overlap with an encrypted resolver's answer, with no control for the hop.
DNS_FORGED_ENCRYPTED = 0.7
#: The probe got addresses for a name the control could not resolve.
DNS_FORGED_CONTROL_FAILED = 0.85
#: No address or AS overlap with the control, and a second answer raced the first.
DNS_FORGED_INJECTED = 0.95
#: No address or AS overlap with the control.
DNS_FORGED = 0.8
#: ... and the probe's TLS handshake to that address failed certificate validation.
DNS_FORGED_BAD_CERT = 0.9

# -- TCP -------------------------------------------------------------------------------------

#: Every connect failed, and the control's connects to the same addresses failed too.
TCP_DOWN = 0.85
#: Connects failed; the control reached no page either (it did not test these addresses).
TCP_DOWN_CONTROL_HTTP = 0.6
#: Connects timed out where the control connected (a dropped SYN).
TCP_TIMEOUT = 0.8
#: Connects were reset or refused where the control connected.
TCP_RESET = 0.85
#: Connects failed in another way where the control connected.
TCP_OTHER = 0.6

# -- TLS -------------------------------------------------------------------------------------

#: Handshakes failed for the control too: the server is broken for everyone.
TLS_DOWN = 0.8
#: The handshake met a certificate that does not validate (interception).
TLS_MITM = 0.9
#: The handshake timed out.
TLS_TIMEOUT = 0.85
#: The handshake was reset or refused.
TLS_RESET = 0.9
#: The handshake failed in another way.
TLS_OTHER = 0.6
#: Added when the same address completes a handshake without the name (SNI filtering).
SNI_PROBE_WORKS_BONUS = 0.05
#: Added (negative) when the same address fails without the name too (the address is filtered).
SNI_PROBE_FAILS_BONUS = -0.05
#: Taken off when no control says the handshake works elsewhere (an SNI probe decided).
TLS_NO_CONTROL_PENALTY = 0.1

# -- HTTP ------------------------------------------------------------------------------------

#: A page no fingerprint knows, whose words say it is a block page (docs/verdicts.md).
HTTP_BLOCKPAGE_WORDS = 0.85
#: A server fault (unusable redirect) that the control saw too: the site is down.
HTTP_SERVER_FAULT_DOWN = 0.75
#: The redirect chain ended at a redirect no step followed, and the control failed as well.
HTTP_CHAIN_UNFINISHED_DOWN = 0.6
#: A request failed and the control failed to reach the page as well.
HTTP_DOWN = 0.7
#: The response started but its body stopped arriving before the time budget ran out.
HTTP_STALLED = 0.7
#: The request timed out where the control reached the page.
HTTP_TIMEOUT = 0.75
#: The connection was reset during the request where the control reached the page.
HTTP_RESET = 0.9
#: A TLS failure reported by the HTTP step itself (certificate or handshake).
HTTP_TLS_FAILURE = 0.7
#: The request failed in another way where the control reached the page.
HTTP_OTHER = 0.5

# -- the final page ------------------------------------------------------------------------

#: The plain-HTTP page is a known false positive (a captive portal, a parked domain...).
PAGE_KNOWN_FALSE_POSITIVE = 0.7
#: The plain-HTTP page differs strongly from the control's (status, size and title).
PAGE_DIFFERS = 0.7
#: The probe made no connection and the control could not reach the page either.
PAGE_NO_CONNECTION_DOWN = 0.6
#: Nothing broke; the control agrees and the page came over validated TLS.
OK_TLS_WITH_CONTROL = 0.9
#: Nothing broke; the control agrees, the page came over plain HTTP.
OK_WITH_CONTROL = 0.8
#: Nothing broke over validated TLS, but there is no control to compare with.
OK_TLS_NO_CONTROL = 0.75
#: Nothing broke over plain HTTP, and there is no control to compare with.
OK_NO_CONTROL = 0.6

# -- throughput and QUIC -------------------------------------------------------------------

#: Next to nothing arrived from the target within the budget while the reference host delivered.
THROTTLED_STARVED = 0.7
#: The target moved data at less than half the "throttled" ratio of the reference's rate.
THROTTLED_SEVERE = 0.9
#: The target moved data below the "throttled" ratio of the reference's rate.
THROTTLED = 0.75
#: Every QUIC handshake failed where the control completed one.
QUIC_BLOCKED_CONTROL = 0.75
#: Every QUIC handshake failed where the server advertises HTTP/3 (no control handshake).
QUIC_BLOCKED_ADVERTISED = 0.7

# -- OONI's other tests (analysis.nettests; docs/verdicts.md "Other tests") ----------------
# These tests have no control: the app's own servers are the reference, and OONI's fastpath
# rule decides blocked/ok. The figures sit below web_connectivity's for the same failure.

#: Every endpoint the app needs (or its registration/web front) answered.
NETTEST_OK = 0.8
#: The app works, but some of its endpoints failed (below OONI's threshold for an anomaly).
NETTEST_OK_PARTIAL = 0.65
#: The app's servers failed where OONI's rule calls it blocked (connects, requests, backend).
APP_BLOCKED = 0.8
#: Only the app's web front failed (the app's own servers answered).
APP_WEB_BLOCKED = 0.7
#: facebook_messenger: decided on the probe's own consistency/reachability flags.
FACEBOOK_FLAGS_BLOCKED = 0.75
#: tor: every target that ran failed.
TOR_ALL_FAILED = 0.85
#: tor: most targets that ran failed.
TOR_MOST_FAILED = 0.7
#: psiphon: the tunnel did not come up.
PSIPHON_BOOTSTRAP_FAILED = 0.75
#: psiphon: the tunnel came up, then fetching through it failed.
PSIPHON_USE_FAILED = 0.6
#: dnscheck: the system resolver says the resolver's own name does not exist.
DNSCHECK_BOOTSTRAP_NXDOMAIN = 0.7
#: dnscheck: every lookup the probe's own network could route failed.
DNSCHECK_LOOKUPS_FAILED = 0.65
