"""`pip install .` (not editable) of a fresh clone into a fresh venv: a working package, no repo.

The base install only (no extras): what `pip install creditflow` gives and what the bento runs.
The clone is the working tree's files (tracked and new, not ignored), so that build leftovers
in the tree (build/lib) cannot hide a file missing from the package. uv installs with the
serving lock as constraints, from its cache: about half a minute.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # a venv of ~130 packages

REPO_ROOT = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).parent / "uv"
PROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
VERSION = PROJECT["project"]["version"]
# Every stage package, as pyproject.toml maps them (the list lives there alone).
STAGES = [name for name in PROJECT["tool"]["setuptools"]["packages"]
          if name.count(".") == 1 and not name.startswith("creditflow.migrations")]  # fmt: skip
# What serving and `creditflow score-batch` import; none may need an extra.
SERVING_MODULES = [
    "creditflow.cli",
    "creditflow.bento.scoring",
    "creditflow.bento.prediction_log",
    "creditflow.batch.score",
    "creditflow.model.registry",
    "creditflow.postprocessing.predict",
    "creditflow.store.service_features",
    "creditflow.migrate",
]
EXTRAS_ONLY = ["sklearn", "optuna", "matplotlib", "distributed", "whylogs"]


def _run(args: list, cwd: Path, env: dict | None = None, timeout: float = 300) -> str:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"{args}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def _fresh_clone(dest: Path) -> Path:
    files = _run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT
    )
    for name in filter(None, files.split("\0")):
        source = REPO_ROOT / name
        if source.is_file():  # (not a file deleted in the tree but not yet in git)
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """The fresh venv with the package installed from a fresh clone, and where it went."""
    root = tmp_path_factory.mktemp("install")
    clone = _fresh_clone(root / "clone")
    venv = root / "venv"
    _run([UV, "venv", "--quiet", "--python", sys.executable, venv], cwd=root)
    python = venv / "bin" / "python"
    _run(
        [UV, "pip", "install", "--quiet", "--python", python,
         "-c", clone / "requirements-serving.lock", "."],
        cwd=clone,
    )  # fmt: skip
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                     cwd=root).strip())  # fmt: skip
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CREDITFLOW_", "BENTOML_"))},
        "CREDITFLOW_HOME": str(root / "home"),
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
    }
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)
    return {"venv": venv, "python": python, "site": site, "cwd": elsewhere, "env": env,
            "clone": clone}  # fmt: skip


def _record(site: Path) -> list[str]:
    return [
        line.split(",")[0]
        for line in (site / f"creditflow-{VERSION}.dist-info" / "RECORD").read_text().splitlines()
        if line
    ]


def test_only_the_creditflow_package_is_installed(installed):
    top_level = {path.split("/")[0] for path in _record(installed["site"])}
    top_level.discard("..")  # the console script, in the venv's bin/
    assert top_level == {"creditflow", f"creditflow-{VERSION}.dist-info"}
    assert (installed["venv"] / "bin" / "creditflow").exists()


def test_every_file_of_the_stage_folders_ships_with_the_package(installed):
    """Code, feature definitions, profiles, migrations: all of it, mapped under creditflow/."""
    setuptools = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    expected = set()
    for package, folder in setuptools["package-dir"].items():
        source = installed["clone"] / folder
        for path in source.rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                expected.add(package.replace(".", "/") + "/" + path.relative_to(source).as_posix())
    shipped = {path for path in _record(installed["site"]) if path.startswith("creditflow/")}
    shipped = {path for path in shipped if "__pycache__" not in path}
    assert "creditflow/feature_repo/profiles/production/feature_store.yaml" in expected
    assert expected - shipped == set(), "in the repo's stage folders but not in the package"
    assert shipped - expected == set(), "in the package but not in the repo's stage folders"


def test_the_cli_and_every_stage_work_from_outside_the_repo(installed):
    help_text = _run(["creditflow", "--help"], cwd=installed["cwd"], env=installed["env"])
    assert "score-batch" in help_text and "train" in help_text

    probe = f"""
import importlib, json, sys
for name in {STAGES + SERVING_MODULES!r}:
    importlib.import_module(name)
import creditflow
print(json.dumps({{"file": creditflow.__file__,
                  "extras": [m for m in {EXTRAS_ONLY!r} if m in sys.modules]}}))
"""
    out = _run([installed["python"], "-c", probe], cwd=installed["cwd"], env=installed["env"])
    seen = json.loads(out.strip().splitlines()[-1])
    assert Path(seen["file"]).is_relative_to(installed["site"])
    assert seen["extras"] == [], "serving imports a module of an extra"


def test_generate_and_the_default_home_from_the_installed_package(installed, tmp_path):
    out = tmp_path / "raw"
    _run(["creditflow", "generate", "--loans", "200", "--out", out, "--json"],
         cwd=installed["cwd"], env=installed["env"])  # fmt: skip
    assert {p.name for p in out.iterdir()} >= {f"{t}.parquet" for t in
                                               ("loans", "zipcodes", "credit_history")}  # fmt: skip

    # Without CREDITFLOW_HOME: the user's data folder; the feature repo is the installed one.
    env = {k: v for k, v in installed["env"].items() if k != "CREDITFLOW_HOME"}
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    exports = _run(["creditflow", "env"], cwd=installed["cwd"], env=env)
    values = dict(line.removeprefix("export ").split("=", 1) for line in exports.splitlines())
    assert values["CREDITFLOW_HOME"] == str(tmp_path / "data" / "creditflow")
    assert Path(values["CREDITFLOW_FEATURE_REPO"]).is_relative_to(installed["site"])
    assert Path(values["FEAST_FS_YAML_FILE_PATH"]).is_file()
