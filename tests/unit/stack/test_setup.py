"""`stack/setup.sh run` (what `make run` installs): FerretDB's build, the broker's, npm's and pip's installs run at
once; one `go install` builds the broker's three programs; a new or changed main rebuilds them; a failed step fails
the set-up with the end of its log.

The script's orchestration is what is tested here, so go, npm and Python are stand-ins on PATH that note when they
start and end (a real cold run takes many minutes: docs/PERFORMANCE.md's first run has its figures)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from stack.config import ROOT

# Each stand-in takes this long: long enough that steps run one after another could not overlap by chance.
STEP_SECONDS = 2

# Notes "<tool> start|end <time> <what>" in $SETUP_JOURNAL; `go install` leaves an executable per program.
FAKE_GO = r"""#!/bin/sh
what="$(basename "$PWD") $*"
echo "go start $(date +%s.%N) $what" >>"$SETUP_JOURNAL"
sleep "$STEP_SECONDS"
if [ "$1" = install ]; then
  for arg in "$@"; do
    case "$arg" in
      install|-ldflags=*) ;;
      .) program="$(basename "$PWD")" ;;
      *) program="${arg##*/}" ;;
    esac
    case "$arg" in install|-ldflags=*) ;; *) printf '#!/bin/sh\n' >"$GOBIN/$program"; chmod +x "$GOBIN/$program" ;; esac
  done
fi
echo "go end $(date +%s.%N) $what" >>"$SETUP_JOURNAL"
"""
FAKE_NPM = r"""#!/bin/sh
echo "npm start $(date +%s.%N) $*" >>"$SETUP_JOURNAL"
sleep "$STEP_SECONDS"
if [ -n "${FAIL_NPM:-}" ]; then echo "npm error: the registry refused tus-js-client"; exit 1; fi
echo "npm end $(date +%s.%N) $*" >>"$SETUP_JOURNAL"
"""
FAKE_PIP = r"""#!/bin/sh
echo "pip start $(date +%s.%N) $*" >>"$SETUP_JOURNAL"
sleep "$STEP_SECONDS"
echo "pip end $(date +%s.%N) $*" >>"$SETUP_JOURNAL"
"""
# `$PYTHON -m venv DIR`: a virtual environment whose pip is the stand-in above.
FAKE_PYTHON = r"""#!/bin/sh
mkdir -p "$3/bin"
printf '#!/bin/sh\n' >"$3/bin/python"
cp "$(dirname "$0")/pip" "$3/bin/pip"
chmod +x "$3/bin/python" "$3/bin/pip"
"""


def write_executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A checkout holding what setup.sh reads (the real script), with the tools it runs replaced on PATH."""
    if not Path("/usr/sbin/rabbitmq-server").exists():
        pytest.skip("RabbitMQ is not installed: setup.sh would run apt-get (`make setup` installs it)")
    checkout = tmp_path / "checkout"
    (checkout / "stack").mkdir(parents=True)
    shutil.copy(ROOT / "stack" / "setup.sh", checkout / "stack" / "setup.sh")
    for name in ("stack/ferretdb/go.mod", "stack/broker/go.mod", "stack/broker/go.sum",
                 "stack/broker/cmd/source-adapter/main.go", "stack/node/package.json", "stack/node/package-lock.json",
                 "stack/validation/skaffold/go.mod", "stack/validation/skaffold/go.sum", "stack/jaeger/go.mod",
                 "stack/jaeger/go.sum", "pyproject.toml", "client/pyproject.toml"):
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, checkout / name)
    tools = tmp_path / "tools"
    tools.mkdir()
    write_executable(tools / "go", FAKE_GO)
    write_executable(tools / "npm", FAKE_NPM)
    write_executable(tools / "pip", FAKE_PIP)
    write_executable(tools / "python", FAKE_PYTHON)
    for program in ("mariadbd", "ffmpeg", "ffprobe"):
        write_executable(tools / program, "#!/bin/sh\n")
    return checkout


def run_setup(project: Path, **env: str) -> subprocess.CompletedProcess[str]:
    tools = project.parent / "tools"
    return subprocess.run(
        [str(project / "stack" / "setup.sh"), "run"], cwd=project, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PATH": f"{tools}:{os.environ['PATH']}", "PYTHON": str(tools / "python"),
             "SETUP_JOURNAL": str(project.parent / "journal"), "STEP_SECONDS": str(STEP_SECONDS), **env},
    )


def journal(project: Path) -> list[tuple[str, str, float, str]]:
    """(tool, start or end, when, what) of every stand-in call so far, and forgets them."""
    path = project.parent / "journal"
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        tool, event, when, *what = line.split()
        entries.append((tool, event, float(when), " ".join(what)))
    path.unlink()
    return entries


def test_the_builds_and_installs_run_at_once(project: Path) -> None:
    started = time.monotonic()
    result = run_setup(project)
    assert result.returncode == 0, result.stderr
    entries = journal(project)
    starts = [entry for entry in entries if entry[1] == "start"]
    assert sorted(f"{tool} {what.split()[0]}" if tool == "go" else tool for tool, _, _, what in starts) == [
        "go broker", "go ferretdb", "npm", "pip"]
    first_end = min(when for _, event, when, _ in entries if event == "end")
    assert all(when < first_end for _, _, when, _ in starts), entries
    # Four steps of STEP_SECONDS each, one after another, would take twice this at least.
    assert time.monotonic() - started < 2 * STEP_SECONDS + 30
    for program in ("ferretdb", "ingress", "dispatcher", "source-adapter"):
        assert os.access(project / ".local" / "bin" / program, os.X_OK), program


def test_one_go_install_builds_the_broker_programs_without_symbols(project: Path) -> None:
    assert run_setup(project).returncode == 0
    broker_builds = [what for tool, event, _, what in journal(project)
                     if tool == "go" and event == "start" and what.startswith("broker ")]
    assert broker_builds == ["broker install -ldflags=-s -w knative.dev/eventing-rabbitmq/cmd/ingress "
                             "knative.dev/eventing-rabbitmq/cmd/dispatcher ./cmd/source-adapter"]


def test_a_second_run_does_nothing_and_a_new_main_rebuilds_the_broker_alone(project: Path) -> None:
    assert run_setup(project).returncode == 0
    journal(project)
    assert run_setup(project).returncode == 0
    assert journal(project) == []
    new_main = project / "stack" / "broker" / "cmd" / "another" / "main.go"
    new_main.parent.mkdir()
    new_main.write_text("package main\n\nfunc main() {}\n")
    assert run_setup(project).returncode == 0
    assert [(tool, what.split()[0]) for tool, event, _, what in journal(project) if event == "start"] == [
        ("go", "broker")]


def test_a_failed_step_fails_the_setup_with_its_log_once_the_others_are_done(project: Path) -> None:
    result = run_setup(project, FAIL_NPM="1")
    assert result.returncode == 1
    assert "npm failed" in result.stderr
    assert "npm error: the registry refused tus-js-client" in result.stderr
    assert "ready" not in result.stdout
    # The others were not cut short: what they built is there, and the next run redoes npm's install alone.
    assert {tool for tool, event, _, _ in journal(project) if event == "end"} == {"go", "pip"}
    assert run_setup(project).returncode == 0
    assert [tool for tool, event, _, _ in journal(project) if event == "start"] == ["npm"]
