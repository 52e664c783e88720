"""The baseline beside every model: a logistic regression on the same features.

If boosted trees cannot clearly beat it, the complexity is not paying for itself. It learns
from the same rows with the same recency weights.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from creditflow.contract import LABEL_COLUMN
from creditflow.store.features import FeatureContract
from creditflow.training.dataset import sample_weights


def baseline_probabilities(
    train: pd.DataFrame, test: pd.DataFrame, contract: FeatureContract
) -> np.ndarray:
    numeric = [n for n in contract.names if n not in contract.categorical]
    categorical = list(contract.categorical)
    prepare = ColumnTransformer([
        ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
        ("categorical", make_pipeline(
            SimpleImputer(strategy="constant", fill_value="missing"),
            OneHotEncoder(handle_unknown="ignore", min_frequency=20),
        ), categorical),
    ])  # fmt: skip
    model = make_pipeline(prepare, LogisticRegression(max_iter=2000))

    def features(df: pd.DataFrame) -> pd.DataFrame:
        out = df[list(contract.names)].copy()
        for name in categorical:
            out[name] = out[name].astype(object).where(out[name].notna(), np.nan)
        return out

    model.fit(features(train), train[LABEL_COLUMN].to_numpy(),
              logisticregression__sample_weight=sample_weights(train))  # fmt: skip
    return model.predict_proba(features(test))[:, 1]
