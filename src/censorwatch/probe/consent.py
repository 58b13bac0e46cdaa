"""The probe's informed consent: what running it risks, asked once, remembered.

A probe connects, from the network of the person who runs it, to sites their government may
forbid; someone watching that network can see it. Nobody should learn that after the fact, so
the first run on a terminal explains it and asks; the answer "yes" is kept in the probe's state
folder (``consent.json``) and never asked again, until the explanation itself changes
(``CONSENT_VERSION``). Scripts and services say ``--yes``; a run without a terminal, without a
recorded consent and without ``--yes`` refuses before it sends a single packet.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from censorwatch.durable import write_atomic
from censorwatch.times import rfc3339, utcnow

#: Raised when the explanation below changes in a way a person should read again.
CONSENT_VERSION = 1
CONSENT_FILE = "consent.json"

RISKS = """\
Before you run a censorship probe

What it measures. The probe tries to reach websites and apps (a list that may include news,
political, religious, LGBTQ+, human-rights and circumvention sites) from your network: it looks
up their names, connects to them, fetches their pages and, for some, times a download. It
compares what it saw with what a server outside your country sees.

Who can see it. Your internet provider, your government and anyone else watching your network
can see that this computer connects to those sites. The probe does not hide this: it uses no
VPN or Tor, on purpose, because it measures your network as it is. Such traffic can look
unusual to someone who is watching.

Legal risk. In some countries visiting some of these sites, or measuring censorship at all, is
against the law or draws the attention of the authorities, and the penalties can be severe. If
you are unsure, ask a lawyer or a digital-security organisation you trust before you go on.

What is published. With --submit, every measurement is sent to that collector and may be
published openly: the network (AS number) and country you measured from, the time, the sites
and what happened to each, and the probe's software version. Your IP address is removed from
everything the probe writes or sends; the collector sees the address you connect from (as every
server does), uses it only to check your network and discards it. A probe key (--key) lets
readers tell that measurements came from the same probe; it does not say who you are.

Stopping. Ctrl-C stops a run; deleting the probe's state folder forgets this answer."""

QUESTION = "Do you understand these risks and want to run the probe? [yes/no]"


class ConsentRefused(Exception):
    """The run may not go on: no consent recorded and no way, or no wish, to give it."""


@dataclass(frozen=True)
class Consent:
    """A recorded consent: when, and how it was given (``"asked"`` or ``"--yes"``)."""

    version: int
    accepted_at: str
    how: str


def consent_path(state_dir: Path) -> Path:
    return Path(state_dir) / CONSENT_FILE


def recorded(state_dir: Path) -> Consent | None:
    """The consent kept in ``state_dir`` for the current explanation, if any.

    A file that cannot be read or parsed counts as no consent: asking again is safe.
    """
    try:
        data = json.loads(consent_path(state_dir).read_bytes()[:4096])
        consent = Consent(int(data["version"]), str(data["accepted_at"]), str(data["how"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return consent if consent.version == CONSENT_VERSION else None


def record(state_dir: Path, how: str) -> Consent:
    consent = Consent(CONSENT_VERSION, rfc3339(utcnow()), how)
    body = {"version": consent.version, "accepted_at": consent.accepted_at, "how": how}
    write_atomic(consent_path(state_dir), json.dumps(body, indent=1).encode() + b"\n")
    return consent


def ensure(
    state_dir: Path,
    *,
    yes: bool,
    interactive: bool,
    show: Callable[[str], None],
    ask: Callable[[str], str],
) -> Consent:
    """The consent this run rests on, asking for it when it can; else ``ConsentRefused``.

    ``show`` prints the explanation and ``ask`` reads one answer (both on the terminal).
    Only "yes" is remembered: a person who says no is asked again next time.
    """
    found = recorded(state_dir)
    if found is not None:
        return found
    if yes:
        return record(state_dir, "--yes")
    if not interactive:
        raise ConsentRefused(
            "this probe has not been told it may run: no consent is recorded in "
            f"{consent_path(state_dir)} and this run has no terminal to ask on. Run "
            "`censorwatch probe` once on a terminal to read the risks and answer, or pass "
            "--yes (a script or service whose owner has read docs/probe.md, 'Risks')."
        )
    show(RISKS)
    answer = ask(QUESTION).strip().lower()
    if answer not in ("y", "yes"):
        raise ConsentRefused("not running: the risks were not accepted (nothing was sent)")
    return record(state_dir, "asked")


__all__ = [
    "CONSENT_VERSION",
    "QUESTION",
    "RISKS",
    "Consent",
    "ConsentRefused",
    "consent_path",
    "ensure",
    "record",
    "recorded",
]
