"""The probe's side of check-in: where the collector sees us, what to measure, which controls.

One POST to each configured probe service in turn (OONI's ``/api/v1/check-in`` shape) until
one answers; bounded in time and bytes like every other step. What goes out is what OONI Probe
sends (software, platform, network type, charging state, the AS and country the probe found
itself): nothing that tells who runs the probe beyond the connection the server sees anyway.
"""

from __future__ import annotations

import json
import platform
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

from censorwatch.scrub import Scrubber
from censorwatch.targets import Target, check_url

PATH = "/api/v1/check-in"
TIMEOUT = 10.0
MAX_RESPONSE = 4 * 1024 * 1024


@dataclass
class CheckIn:
    """A check-in's answer, checked; fields the service did not give are empty."""

    service: str
    asn: str = "AS0"
    cc: str = "ZZ"
    network_name: str = ""
    targets: list[Target] = field(default_factory=list)
    controls: list[str] = field(default_factory=list)


def request_body(software_version: str, asn: str, cc: str, run_type: str) -> dict[str, Any]:
    return {
        "charging": True,
        "on_wifi": True,
        "platform": platform.system().lower() or "unknown",
        "probe_asn": asn,
        "probe_cc": cc,
        "run_type": run_type,
        "software_name": "censorwatch",
        "software_version": software_version,
        "web_connectivity": {"category_codes": []},
    }


def parse_response(service: str, data: Any) -> CheckIn:
    """The answer's network, country, URLs and controls; malformed parts are dropped."""
    if not isinstance(data, dict):
        raise ValueError("check-in answer is not a JSON object")
    out = CheckIn(service)
    asn, cc = data.get("probe_asn"), data.get("probe_cc")
    if isinstance(asn, str) and asn.upper().startswith("AS") and asn[2:].isdigit():
        out.asn = asn.upper()
    if isinstance(cc, str) and len(cc) == 2 and cc.isalpha():
        out.cc = cc.upper()
    name = data.get("probe_network_name")
    out.network_name = name[:256] if isinstance(name, str) else ""
    tests = data.get("tests") if isinstance(data.get("tests"), dict) else {}
    wc = tests.get("web_connectivity") if isinstance(tests.get("web_connectivity"), dict) else {}
    for item in wc.get("urls") or []:
        url = item.get("url") if isinstance(item, dict) else None
        if isinstance(url, str) and check_url(url) is None:
            code = item.get("category_code")
            out.targets.append(
                Target(
                    url,
                    category_code=code if isinstance(code, str) else "",
                    source=f"check-in:{service}",
                )
            )
    conf = data.get("conf") if isinstance(data.get("conf"), dict) else {}
    helpers = conf.get("test_helpers") or data.get("test_helpers") or {}
    for helper in helpers.get("web-connectivity") or [] if isinstance(helpers, dict) else []:
        address = helper.get("address") if isinstance(helper, dict) else None
        if isinstance(address, str) and address.startswith("https://"):
            out.controls.append(address if address.endswith("/") else address + "/")
    return out


async def check_in(
    services: list[str],
    body: dict[str, Any],
    *,
    verify: ssl.SSLContext,
    scrubber: Scrubber | None = None,
    timeout: float = TIMEOUT,
) -> tuple[CheckIn | None, str | None]:
    """The first service that answers; (None, last failure) when none does."""
    import httpx

    failure: str | None = None
    for service in services:
        url = urljoin(service if service.endswith("/") else service + "/", PATH.lstrip("/"))
        try:
            async with (
                httpx.AsyncClient(verify=verify, timeout=timeout, trust_env=False) as client,
                client.stream("POST", url, json=body) as response,
            ):
                if scrubber is not None:
                    scrubber.learn_stream(response)
                if response.status_code != 200:
                    failure = f"{service}: HTTP {response.status_code}"
                    continue
                data = bytearray()
                async for chunk in response.aiter_bytes():
                    data += chunk
                    if len(data) > MAX_RESPONSE:
                        raise ValueError(f"answer larger than {MAX_RESPONSE} bytes")
            return parse_response(service, json.loads(data)), None
        except (httpx.HTTPError, OSError, ValueError) as exc:
            failure = f"{service}: {type(exc).__name__}: {exc}"[:300]
    return None, failure


__all__ = ["CheckIn", "check_in", "parse_response", "request_body"]
