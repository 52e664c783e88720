"""Post-processing of the trained model: probabilities, decisions, rules and reason codes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from creditflow.booster_calls import BoosterCalls
from creditflow.encoding import training_frame
from creditflow.leaf_tables import FEW_ROWS, leaf_tables
from creditflow.policy import decide
from creditflow.predict import Predictor
from ingestion.contract import LOANS
from ingestion.offline import read_table
from training import registry
from training.dataset import entity_frame, historical_features


def _columns(frame: pd.DataFrame, names) -> dict[str, list]:
    """Joined features as the online store returns them: lists, None where missing."""
    return {n: frame[n].astype(object).where(frame[n].notna(), None).tolist() for n in names}


@pytest.fixture(scope="module")
def scored(demo_home):
    """2,000 loans with point-in-time features, and the predictor's answers for them."""
    model = registry.load(demo_home.training["model_tag"])
    loans = read_table(demo_home.settings, LOANS).sample(2000, random_state=4)
    frame = historical_features(entity_frame(loans), model.contract.service, demo_home.settings)
    columns = _columns(frame, model.contract.names)
    predictor = Predictor(model)
    return model, predictor, frame, predictor.predict(columns)


def _feature_types(model) -> list[str]:
    return ["c" if n in model.contract.categorical else "q" for n in model.contract.names]


@pytest.mark.parametrize("evaluator", ["calls", "tables"])
def test_tree_evaluators_equal_xgboosts_public_api(scored, evaluator):
    """The C calls of creditflow/booster_calls.py and the leaf tables of
    creditflow/leaf_tables.py, bit for bit against DMatrix predictions with the feature names
    and types: categorical splits, unknown categories and missing values included."""
    model, predictor, frame, _ = scored
    trees = getattr(predictor, evaluator)
    assert trees is not None  # the tables: the trained model passed the probe check
    data = xgb.DMatrix(training_frame(frame, model.contract), enable_categorical=True)
    codes = predictor.encoder.encode_columns(_columns(frame, model.contract.names))
    assert np.isnan(codes).any(axis=0).sum() >= 3  # missing values in several features
    iterations = model.iteration_range
    np.testing.assert_array_equal(
        trees.margin(codes),
        model.booster.predict(data, output_margin=True, iteration_range=iterations),
    )
    np.testing.assert_array_equal(
        trees.contributions(codes),
        model.booster.predict(
            data, pred_contribs=True, approx_contribs=True, iteration_range=iterations
        ),  # fmt: skip
    )
    assert trees.margin(codes[:0]).shape == (0,)
    with pytest.raises(ValueError, match="features"):
        trees.margin(codes[:, 1:])


def test_leaf_tables_unused_when_they_differ_from_xgboost(scored, caplog):
    """Tables checked against other trees than their own are refused, with the reason logged."""
    model, _, _, _ = scored
    begin, end = model.iteration_range
    other = BoosterCalls(model.booster, (begin, end - 1), nthread=1)
    assert leaf_tables(model.booster, model.iteration_range, other) is None
    assert "margin differs from XGBoost's" in caplog.text


def test_a_few_rows_answer_as_many_do(scored):
    """Few rows go through the leaf tables, many through XGBoost: the same answers."""
    model, predictor, frame, answers = scored
    columns = _columns(frame.iloc[:240], model.contract.names)
    assert predictor.trees(FEW_ROWS) is predictor.tables
    assert predictor.trees(len(frame)) is predictor.calls
    for start in range(0, 240, FEW_ROWS):
        few = predictor.predict({n: v[start : start + FEW_ROWS] for n, v in columns.items()})
        rows = slice(start, start + FEW_ROWS)
        np.testing.assert_array_equal(few.probability, answers.probability[rows])
        np.testing.assert_array_equal(few.decision, answers.decision[rows])
        np.testing.assert_array_equal(few.reason_index, answers.reason_index[rows])
        np.testing.assert_array_equal(few.reason_contribution, answers.reason_contribution[rows])


def test_probabilities_are_the_models_calibrated_ones(scored):
    model, predictor, frame, answers = scored
    data = xgb.DMatrix(training_frame(frame, model.contract), enable_categorical=True)
    raw = model.booster.predict(data, iteration_range=model.iteration_range)
    np.testing.assert_allclose(answers.probability, predictor.calibration.apply(raw), rtol=1e-5)


def test_decisions_follow_the_bands_unless_a_rule_is_stricter(scored):
    _, predictor, _, answers = scored
    bands = decide(answers.probability, predictor.bands)
    by_band = answers.decided_by == np.array([f"band:{d}" for d in bands], dtype=object)
    assert (answers.decision[by_band] == bands[by_band]).all()
    overridden = ~by_band
    assert overridden.any() and by_band.any()
    severity = {"approve": 0, "review": 1, "decline": 2}
    assert all(severity[d] > severity[b] for d, b in
               zip(answers.decision[overridden], bands[overridden], strict=True))  # fmt: skip


def test_every_answer_but_an_approval_is_explained_by_contributions(scored):
    model, predictor, frame, answers = scored
    approved = answers.decision == "approve"
    assert (answers.reason_index[approved] == -1).all()
    explained = answers.reason_index[~approved]
    assert (explained[:, 0] >= 0).mean() > 0.99  # a score above the bands has a cause
    contributions = answers.reason_contribution[~approved]
    ordered = np.nan_to_num(contributions, nan=-np.inf)
    assert (np.diff(ordered, axis=1) <= 0).all()  # strongest first
    assert (contributions[~np.isnan(contributions)] > 0).all()
    # The contributions are XGBoost's own: with the bias they add up to the model's margin.
    matrix = predictor.encoder.encode_columns(_columns(frame, model.contract.names))[~approved]
    data = xgb.DMatrix(matrix, feature_names=list(model.contract.names),
                       feature_types=_feature_types(model), enable_categorical=True)  # fmt: skip
    full = model.booster.predict(data, pred_contribs=True, approx_contribs=True,
                                 iteration_range=model.iteration_range)  # fmt: skip
    margin = model.booster.predict(data, output_margin=True, iteration_range=model.iteration_range)
    np.testing.assert_allclose(full.sum(axis=1), margin, rtol=1e-4, atol=1e-4)
    top = np.take_along_axis(full[:, :-1], np.maximum(explained, 0), axis=1)
    np.testing.assert_allclose(np.where(explained >= 0, top, np.nan), contributions, rtol=1e-6)


def test_missing_features_are_reported_and_sent_to_review(scored):
    model, predictor, frame, _ = scored
    row = {n: frame[n].iloc[0] for n in model.contract.names}
    row = {n: (None if pd.isna(v) else v) for n, v in row.items()}
    row["bankruptcies"] = None
    answers = predictor.predict({n: [v] for n, v in row.items()})
    assert answers.missing[0, model.contract.names.index("bankruptcies")]
    assert "REVIEW_MISSING_FEATURES" in answers.rules_fired(0)
    assert answers.decision[0] in ("review", "decline")
