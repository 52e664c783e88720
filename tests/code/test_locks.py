"""The locks follow pyproject.toml, and the bento installs the serving lock and the package."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

# `uv pip compile` twice over: seconds, and it asks the package index; the full suite runs it.
pytestmark = pytest.mark.integration
REPO_ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def _pins(lock: str) -> dict[str, str]:
    lines = (REPO_ROOT / lock).read_text().splitlines()
    return dict(line.split("==", 1) for line in lines if line[:1].isalnum() and "==" in line)


def test_the_locks_are_what_pyproject_compiles_to():
    """`make check-locks` compiles both locks again (keeping their pins) and compares."""
    result = subprocess.run(
        ["make", "-s", "check-locks"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_the_serving_lock_is_the_base_install_at_the_full_locks_versions():
    full, serving = _pins("requirements.lock"), _pins("requirements-serving.lock")
    assert {name: full.get(name) for name in serving} == serving
    for extra in ("training", "monitoring", "dev"):
        assert extra in PYPROJECT["project"]["optional-dependencies"]
    for only_in_extras in ("scikit-learn", "optuna", "matplotlib", "distributed", "whylogs"):
        assert only_in_extras in full
        assert only_in_extras not in serving


def test_the_bento_installs_the_serving_lock_and_the_wheel_and_no_source():
    bentofile = yaml.safe_load((REPO_ROOT / "bento" / "bentofile.yaml").read_text())
    version = PYPROJECT["project"]["version"]
    assert bentofile["include"] == []
    assert bentofile["python"]["requirements_txt"] == "requirements-serving.lock"
    assert bentofile["python"]["wheels"] == [f"build/wheel/creditflow-{version}-py3-none-any.whl"]
