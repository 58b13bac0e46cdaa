"""The verdict on a measurement of one of OONI's other tests, and the target it is about.

``decide_nettest`` picks the rule by ``test_name`` (``messaging``, ``dnscheck``,
``circumvention``); ``nettest_target`` names what the verdict is about: the resolver's host
for dnscheck (its input), else the platform whose profile lists the test
(``targets/profiles/*.toml``, ``nettests = [...]``), so that events group a telegram
measurement with the web_connectivity measurements of telegram.org. docs/verdicts.md.
"""

from __future__ import annotations

from collections.abc import Callable

from censorwatch.analysis import confidence as C
from censorwatch.analysis.circumvention import psiphon, tor
from censorwatch.analysis.dnscheck import dnscheck
from censorwatch.analysis.messaging import facebook_messenger, signal, telegram, whatsapp
from censorwatch.analysis.outcome import Outcome
from censorwatch.observations.nettests import (
    NETTESTS,
    NettestMeasurement,
    NettestObs,
    decode_nettest,
    nettest_view,
    observe_nettest,
)
from censorwatch.targets.profiles import nettest_domains

_RULES: dict[str, Callable[[NettestObs], Outcome]] = {
    "whatsapp": whatsapp,
    "telegram": telegram,
    "signal": signal,
    "facebook_messenger": facebook_messenger,
    "dnscheck": dnscheck,
    "tor": tor,
    "psiphon": psiphon,
}
assert set(_RULES) == NETTESTS
#: What ``core`` reads of this module (it imports it on first use).
__all__ = ["NETTESTS", "decide_nettest", "decode_nettest", "nettest_target", "nettest_view"]


def decide_nettest(m: NettestMeasurement, pruned: list[str]) -> Outcome:
    """The outcome for one measurement of these tests (its typed view, and the values pruned
    from it for an odd type, which the evidence names)."""
    if m.test_keys is None:
        return Outcome().done("unknown", C.NONE, "the measurement has no test_keys")
    outcome = _RULES[m.test_name or ""](observe_nettest(m))
    if pruned:
        shown = ", ".join(p.removeprefix("$.") for p in pruned[:3])
        more = f" and {len(pruned) - 3} more" if len(pruned) > 3 else ""
        outcome.evidence.append(f"ignored values of an unexpected type: {shown}{more}")
    return outcome


def nettest_target(test_name: str, url_host: str) -> str | None:
    """What a verdict of ``test_name`` is about: the input's host when the test has one
    (dnscheck's resolver), else the domain of the platform that lists the test."""
    if url_host:
        return url_host
    return nettest_domains().get(test_name)
