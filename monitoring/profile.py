"""whylogs profiles: the statistical fingerprint of logged traffic, per time window.

Each model stores its development sample (``creditflow.model.registry.REFERENCE_FILE``); its
profile is the reference. Logged traffic is profiled by the monitor job, off the request path,
in time windows aligned on the epoch (``thresholds.PROFILE_WINDOW``: a day; any width, an hour
say, works). A window complete at the run's ``as_of`` is written once, as a mergeable profile
file ``<profiles_dir>/<model tag>/<window start>_<width>.bin``, and reused by later runs; a
window the run only partly covers (cut by its start, or not over yet) is profiled for the run
and not kept. The run's profile is the merge of its windows'.

Sampling, declared: a window's profile is built from a uniform random sample of at most
``PROFILE_SAMPLE_ROWS`` of its rows (seeded by the window's start, so it is reproducible).
``why.log`` costs about 0.04 ms a row: a million logged answers in full would take most of a
minute, and the profiles serve only whylogs' KS / chi-square p-values, which are reported for
reading (drift is decided by PSI on every row, ``monitoring/drift.py``). Counts in these
profiles are therefore sample counts.

whylogs stays behind this package, and its numpy-2 handling is here and nowhere else:
whylogs 1.6 (its last release) still uses ``np.unicode_``, removed in numpy 2, so the alias
below restores it before whylogs is imported. Its drift algorithms live in ``whylogs.viz``,
whose package ``__init__`` imports IPython (the ``whylogs[viz]`` extra) for notebook display
alone: :func:`drift_scores` loads the algorithms without that ``__init__``.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import types
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from creditflow.model.registry import REFERENCE_FILE
from creditflow.monitoring.thresholds import PROFILE_WINDOW

if TYPE_CHECKING:
    from creditflow.config import Settings
    from creditflow.monitoring.window import Window

if not hasattr(np, "unicode_"):
    np.unicode_ = np.str_  # type: ignore[attr-defined]

# Rows profiled per time window at most (a uniform sample beyond: see the module's docstring).
PROFILE_SAMPLE_ROWS = 5_000
# Profiles a process keeps deserialized (a window's kept ones are read again by the next runs).
KEPT_PROFILES = 64
REFERENCE_PROFILE = "reference.bin"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_read_views: dict[tuple, Any] = {}  # (path, mtime, size): view, oldest first


def profile(frame: pd.DataFrame):
    """A whylogs profile view of a frame (string and categorical columns as plain objects, as
    whylogs needs)."""
    import whylogs as why

    plain = frame.copy()
    for name in plain.columns:
        column = plain[name]
        if isinstance(column.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(column):
            plain[name] = column.astype(object).where(column.notna(), None)
    return why.log(pandas=plain).profile().view()


def reference_profile(model_dir: Path):
    """The profile of a stored model's development sample (``model_dir``: the model's folder)."""
    return profile(pd.read_parquet(Path(model_dir) / REFERENCE_FILE))


def read_profile(path: Path):
    """A profile written by :func:`write_profile` (kept in memory for this process's next
    reads of the same file, as long as the file is unchanged)."""
    path = Path(path)
    found = path.stat()
    key = (str(path), found.st_mtime_ns, found.st_size)
    view = _read_views.get(key)
    if view is None:
        from whylogs.core import DatasetProfileView

        view = DatasetProfileView.deserialize(path.read_bytes())
        _keep(key, view)
    return view


def write_profile(view, path: Path) -> None:
    """Write a profile atomically (a run that dies mid-write leaves no half file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
    partial.write_bytes(view.serialize())
    os.replace(partial, path)
    found = path.stat()
    _keep((str(path), found.st_mtime_ns, found.st_size), view)


def _keep(key: tuple, view) -> None:
    """Remember a profile read or written (views are never changed in place: a merge makes a
    new one); beyond ``KEPT_PROFILES``, the earliest kept are forgotten."""
    _read_views[key] = view
    while len(_read_views) > KEPT_PROFILES:
        del _read_views[next(iter(_read_views))]


def merge(views: list):
    """One profile of several (None when there are none)."""
    return functools.reduce(lambda a, b: a.merge(b), views) if views else None


# ---------------------------------------------------------------- time windows


def aligned_windows(start: datetime, end: datetime, width: timedelta = PROFILE_WINDOW) -> list:
    """The epoch-aligned windows ``(low, low + width]`` that meet ``(start, end]``."""
    if end <= start:
        return []
    steps = (start - _EPOCH) // width
    low = _EPOCH + steps * width
    if low + width <= start:  # start on a boundary: the window ending there holds nothing
        low += width
    windows = []
    while low < end:
        windows.append((low, low + width))
        low += width
    return windows


def width_label(width: timedelta) -> str:
    """``1d``, ``1h``, ``15m`` or seconds (``90s``): part of a profile file's name."""
    seconds = int(width.total_seconds())
    if width != timedelta(seconds=seconds) or seconds <= 0:
        raise ValueError(f"a profile window must be a whole number of seconds, not {width}")
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def profile_path(settings: Settings, model_tag: str, low: datetime, width: timedelta) -> Path:
    """Where the profile of one complete window of one model's traffic is kept."""
    folder = settings.profiles_dir / model_tag.replace(":", "_")
    return folder / f"{low.astimezone(UTC):%Y%m%dT%H%M%SZ}_{width_label(width)}.bin"


def sample(rows: pd.DataFrame, low: datetime, limit: int = PROFILE_SAMPLE_ROWS) -> pd.DataFrame:
    """At most ``limit`` rows, uniformly at random, seeded by the window's start."""
    if len(rows) <= limit:
        return rows
    return rows.sample(limit, random_state=int(low.timestamp()) % 2**32)


def traffic_profile(frame: pd.DataFrame, columns: list[str]):
    """The profile of some logged rows' features and scores."""
    return profile(frame[columns])


def window_views(window: Window, live: pd.DataFrame, width: timedelta = PROFILE_WINDOW) -> dict:
    """The profile of each time window of the run (key: its start), built from ``live`` (the
    run's logged rows, sorted by time) or read back when a complete window was kept before.
    Complete windows inside the run are written for the next runs."""
    from creditflow.monitoring.logged import AT, PROBABILITY

    columns = [*window.model.contract.names, PROBABILITY]
    times = live[AT]
    views = {}
    for low, high in aligned_windows(window.start, window.as_of, width):
        complete = low >= window.start and high <= window.as_of
        path = profile_path(window.settings, window.model_tag, low, width)
        if complete and path.exists():
            views[low] = read_profile(path)
            continue
        first = times.searchsorted(pd.Timestamp(max(low, window.start)), side="right")
        last = times.searchsorted(pd.Timestamp(min(high, window.as_of)), side="right")
        rows = live.iloc[first:last]
        if rows.empty:  # nothing to keep either: rebuilding it costs nothing
            continue
        view = traffic_profile(sample(rows, low), columns)
        if complete:
            write_profile(view, path)
        views[low] = view
    return views


def window_view(window: Window, live: pd.DataFrame, width: timedelta = PROFILE_WINDOW):
    """The run's profile: its time windows' profiles merged."""
    return merge(list(window_views(window, live, width).values()))


def reference_view(window: Window):
    """The development sample's profile, with the model's scores of it; kept beside the
    model's traffic profiles once built."""
    from creditflow.monitoring.drift import reference_answers, reference_frame
    from creditflow.monitoring.logged import PROBABILITY

    path = window.settings.profiles_dir / window.model_tag.replace(":", "_") / REFERENCE_PROFILE
    if path.exists():
        return read_profile(path)
    frame = reference_frame(window)[list(window.model.contract.names)].copy()
    frame[PROBABILITY] = reference_answers(window)[PROBABILITY].to_numpy()
    view = profile(frame)
    write_profile(view, path)
    return view


# ---------------------------------------------------------------- whylogs' drift algorithms


def drift_scores(target, reference) -> dict[str, Any]:
    """whylogs' per-column drift scores (KS for numbers, chi-square for categories) of a
    profile against a reference profile: ``{column: {"algorithm", "pvalue", "statistic",
    "drift_category"}}``."""
    return _drift_algorithms().calculate_drift_scores(
        target_view=target, reference_view=reference, with_thresholds=True
    )


@functools.cache
def _drift_algorithms():
    """``whylogs.viz.drift.column_drift_algorithms`` without ``whylogs.viz.__init__`` (which
    imports IPython for notebook display when the ``whylogs[viz]`` extra is absent)."""
    import whylogs  # noqa: F401  (the parent package, with the alias above in place)

    if "whylogs.viz" not in sys.modules and importlib.util.find_spec("IPython") is None:
        folder = Path(importlib.util.find_spec("whylogs").origin).parent / "viz"
        package = types.ModuleType("whylogs.viz")
        package.__path__ = [str(folder)]
        sys.modules["whylogs.viz"] = package
    from whylogs.viz.drift import column_drift_algorithms

    return column_drift_algorithms
