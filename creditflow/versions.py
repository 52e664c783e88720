"""What produced an answer or a model: the code's version and the libraries'."""

from __future__ import annotations

import platform
import subprocess
from functools import cache
from importlib.metadata import version
from pathlib import Path


@cache
def code_version() -> str:
    """The git commit of the running code (``+dirty`` with uncommitted changes); the package
    version when it does not run from a clone (an install, a bento). Asked once per process."""
    here = Path(__file__).parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=here,
                               capture_output=True, text=True).stdout.strip()  # fmt: skip
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return f"creditflow {version('creditflow')}"


def library_versions() -> dict[str, str]:
    """The versions of the libraries a model depends on, and Python's."""
    found = {}
    for name in ("xgboost-cpu", "feast", "bentoml", "pandas", "numpy", "pyarrow", "creditflow"):
        try:
            found[name.removesuffix("-cpu")] = version(name)
        except Exception:
            found[name.removesuffix("-cpu")] = "unknown"
    found["python"] = platform.python_version()
    return found
