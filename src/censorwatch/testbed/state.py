"""Where a running testbed keeps what it knows: one folder per testbed id.

Every process of the testbed (manager, scheduler, censor daemons, internet services) reads the
same folder, so each can be restarted on its own and ``testbed down`` can always find what to
remove, also after a crash.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from censorwatch.durable import write_atomic
from censorwatch.testbed import plan as planmod
from censorwatch.testbed import scenario as scenariomod

DEFAULT_ID = "cw"
ID_ENV = "CENSORWATCH_TESTBED_ID"
ROOT_ENV = "CENSORWATCH_TESTBED_ROOT"
_ID = re.compile(r"^[a-z][a-z0-9]{0,7}$")


def testbed_id(value: str | None = None) -> str:
    chosen = value or os.environ.get(ID_ENV) or DEFAULT_ID
    if not _ID.match(chosen):
        raise ValueError(f"testbed id {chosen!r}: use 1-8 lower-case letters and digits")
    return chosen


def root_dir() -> Path:
    return Path(os.environ.get(ROOT_ENV, "/run/censorwatch/testbed"))


@dataclass
class TestbedState:
    folder: Path
    __test__ = False  # not a test class, despite the name

    @classmethod
    def for_id(cls, tb_id: str) -> TestbedState:
        return cls(root_dir() / tb_id)

    @property
    def id(self) -> str:
        return self.folder.name

    # -- files ---------------------------------------------------------------------------
    @property
    def scenario_file(self) -> Path:
        return self.folder / "scenario.toml"

    @property
    def info_file(self) -> Path:
        return self.folder / "testbed.json"

    @property
    def active_file(self) -> Path:
        return self.folder / "active.json"

    @property
    def address_plan_file(self) -> Path:
        return self.folder / "address-plan.json"

    @property
    def ca_file(self) -> Path:
        return self.folder / "pki" / "ca.pem"

    @property
    def pki_dir(self) -> Path:
        return self.folder / "pki"

    @property
    def logs(self) -> Path:
        return self.folder / "logs"

    def policy_file(self, asn: str) -> Path:
        return self.folder / "censor" / f"{asn}.json"

    def ready_file(self, service: str) -> Path:
        return self.folder / "ready" / service

    def mark_ready(self, service: str) -> None:
        """A service has bound its sockets (UDP ones cannot be probed by a connect)."""
        path = self.ready_file(service)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()

    def exists(self) -> bool:
        return self.info_file.is_file()

    # -- content -------------------------------------------------------------------------
    def scenario(self) -> scenariomod.Scenario:
        text = self.scenario_file.read_text(encoding="utf-8")
        info = self.info()
        import tomllib

        return scenariomod.parse(tomllib.loads(text), info.get("scenario_source", "scenario"))

    def plan(self) -> planmod.TestbedPlan:
        return planmod.build(self.scenario(), self.id)

    def info(self) -> dict[str, Any]:
        return json.loads(self.info_file.read_text())

    def write_info(self, info: dict[str, Any]) -> None:
        write_json(self.info_file, info)

    def active(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Censorship in force now: network -> method -> {targets, rate, since}."""
        if not self.active_file.is_file():
            return {}
        return json.loads(self.active_file.read_text())

    def write_active(self, active: dict[str, dict[str, dict[str, Any]]]) -> None:
        write_json(self.active_file, active)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """One writer at a time for censor changes (scheduler and ``testbed set`` race)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def write_json(path: Path, data: Any) -> None:
    """Write atomically, so a reader never sees half a file."""
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True).encode())
