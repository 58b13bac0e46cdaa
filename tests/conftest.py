"""Shared test configuration.

Tests marked ``netns`` build real network namespaces. CI runs as root and must run them; on a
developer machine without root (or without ``ip netns``) they are skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytest_plugins = ["clickhouse_server"]  # the session's ClickHouse server and its fixtures
SHARED_DATA = REPO.parent / "shared" / "data"


def _netns_unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "iptables", "tc"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (bash scripts/run.sh setup installs it)"
    probe = subprocess.run(
        ["ip", "netns", "add", "cw-selftest"], capture_output=True, text=True, check=False
    )
    subprocess.run(["ip", "netns", "del", "cw-selftest"], capture_output=True, check=False)
    if probe.returncode != 0:
        return f"cannot create a network namespace: {probe.stderr.strip()}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not any("netns" in item.keywords for item in items):
        return
    reason = _netns_unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI"):
        raise pytest.UsageError(f"CI must run the network-namespace tests, but {reason}")
    skip = pytest.mark.skip(reason=f"needs network namespaces: {reason}")
    for item in items:
        if "netns" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The third-party data folder (OONI measurements, fingerprints, test lists)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory):
    """A small internet on loopback addresses (``probe_loopback``), one per test module."""
    import probe_loopback as pl

    internet = pl.build_internet(tmp_path_factory.mktemp("pki"))
    yield internet
    internet.close()


@pytest.fixture(scope="module")
def control(net):
    """The control service, answering for ``net``."""
    import probe_loopback as pl
    from censorwatch.control.server import BackgroundServer, ControlApp

    with BackgroundServer(ControlApp(pl.control_settings(net)), host=pl.CONTROL) as server:
        yield server


LOG_TAIL_LINES = 12
LOG_TROUBLE = ("Traceback", "Error", "Exception", " WARNING ", " ERROR ", " CRITICAL ")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """On a failure next to a running testbed, show what went wrong in its services.

    The testbed's services (control, resolvers, web servers, censor) log to files that are
    removed with the testbed; without this a failure in CI would say what the probe saw but not
    what the service behind it went through. Only logs that report trouble are shown, briefly,
    so that the assertion itself stays in view.
    """
    report = yield
    if report.failed and call.when in ("setup", "call"):
        from testbed_support import RunningTestbed

        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, RunningTestbed) and value.state.logs.is_dir():
                for log in sorted(value.state.logs.glob("*.log")):
                    lines = log.read_text(errors="replace").splitlines()
                    trouble = [i for i, line in enumerate(lines) if any(
                        word in line for word in LOG_TROUBLE)]  # fmt: skip
                    if trouble:
                        first = max(0, trouble[-1] - LOG_TAIL_LINES + 2)
                        shown = "\n".join(lines[first : trouble[-1] + 2])
                        report.sections.append((f"testbed log {log.name}", shown))
    return report
