"""``deploy/``: the systemd unit and the Containerfile, tested by what runs on this machine.

The unit is checked by systemd's own tools (``systemd-analyze verify`` and ``security
--offline``) and its command line by the probe itself. The image is not built here (no image
builder, and no registry to pull its base image from): the Containerfile is read, its shell
commands parsed by ``sh -n``, the files it copies found, and its entry point run in this
virtualenv with the image's environment.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
UNIT = DEPLOY / "systemd" / "censorwatch-probe.service"
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


def _unit_settings() -> dict[str, list[str]]:
    """The unit's ``Key=value`` lines (a key may repeat, as ``SystemCallFilter`` does)."""
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def _unit_here(tmp_path: Path) -> Path:
    """The unit with one change: the probe at this virtualenv's path (verify checks that the
    command exists)."""
    text = UNIT.read_text()
    assert text.count(INSTALLED) == 1
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(INSTALLED, str(VENV_CENSORWATCH)))
    return copy


def test_the_unit_passes_systemd_verify(tmp_path: Path) -> None:
    tool = _systemd_analyze()
    proc = subprocess.run([tool, "verify", str(_unit_here(tmp_path))],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout + proc.stderr == ""  # an unknown or misspelt key is only a warning


def test_the_unit_is_hardened(tmp_path: Path) -> None:
    tool = _systemd_analyze()
    settings = _unit_settings()
    assert settings["DynamicUser"] == ["yes"] and settings["NoNewPrivileges"] == ["yes"]
    assert settings["CapabilityBoundingSet"] == [""] and settings["AmbientCapabilities"] == [""]
    assert settings["ProtectSystem"] == ["strict"] and settings["ProtectHome"] == ["yes"]
    proc = subprocess.run(
        [tool, "security", "--offline=yes", "--no-pager", str(_unit_here(tmp_path))],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    level = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
    assert level is not None, proc.stdout[-2000:]
    assert float(level[1]) <= 2.0  # systemd's scale: 0 (locked down) to 10 (exposed)


@pytest.mark.slow
def test_the_unit_command_line_is_one_the_probe_accepts(tmp_path: Path) -> None:
    env_file = dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    )
    (exec_start,) = _unit_settings()["ExecStart"]
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
    assert words[1:] == [
        "probe",
        "--every",
        "1h",
        "--submit",
        "https://collector.example/",
        "--yes",
    ]
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
