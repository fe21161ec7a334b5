"""The floor plan: the import-linter contracts in pyproject.toml hold for the code as it is,
and they catch an import that breaks them."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter")

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("stream", "learners", "perception", "sim")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """Run ``lint-imports`` on the project at ``root`` (its pyproject.toml, its packages)."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    command = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run([sys.executable, "-c", command, "--no-cache", "--no-logo", str(root / "pyproject.toml")],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_the_code_keeps_every_contract():
    result = lint_imports(ROOT)
    assert result.returncode == 0, f"the floor plan is broken:\n{result.stdout}\n{result.stderr}"
    assert "0 broken" in result.stdout


def _copy_sources(to: Path) -> None:
    shutil.copy(ROOT / "pyproject.toml", to / "pyproject.toml")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, to / package, ignore=shutil.ignore_patterns("__pycache__", "*.safetensors", "*.json"))


@pytest.mark.parametrize("module, line, contract", [
    ("perception/nets.py", "from stream import config", "Floors"),
    ("learners/replay.py", "import perception.labels\nfrom stream.sources import base", "Floors"),
    ("perception/labels.py", "from sim import world", "Only stream uses sim"),
    ("sim/towns.py", "from perception import labels", "sim is at the bottom"),
    ("learners/scheduler.py", "import ray", "Only the Ray module imports ray"),
    ("stream/local.py", "import ray", "Only the Ray module imports ray"),
])
def test_a_breaking_import_is_caught_and_named(tmp_path, module, line, contract):
    _copy_sources(tmp_path)
    path = tmp_path / module
    path.write_text(path.read_text() + f"\n\ndef _floor_plan_breaker():\n    {line.replace(chr(10), chr(10) + '    ')}\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    words = " ".join(result.stdout.split())  # contract names may wrap in the report
    verdict = re.search(re.escape(contract) + r".*?\b(KEPT|BROKEN)\b", words)
    assert verdict and verdict.group(1) == "BROKEN", result.stdout
