"""Platform profiles: every endpoint a person needs for one platform to work.

A profile is a TOML file in ``targets/profiles/<name>.toml`` (or any path)::

    name = "x"
    [[endpoint]]
    url = "https://pbs.twimg.com/"
    media = true                       # also measure throughput
    throughput_path = "/big.bin"       # optional; default /censorwatch/throughput.bin

``domains`` lists the platform's registrable domains (events group hosts by them) and
``nettests`` the OONI tests that measure the platform as a whole (``telegram``); the verdict
of such a test is about the first domain.
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path

from censorwatch.targets import Target, check_url

PROFILE_DIR = Path(__file__).with_name("profiles")


def available() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def path_of(name: str) -> Path:
    candidate = Path(name)
    if candidate.suffix == ".toml" and candidate.is_file():
        return candidate
    path = PROFILE_DIR / f"{name}.toml"
    if not path.is_file():
        raise ValueError(f"unknown profile {name!r} (known: {', '.join(available())})")
    return path


def load(name: str) -> list[Target]:
    """The profile's endpoints as targets; an invalid endpoint is an error, not a warning."""
    path = path_of(name)
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    label = data.get("name", path.stem)
    targets = []
    for i, endpoint in enumerate(data.get("endpoint", []), 1):
        url = str(endpoint.get("url", ""))
        problem = check_url(url)
        if problem:
            raise ValueError(f"{path}: endpoint {i}: {problem}: {url!r}")
        targets.append(
            Target(
                url,
                category_code=str(endpoint.get("category_code", "")),
                media=bool(endpoint.get("media", False)),
                throughput_path=endpoint.get("throughput_path"),
                source=f"profile:{label}",
            )
        )
    return targets


@lru_cache(maxsize=1)
def nettest_domains() -> dict[str, str]:
    """OONI test name -> the domain of the platform it measures (a profile's ``nettests``
    key; the first of its ``domains``): what an input-less test's verdict is about."""
    found: dict[str, str] = {}
    for path in sorted(PROFILE_DIR.glob("*.toml")):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        domains = data.get("domains") or []
        for test_name in data.get("nettests", []):
            if domains:
                found.setdefault(str(test_name), str(domains[0]).lower())
    return found
