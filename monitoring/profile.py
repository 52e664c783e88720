"""whylogs profiles: the statistical fingerprint of a data set, for drift monitoring.

Each model stores its development sample (the training rows' features, see
``creditflow.model.registry.REFERENCE_FILE``); its profile is the reference that serving traffic
is compared with. whylogs stays behind this package: training and serving never import it.

whylogs 1.6 (its last release) still uses ``np.unicode_``, removed in numpy 2; the alias below
restores it before whylogs is imported, here and nowhere else.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from creditflow.model.registry import REFERENCE_FILE

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


def reference_profile(model_dir: Path):
    """The profile of a stored model's development sample (``model_dir``: the model's folder)."""
    return profile(pd.read_parquet(Path(model_dir) / REFERENCE_FILE))
