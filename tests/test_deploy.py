"""``deploy/``: the systemd units and the Containerfile, tested by what runs on this machine.

The units (a long-running service, and a timer with its one-cycle service) are checked by
systemd's own tools (``systemd-analyze verify``, ``security --offline``, ``calendar`` and
``timespan``) and their command lines by the probe itself. The image is not built here (no image
builder, and no registry to pull its base image from): the Containerfile is read, its shell
commands parsed by ``sh -n``, the files it copies found, and its entry point run in this
virtualenv with the image's environment.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from datetime import datetime
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
UNIT = DEPLOY / "systemd" / "censorwatch-probe.service"
HOURLY = DEPLOY / "systemd" / "censorwatch-probe-hourly.service"
TIMER = DEPLOY / "systemd" / "censorwatch-probe-hourly.timer"
SERVICES = [UNIT, HOURLY]
# What the two services may differ in: how they are started and stopped, and their schedule.
HOW_STARTED = {"Description", "Type", "ExecStart", "Restart", "RestartSec", "TimeoutStartSec",
               "TimeoutStopSec"}  # fmt: skip
ENV_EXAMPLE = DEPLOY / "systemd" / "probe.env.example"
CONTAINERFILE = DEPLOY / "Containerfile"
INSTALLED = "/opt/censorwatch/bin/censorwatch"  # where the unit expects the package
VENV_CENSORWATCH = Path(sys.executable).parent / "censorwatch"


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI must verify the systemd unit, but systemd-analyze is not installed")
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    return found


def _sections(path: Path) -> dict[str, dict[str, list[str]]]:
    """A unit's ``Key=value`` lines by section (a key may repeat, as ``SystemCallFilter``
    does)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        elif line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            current.setdefault(key, []).append(value)
    return sections


def _unit_settings(path: Path = UNIT) -> dict[str, list[str]]:
    return {k: v for section in _sections(path).values() for k, v in section.items()}


def _unit_here(tmp_path: Path, path: Path = UNIT) -> Path:
    """The unit with one change: the probe at this virtualenv's path (verify checks that the
    command exists)."""
    text = path.read_text()
    assert text.count(INSTALLED) == 1
    copy = tmp_path / path.name
    copy.write_text(text.replace(INSTALLED, str(VENV_CENSORWATCH)))
    return copy


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_systemd_analyze(), *args], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip


@pytest.mark.parametrize("service", SERVICES, ids=lambda p: p.name)
def test_the_unit_passes_systemd_verify(tmp_path: Path, service: Path) -> None:
    proc = _analyze("verify", str(_unit_here(tmp_path, service)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout + proc.stderr == ""  # an unknown or misspelt key is only a warning


@pytest.mark.parametrize("service", SERVICES, ids=lambda p: p.name)
def test_the_unit_is_hardened(tmp_path: Path, service: Path) -> None:
    settings = _unit_settings(service)
    assert settings["DynamicUser"] == ["yes"] and settings["NoNewPrivileges"] == ["yes"]
    assert settings["CapabilityBoundingSet"] == [""] and settings["AmbientCapabilities"] == [""]
    assert settings["ProtectSystem"] == ["strict"] and settings["ProtectHome"] == ["yes"]
    proc = _analyze("security", "--offline=yes", "--no-pager", str(_unit_here(tmp_path, service)))
    assert proc.returncode == 0, proc.stderr
    level = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
    assert level is not None, proc.stdout[-2000:]
    assert float(level[1]) <= 2.0  # systemd's scale: 0 (locked down) to 10 (exposed)


def test_both_services_run_the_probe_the_same_way() -> None:
    """Same user, state, confinement and environment: only how each is started differs."""
    long_running, hourly = (_sections(p)["Service"] for p in SERVICES)
    assert {k: v for k, v in long_running.items() if k not in HOW_STARTED} == {
        k: v for k, v in hourly.items() if k not in HOW_STARTED
    }
    assert long_running["Type"] == ["simple"] and hourly["Type"] == ["oneshot"]
    assert "Restart" not in hourly  # a failed cycle waits for the next hour
    assert _sections(UNIT)["Install"] == {"WantedBy": ["multi-user.target"]}
    assert "Install" not in _sections(HOURLY)  # started by its timer only


def test_the_timer_starts_the_one_cycle_service_hourly_with_jitter(tmp_path: Path) -> None:
    from censorwatch.probe.unattended import JITTER_MAX

    timer = _sections(TIMER)
    assert timer["Timer"]["Unit"] == [HOURLY.name]  # verify does not check that it exists
    assert timer["Install"] == {"WantedBy": ["timers.target"]}
    assert timer["Timer"]["Persistent"] == ["true"]
    copy = tmp_path / TIMER.name
    shutil.copy(TIMER, copy)
    proc = _analyze("verify", str(copy), str(_unit_here(tmp_path, HOURLY)))
    assert proc.returncode == 0 and proc.stdout + proc.stderr == "", proc.stdout + proc.stderr
    (calendar,) = timer["Timer"]["OnCalendar"]
    elapses = _analyze("calendar", "--iterations", "3", calendar)
    assert elapses.returncode == 0, elapses.stderr
    when = r"(?:Next elapse|Iter\. #\d+): \w{3} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)"
    times = re.findall(when, elapses.stdout)
    starts = [datetime.fromisoformat(t) for t in times]
    assert len(starts) == 3, elapses.stdout
    assert {(b - a).total_seconds() for a, b in itertools.pairwise(starts)} == {3600}
    # each probe's random delay, within the hour and no wider than the probe's own jitter
    (delay,) = timer["Timer"]["RandomizedDelaySec"]
    span = _analyze("timespan", delay)
    assert span.returncode == 0, span.stderr
    micros = re.search(r"μs: (\d+)", span.stdout)
    assert micros is not None, span.stdout
    assert 0 < int(micros[1]) / 1e6 <= JITTER_MAX
    (timeout,) = _sections(HOURLY)["Service"]["TimeoutStartSec"]
    limit = re.search(r"μs: (\d+)", _analyze("timespan", timeout).stdout)
    assert limit is not None and int(limit[1]) / 1e6 + JITTER_MAX < 3600  # done before the next


@pytest.mark.slow
@pytest.mark.parametrize(
    ("service", "schedule"),
    [(UNIT, ["--every", "1h"]), (HOURLY, ["--every", "1h", "--cycles", "1"])],
    ids=lambda v: v.name if isinstance(v, Path) else None,
)
def test_the_unit_command_line_is_one_the_probe_accepts(
    tmp_path: Path, service: Path, schedule: list[str]
) -> None:
    env_file = dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    )
    (exec_start,) = _unit_settings(service)["ExecStart"]
    # systemd's expansion: ${NAME} is one word, $NAME is split on spaces (empty: no word)
    words = []
    for word in shlex.split(exec_start):
        if m := re.fullmatch(r"\$\{(\w+)\}", word):
            words.append(env_file[m[1]])
        elif m := re.fullmatch(r"\$(\w+)", word):
            words += env_file[m[1]].split()
        else:
            words.append(word)
    assert words[0] == INSTALLED
    assert words[1:] == ["probe", *schedule, "--submit", "https://collector.example/", "--yes"]
    # Every option parses; a bad --max-disk after them stops the run before it measures.
    proc = subprocess.run(
        [str(VENV_CENSORWATCH), *words[1:], "--max-disk", "plenty"],
        capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
        env={**os.environ, "STATE_DIRECTORY": str(tmp_path / "state"), "COLUMNS": "500"},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "'plenty' is not a size" in proc.stderr
    assert not (tmp_path / "state").exists()


def _instructions() -> list[tuple[str, str]]:
    """The Containerfile's instructions, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in CONTAINERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "a continuation line ends the file"
    return out


def test_the_containerfile_parses_and_copies_files_that_exist() -> None:
    steps = _instructions()
    known = {"FROM", "ENV", "WORKDIR", "COPY", "RUN", "USER", "VOLUME", "ENTRYPOINT", "CMD"}
    assert {word for word, _ in steps} <= known
    assert steps[0][0] == "FROM"
    # Debian's Python image, of the Python the project supports
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    base = re.fullmatch(r"docker\.io/library/python:(\d+\.\d+)-slim-(\w+)", steps[0][1])
    assert base is not None and base[2] == "bookworm"
    assert requires == f">={base[1]}"
    for word, rest in steps:
        if word == "COPY":
            *sources, _dest = rest.split()
            for source in sources:  # the build context is the repository's root
                assert (REPO / source).exists(), source
        if word == "RUN":
            check = subprocess.run(["sh", "-n", "-c", rest], capture_output=True, text=True)
            assert check.returncode == 0, (rest, check.stderr)
    copied = {s for w, r in steps if w == "COPY" for s in r.split()[:-1]}
    readme = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["readme"]
    assert {"pyproject.toml", readme, "src"} <= copied  # what `pip install .` reads
    assert any(w == "RUN" and "pip install ." in r for w, r in steps)


def test_the_image_runs_unprivileged() -> None:
    steps = _instructions()
    users = [rest for word, rest in steps if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    uid = users[-1].split(":")[0]
    (run,) = [rest for word, rest in steps if word == "RUN" and "useradd" in rest]
    assert f"--uid {uid}" in run
    last_user = max(i for i, (word, _) in enumerate(steps) if word == "USER")
    assert all(word != "RUN" for word, _ in steps[last_user:])


def _image_env(home: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in _instructions():
        if word == "ENV":
            for item in shlex.split(rest):
                key, value = item.split("=", 1)
                env[key] = value.replace("/var/lib/censorwatch", str(home))
    return env


@pytest.mark.slow
def test_the_entry_point_runs_and_asks_for_consent_first(tmp_path: Path) -> None:
    steps = dict(_instructions())
    entry, cmd = json.loads(steps["ENTRYPOINT"]), json.loads(steps["CMD"])
    assert entry == ["censorwatch", "probe"]
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CENSORWATCH_", "XDG_"))}
    env.update(_image_env(home), PATH=f"{VENV_CENSORWATCH.parent}{os.pathsep}{env['PATH']}")
    env["COLUMNS"] = "500"  # one message, one line
    # `podman run -d` without --yes and without a recorded consent: a clear refusal, no traffic
    proc = subprocess.run([*entry, *cmd], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, env=env, cwd=home, check=False)  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert "no consent is recorded" in proc.stderr
    assert str(home / "state" / "censorwatch" / "probe" / "consent.json") in proc.stderr
