"""OONI's own code, run beside ours: the ``oonidata`` package in its own environment.

``scripts/run.sh test`` installs oonidata (OONI's loader, from PyPI) into ``.venv-oonidata``,
apart from censorwatch's environment because its pinned dependencies cannot share ours. Tests
run small scripts from ``tests/tools/`` with that interpreter. In CI a missing environment is
an error; elsewhere the tests that need it are skipped with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
TOOLS = Path(__file__).resolve().parent / "tools"
OONIDATA_VENV = Path(os.environ.get("CENSORWATCH_OONIDATA_VENV", REPO / ".venv-oonidata"))


def oonidata_python() -> Path:
    """The interpreter that has OONI's oonidata installed (skips or fails when absent)."""
    python = OONIDATA_VENV / "bin" / "python"
    if not python.exists():
        reason = f"OONI's oonidata is not installed in {OONIDATA_VENV} (bash scripts/run.sh test)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must check compatibility with OONI's own code, but {reason}")
        pytest.skip(reason)
    return python


def run_oonidata_tool(script: str, *args: str, timeout: float = 300) -> Any:
    """Run ``tests/tools/SCRIPT`` under oonidata's interpreter; its stdout is one JSON value."""
    proc = subprocess.run(
        [str(oonidata_python()), str(TOOLS / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout)


def ooni_load(paths: list[Path]) -> dict[str, Any]:
    """What OONI's ``load_measurement`` makes of every line of these JSONL files."""
    return run_oonidata_tool("oonidata_load.py", *map(str, paths))


def assert_ooni_loads_all(paths: list[Path], expected: int) -> dict[str, Any]:
    """OONI's loader loads all ``expected`` measurements of ``paths``, none failing."""
    report = ooni_load(paths)
    assert report["failed"] == [], json.dumps(report["failed"][:5], indent=1)
    assert sum(report["loaded"].values()) == expected, report
    return report
