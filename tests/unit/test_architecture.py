"""The layout is the architecture, and a tool holds it there: import-linter's contracts (pyproject.toml) pass on the
code as it is, and fail on a copy of it with a violation planted: one function importing another, a package
importing one above its layer, the command importing the server."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stack.config import ROOT

PACKAGES = ("functions", "endpoints", "api", "transcoding", "accounts", "webhooks", "jobs", "storage", "runtime",
            "events")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    environment = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{tree}:{tree / 'client'}"}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tree, env=environment, capture_output=True,
                          text=True, timeout=120)


def test_the_code_keeps_every_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def test_no_function_folder_imports_another_function() -> None:
    for folder in (ROOT / "functions").iterdir():
        for module in folder.glob("*.py"):
            others = set(re.findall(r"^\s*(?:from|import) functions\.(\w+)", module.read_text(), re.MULTILINE))
            assert others <= {folder.name}, f"{module.relative_to(ROOT)} imports functions {others - {folder.name}}"


@pytest.fixture
def copy_of_the_code(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "static"))
    shutil.copytree(ROOT / "client" / "vid2mp3_client", tmp_path / "client" / "vid2mp3_client",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


@pytest.mark.parametrize(("module", "planted", "named"), [
    ("functions/segment/encoder.py", "import functions.convert.conversion",
     "functions.segment is not allowed to import functions.convert"),
    ("storage/media.py", "import jobs.records", "storage is not allowed to import jobs"),
    ("events/catalog.py", "from runtime import clock", "events is not allowed to import runtime"),
    ("client/vid2mp3_client/api.py", "import pymongo", "vid2mp3_client is not allowed to import pymongo"),
])
def test_a_planted_violation_breaks_its_contract(copy_of_the_code: Path, module: str, planted: str,
                                                 named: str) -> None:
    target = copy_of_the_code / module
    target.write_text(target.read_text() + f"\n{planted}  # planted\n")
    result = lint_imports(copy_of_the_code)
    assert result.returncode == 1, result.stdout + result.stderr
    assert named in result.stdout and "1 broken" in result.stdout
