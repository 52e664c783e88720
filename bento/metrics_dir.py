"""A Prometheus multiprocess directory of its own for each server started on a home.

BentoML 1.4 keeps the files behind /metrics in ``$BENTOML_HOME/prometheus_multiproc_dir`` and
empties that directory whenever a server starts (``bentoml.serving.ensure_prometheus_dir``):
a second `bentoml serve` on the same home, even one that then fails to bind its port, left the
first server's /metrics blank for good (200, no content), the prediction log's drop counter
with it. So the process that starts a server (the one running `bentoml serve`, which imports
this service before it starts anything) gives it a directory of its own,
``$BENTOML_HOME/metrics/<pid>-<random>/``, through the knob BentoML's own pytest plugin uses
(``BentoMLContainer.prometheus_multiproc_dir``). BentoML hands the directory to its workers as
``PROMETHEUS_MULTIPROC_DIR``, and the prediction log's writer process inherits it from there.

Each directory has a lock file beside it, held by its server's process for as long as it
runs. The directory and the lock go when that process exits; a start removes those whose lock
no one holds any more (a server that was killed), never a running server's.

That knob is a BentoML internal (BentoML is pinned exactly in pyproject.toml): it is checked when
set (BentoML must hand back the directory), a failed check logs a warning and leaves BentoML's
shared directory in place, and ``CREDITFLOW_OWN_METRICS_DIR=0`` keeps BentoML's own behaviour.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import logging
import os
import shutil
import uuid
from pathlib import Path

log = logging.getLogger(__name__)

# Under BENTOML_HOME, beside (never inside) BentoML's own directory, which its start empties.
METRICS_FOLDER = "metrics"


def _locked(path: Path, mode: str = "r"):
    """An open file on ``path`` with an exclusive lock, or None if another process holds it (or
    the file is gone)."""
    try:
        handle = path.open(mode)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def _remove(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    directory.with_suffix(".lock").unlink(missing_ok=True)  # last: the directory is gone


def _sweep(root: Path) -> None:
    """Removes the directories of servers that are gone (their lock is free)."""
    for lock in root.glob("*.lock"):
        handle = _locked(lock)
        if handle is not None:
            with handle:
                _remove(lock.with_suffix(""))
    for directory in root.iterdir():  # a directory without its lock: its server is gone
        if directory.is_dir() and not directory.with_suffix(".lock").exists():
            shutil.rmtree(directory, ignore_errors=True)


def own_metrics_dir(bentoml_home: Path) -> Path | None:
    """Gives the server this process starts a multiprocess directory of its own, returned; in a
    worker of such a server (``PROMETHEUS_MULTIPROC_DIR`` already one of ours), nothing: None.

    Called when the service module is imported, before BentoML prepares the directory."""
    try:
        from bentoml._internal.configuration.containers import BentoMLContainer

        knob = BentoMLContainer.prometheus_multiproc_dir
    except (ImportError, AttributeError) as err:
        log.warning("BentoML's metrics directory cannot be set (%s): servers on one home share "
                    "BentoML's own, which each start empties", err)  # fmt: skip
        return None
    root = bentoml_home / METRICS_FOLDER
    current = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if current and Path(current).parent == root:
        return None  # a worker: its server's directory is already set
    root.mkdir(parents=True, exist_ok=True)
    _sweep(root)
    directory = root / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    # Locked before it is visible, so that no sweep ever sees it free while we run.
    staged = root / f".{directory.name}.lock-new"
    handle = _locked(staged, "w")
    assert handle is not None, staged  # a new file, ours alone
    staged.rename(directory.with_suffix(".lock"))
    knob.set(str(directory))
    if knob.get() != str(directory):  # the internal no longer does what it did
        log.warning("BentoML did not take the metrics directory %s: servers on one home share "
                    "BentoML's own, which each start empties", directory)  # fmt: skip
        _remove(directory)
        handle.close()
        return None

    owner = os.getpid()

    def remove_when_stopped() -> None:
        if os.getpid() == owner:  # not in a forked child
            _remove(directory)
            with contextlib.suppress(OSError):
                handle.close()

    atexit.register(remove_when_stopped)
    return directory
