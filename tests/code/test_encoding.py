"""Serving's float32 row encoding must give the booster the same input training gave it."""

import numpy as np
import pandas as pd
import xgboost as xgb

from creditflow.preprocessing.encoding import RowEncoder, training_frame
from creditflow.store.features import FeatureContract

CONTRACT = FeatureContract(
    "svc", ("colour", "size", "weight"), ("colour",), ("String", "Int64", "Float64")
)


def _booster(frame: pd.DataFrame) -> xgb.Booster:
    rng = np.random.default_rng(0)
    label = (frame["colour"].eq("red") | (frame["size"] > 5)).astype(int)
    label = (label ^ (rng.random(len(frame)) < 0.1)).astype(int)
    data = xgb.DMatrix(training_frame(frame, CONTRACT), label=label, enable_categorical=True)
    return xgb.train({"max_depth": 3, "max_cat_to_onehot": 1}, data, num_boost_round=20)


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "colour": rng.choice(["red", "green", "blue", "white"], n),
            "size": rng.integers(0, 10, n),
            "weight": rng.normal(size=n),
        }
    )


def test_encoded_rows_predict_like_the_training_frame():
    booster = _booster(_frame(2000, 0))
    # A scoring batch with fewer categories than training, in another order: codes must come
    # from the model, not from the batch.
    batch = _frame(50, 1)
    batch.loc[batch["colour"] == "blue", "colour"] = "white"
    expected = booster.predict(
        xgb.DMatrix(training_frame(batch, CONTRACT), enable_categorical=True)
    )
    encoder = RowEncoder(booster, CONTRACT)
    columns = {name: batch[name].tolist() for name in CONTRACT.names}
    np.testing.assert_allclose(
        booster.inplace_predict(encoder.encode_columns(columns)), expected, rtol=1e-6
    )
    row = _encode_one(encoder, [batch.iloc[0][n] for n in CONTRACT.names])
    np.testing.assert_allclose(booster.inplace_predict(row), expected[:1], rtol=1e-6)


def _encode_one(encoder: RowEncoder, values) -> np.ndarray:
    """One row (values in contract order) through the few-rows path: a [1, features] matrix."""
    columns = {name: [value] for name, value in zip(CONTRACT.names, values, strict=True)}
    return encoder.encode_columns(columns)


def test_unknown_category_is_treated_as_missing():
    booster = _booster(_frame(2000, 0))
    encoder = RowEncoder(booster, CONTRACT)
    unknown = _encode_one(encoder, ["purple", 3, 0.5])
    missing = _encode_one(encoder, [None, 3, 0.5])
    assert np.isnan(unknown[0, 0])
    assert booster.inplace_predict(unknown) == booster.inplace_predict(missing)


def test_many_rows_encode_like_one_row_at_a_time():
    booster = _booster(_frame(2000, 0))
    encoder = RowEncoder(booster, CONTRACT)
    batch = _frame(3000, 2).astype(object)
    batch.loc[::7, "colour"] = None
    batch.loc[::11, "colour"] = "purple"  # unknown to the model
    batch.loc[::13, "size"] = None
    columns = {name: batch[name].tolist() for name in CONTRACT.names}
    one_at_a_time = batch[list(CONTRACT.names)].to_numpy()
    rows = np.concatenate([_encode_one(encoder, row) for row in one_at_a_time])
    np.testing.assert_array_equal(encoder.encode_columns(columns), rows)  # NaN == NaN here
