"""whylogs profiles: the statistical fingerprint of a data set, for drift monitoring.

Each model stores the profile of its training features as the reference that serving traffic
is compared with later. whylogs 1.6 (its last release) still uses ``np.unicode_``, removed in
numpy 2; the alias below restores it before whylogs is imported.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

if not hasattr(np, "unicode_"):
    np.unicode_ = np.str_  # type: ignore[attr-defined]


def profile(frame: pd.DataFrame):
    """A whylogs profile view of a frame (string columns as plain objects, as whylogs needs)."""
    import whylogs as why

    plain = frame.copy()
    for name in plain.columns:
        if isinstance(plain[name].dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(
            plain[name]
        ):
            plain[name] = plain[name].astype(object)
    return why.log(pandas=plain).profile().view()


def write_profile(frame: pd.DataFrame, path: Path) -> Path:
    profile(frame).write(str(path))
    return path


def read_profile(path: Path):
    from whylogs.core import DatasetProfileView

    return DatasetProfileView.read(str(path))
