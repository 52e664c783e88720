"""Post-processing of the trained model: probabilities, decisions, rules and reason codes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from creditflow.contract import LOANS
from creditflow.ingestion.offline import read_table
from creditflow.model import registry
from creditflow.model.booster_calls import (
    BoosterCalls,
    PublicCalls,
    booster_calls,
    probe_rows,
)
from creditflow.model.leaf_tables import FEW_ROWS, LeafTables, leaf_tables
from creditflow.postprocessing.policy import decide
from creditflow.postprocessing.predict import Predictor
from creditflow.preprocessing.encoding import training_frame
from creditflow.store.point_in_time import historical_features
from creditflow.training.dataset import entity_frame


def _columns(frame: pd.DataFrame, names) -> dict[str, list]:
    """Joined features as the online store returns them: lists, None where missing."""
    return {n: frame[n].astype(object).where(frame[n].notna(), None).tolist() for n in names}


@pytest.fixture(scope="module")
def joined(demo_home):
    """The trained model and 2,000 loans with point-in-time features."""
    model = registry.load(demo_home.training["model_tag"])
    loans = read_table(demo_home.settings, LOANS).sample(2000, random_state=4)
    frame = historical_features(entity_frame(loans), model.contract.service, demo_home.settings)
    return model, frame


@pytest.fixture(scope="module", params=["fast", "public"])
def scored(request, joined):
    """The predictor's answers for the loans, with the fast paths (C calls, leaf tables) and
    with XGBoost's public API only (CREDITFLOW_FAST_PATHS=0): both held to the same tests."""
    model, frame = joined
    predictor = Predictor(model, fast_paths=request.param == "fast")
    return model, predictor, frame, predictor.predict(_columns(frame, model.contract.names))


def _feature_types(model) -> list[str]:
    return ["c" if n in model.contract.categorical else "q" for n in model.contract.names]


@pytest.mark.parametrize("evaluator", ["calls", "tables"])
def test_tree_evaluators_equal_xgboosts_public_api(scored, evaluator):
    """The C calls of model/booster_calls.py and the leaf tables of
    model/leaf_tables.py, bit for bit against DMatrix predictions with the feature names
    and types: categorical splits, unknown categories and missing values included."""
    model, predictor, frame, _ = scored
    trees = getattr(predictor, evaluator)
    if not predictor.fast_paths:  # the public API for every row, no tables
        assert isinstance(predictor.calls, PublicCalls) and predictor.tables is None
        trees = predictor.calls
    else:  # the trained model passed both probe checks
        assert isinstance(predictor.calls, BoosterCalls) and trees is not None
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


def test_leaf_tables_unused_when_they_differ_from_xgboost(joined, caplog):
    """Tables checked against other trees than their own are refused, with the reason logged."""
    model, _ = joined
    begin, end = model.iteration_range
    other = BoosterCalls(model.booster, (begin, end - 1), nthread=1)
    assert leaf_tables(model.booster, model.iteration_range, other) is None
    assert "margin differs from XGBoost's" in caplog.text


class _OffByOneUlp(BoosterCalls):
    """C calls whose answer for one probe row is one float32 step off (no other change)."""

    corrupt = "margin"

    def _nudged(self, out):
        out.flat[7] = np.nextafter(out.flat[7], np.float32(np.inf))
        return out

    def margin(self, matrix):
        out = super().margin(matrix)
        return self._nudged(out) if self.corrupt == "margin" and len(out) > 7 else out

    def contributions(self, matrix):
        out = super().contributions(matrix)
        return self._nudged(out) if self.corrupt == "contributions" and len(out) > 7 else out


class _SymbolGone(BoosterCalls):
    """As if a later XGBoost no longer exported a C function."""

    def __init__(self, *args, **kwargs):
        raise AttributeError("undefined symbol: XGBoosterPredictFromDense")


@pytest.mark.parametrize("corrupt", ["margin", "contributions", "missing symbol"])
def test_c_calls_unused_when_they_differ_from_the_public_api(joined, corrupt, caplog):
    """The load-time check: C calls that answer one probe row one step off, or cannot be
    loaded, are replaced by the public API, with a warning; the answers are the public API's."""
    model, frame = joined
    calls = _SymbolGone if corrupt == "missing symbol" else type(
        "Corrupted", (_OffByOneUlp,), {"corrupt": corrupt})  # fmt: skip
    trees = booster_calls(model.booster, model.iteration_range, 1, calls=calls)
    assert isinstance(trees, PublicCalls)
    assert "XGBoost C calls unused" in caplog.text
    why = "XGBoosterPredictFromDense" if calls is _SymbolGone else f"their {corrupt} differs"
    assert why in caplog.text
    data = xgb.DMatrix(training_frame(frame, model.contract), enable_categorical=True)
    codes = Predictor(model).encoder.encode_columns(_columns(frame, model.contract.names))
    np.testing.assert_array_equal(
        trees.margin(codes),
        model.booster.predict(data, output_margin=True, iteration_range=model.iteration_range),
    )
    np.testing.assert_array_equal(
        trees.contributions(codes),
        model.booster.predict(
            data, pred_contribs=True, approx_contribs=True, iteration_range=model.iteration_range
        ),
    )
    caplog.clear()  # the genuine C calls pass the same check
    assert isinstance(booster_calls(model.booster, model.iteration_range, 1), BoosterCalls)
    assert "unused" not in caplog.text


@pytest.mark.parametrize("table", ["values", "contributions_by_node"])
def test_leaf_tables_unused_when_one_table_value_is_corrupted(joined, table, caplog):
    """One entry of one leaf off by 0.001, at a leaf the probe rows reach: refused."""
    model, _ = joined

    class Corrupted(LeafTables):
        def __init__(self, booster, iteration_range):
            super().__init__(booster, iteration_range)
            leaf = self.leaves(probe_rows(booster))[0, 0]
            entries = getattr(self, table)
            entry = (leaf,) if entries.ndim == 1 else (leaf, -1)  # a value, or the bias
            entries[entry] += np.float32(1e-3)

    public = PublicCalls(model.booster, model.iteration_range, 1)
    assert leaf_tables(model.booster, model.iteration_range, public) is not None
    assert leaf_tables(model.booster, model.iteration_range, public, build=Corrupted) is None
    name = "margin" if table == "values" else "contributions"
    assert f"leaf tables unused, XGBoost scores every row: their {name} differs" in caplog.text


def test_fast_paths_setting_selects_the_public_api(joined, monkeypatch):
    """CREDITFLOW_FAST_PATHS=0: no C calls, no leaf tables."""
    model, _ = joined
    monkeypatch.setenv("CREDITFLOW_FAST_PATHS", "0")
    predictor = Predictor(model)
    assert not predictor.fast_paths and predictor.tables is None
    assert predictor.trees(1) is predictor.calls and isinstance(predictor.calls, PublicCalls)
    monkeypatch.setenv("CREDITFLOW_FAST_PATHS", "1")
    predictor = Predictor(model)
    assert isinstance(predictor.trees(1), LeafTables)
    assert isinstance(predictor.trees(FEW_ROWS + 1), BoosterCalls)


def test_both_modes_give_the_same_answers(joined):
    """One row at a time (the leaf tables) and all at once (the C calls) against the public
    API's answers, reasons included."""
    model, frame = joined
    columns = _columns(frame.iloc[:200], model.contract.names)
    fast, public = Predictor(model, fast_paths=True), Predictor(model, fast_paths=False)
    for rows in [slice(i, i + 1) for i in range(0, 200, 5)] + [slice(0, 200)]:
        chunk = {n: v[rows] for n, v in columns.items()}
        ours, theirs = fast.predict(chunk), public.predict(chunk)
        for field in ("probability", "decision", "decided_by", "fired", "reason_index",
                      "reason_contribution"):  # fmt: skip
            np.testing.assert_array_equal(getattr(ours, field), getattr(theirs, field))


def test_a_few_rows_answer_as_many_do(scored):
    """Few rows go through the leaf tables, many through XGBoost: the same answers."""
    model, predictor, frame, answers = scored
    columns = _columns(frame.iloc[:240], model.contract.names)
    few = predictor.tables if predictor.fast_paths else predictor.calls
    assert predictor.trees(FEW_ROWS) is few
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
    ordered = np.nan_to_num(contributions, nan=-np.finfo(np.float64).max)  # none: last
    assert (np.diff(ordered, axis=1) <= 0).all()  # strongest first
    assert (contributions[~np.isnan(contributions)] > 0).all()
    named = np.take_along_axis(answers.missing[~approved], np.maximum(explained, 0), axis=1)
    assert not (named & (explained >= 0)).any()  # a missing feature is reported, not a reason
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
