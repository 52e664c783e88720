"""Turning feature values into model input, the same way for training and for serving.

XGBoost's native categorical support keeps the category encoding inside the model: training
hands it pandas categoricals, and the booster stores their categories. Serving reads those
categories back from the booster to map strings to codes on a float32 row, which avoids the
cost of a per-request DataFrame and DMatrix (figures: docs/benchmarks.md). No separate encoder
exists to drift.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from creditflow.store.features import FeatureContract


def training_frame(df: pd.DataFrame, contract: FeatureContract) -> pd.DataFrame:
    """The model's input frame: contract columns in order, categoricals as ``category``."""
    missing = [name for name in contract.names if name not in df.columns]
    if missing:
        raise KeyError(f"feature columns missing from the training data: {missing}")
    out = pd.DataFrame(index=df.index)
    for name in contract.names:
        if name in contract.categorical:
            values = df[name].astype(object).where(df[name].notna(), None)
            out[name] = pd.Categorical(values, categories=sorted(values.dropna().unique()))
        else:
            out[name] = pd.to_numeric(df[name], errors="raise").astype("float64")
    return out


MANY_ROWS = 1000  # from here on categoricals are encoded by pandas, not row by row


class RowEncoder:
    """Encodes feature values into float32 rows using the booster's own categories."""

    def __init__(self, booster: xgb.Booster, contract: FeatureContract) -> None:
        if list(booster.feature_names or []) != list(contract.names):
            raise ValueError("the booster's features differ from the model's feature contract")
        self.names = contract.names
        categories = dict(booster.get_categories(export_to_arrow=True).to_arrow())
        self.codes: dict[int, dict[str, float]] = {}
        for index, name in enumerate(self.names):
            if name in contract.categorical:
                values = categories.get(name)
                if values is None:
                    raise ValueError(f"the booster has no categories for {name!r}")
                self.codes[index] = {str(v): float(i) for i, v in enumerate(values.to_pylist())}

    def encode_columns(self, columns: Mapping[str, Sequence[Any]]) -> np.ndarray:
        """Many rows given as columns (lists, as Feast's online response returns them, or
        arrays); None or NaN is missing, an unknown category is NaN."""
        n_rows = len(columns[self.names[0]])
        if n_rows <= MANY_ROWS:  # a few rows: one conversion beats one per column
            return self._encode_few(columns, n_rows)
        matrix = np.empty((n_rows, len(self.names)), dtype=np.float32)
        for index, name in enumerate(self.names):
            column = columns[name]
            if index in self.codes:
                known = pd.Categorical(column, categories=list(self.codes[index])).codes
                matrix[:, index] = np.where(known < 0, np.nan, known)
            else:
                matrix[:, index] = np.asarray(column, dtype=np.float64)  # None -> NaN
        return matrix

    def _encode_few(self, columns: Mapping[str, Sequence[Any]], n_rows: int) -> np.ndarray:
        values = [
            [self.codes[index].get(v, np.nan) for v in columns[name]]
            if index in self.codes
            else columns[name]
            for index, name in enumerate(self.names)
        ]
        if not n_rows:
            return np.empty((0, len(self.names)), dtype=np.float32)
        return np.array(list(zip(*values, strict=True)), dtype=np.float32)  # None -> NaN
