"""The model trained on the demo world, and what it records about itself."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from creditflow.config import MODEL_FEATURE_SERVICE
from creditflow.contract import LABEL_COLUMN, LOANS, violations
from creditflow.model import registry
from creditflow.store.features import FeatureContract, contract_of, get_store
from creditflow.training.calibrate import fit_calibration
from creditflow.training.dataset import (
    MIN_TEST_ROWS,
    MIN_WINDOW_ROWS,
    TEST_SHARE,
    WEIGHT_COLUMN,
    recency_weights,
    recent_rows,
    sample_weights,
    time_split,
)
from creditflow.training.model import fit, predict
from creditflow.training.pipeline import MIN_VARIANT_VALID_GAIN, choose_feature_service


def test_demo_world_model_reaches_the_auc_band(demo_home):
    # Below 0.80 the features or the join are broken; above 0.95 the label leaks.
    assert 0.80 <= demo_home.training["test_auc"] <= 0.95


def test_no_labeled_row_is_lost(demo_home):
    rows = demo_home.training["rows"]
    raw = pd.read_parquet(demo_home.settings.raw_dir / "loans.parquet").reset_index(drop=True)
    ingested = demo_home.ingested["loans"]
    # Dirty loans were quarantined on the way in; every other loan reaches training.
    assert ingested["quarantined"] == int((violations(raw, LOANS) != "").sum()) > 0
    assert rows["labeled"] == ingested["accepted"] == len(raw) - ingested["quarantined"]
    assert rows["invalid_dropped"] == 0
    assert rows["joined"] == rows["labeled"]
    assert rows["train"] + rows["valid"] + rows["test"] == rows["joined"]


def test_model_metadata_describes_its_contract_and_window(demo_home):
    model = registry.load(demo_home.training["model_tag"])
    meta = model.metadata
    chosen = demo_home.training["feature_service"]  # by validation, among the contract's variants
    contract = contract_of(get_store(demo_home.settings), chosen)
    assert meta["feature_service"] == chosen == meta["feature_selection"]["feature_service"]
    assert tuple(meta["feature_names"]) == contract.names
    assert tuple(meta["categorical_features"]) == contract.categorical
    assert meta["feature_types"]["person_age"] == "Int64"
    assert meta["feature_types"]["loan_intent"] == "String"
    assert meta["feature_types"]["debt_to_income"] == "Float64"
    assert list(model.booster.feature_names) == list(contract.names)
    windows = meta["window"]
    assert windows["train"][1] <= windows["valid"][0] <= windows["valid"][1] <= windows["test"][0]
    assert (
        meta["metrics"]["test"]["roc_auc"] == demo_home.training["test_auc"]
        or abs(meta["metrics"]["test"]["roc_auc"] - demo_home.training["test_auc"]) < 1e-4
    )
    assert {"xgboost", "feast", "bentoml"} <= set(meta["versions"])


def test_model_carries_calibration_bands_lineage_report_and_profile(demo_home):
    from pathlib import Path

    import bentoml

    from creditflow.monitoring.profile import reference_profile

    model = registry.load(demo_home.training["model_tag"])
    meta = model.metadata
    assert meta["calibration"]["method"] in ("none", "isotonic", "platt")
    bands = meta["decision_bands"]
    assert 0 <= bands["approve_below"] <= bands["decline_at"] <= 1
    assert len(meta["feature_definitions_hash"]) == 16
    assert meta["code_version"]
    assert meta["tuning"]["trials"] >= 1
    variants = {v["feature_service"]: v for v in meta["feature_variants"]}
    assert MODEL_FEATURE_SERVICE in variants and len(variants) >= 2
    assert sum(v["best_by_validation"] for v in variants.values()) == 1
    stored = Path(bentoml.models.get(demo_home.training["model_tag"]).path)
    report = json.loads((stored / "report.json").read_text())
    assert report["models"][f"candidate {demo_home.training['model_tag']}"]["roc_auc"] == (
        pytest.approx(meta["metrics"]["test"]["roc_auc"])
    )
    assert any(name.startswith("baseline") for name in report["models"])
    assert Path(demo_home.training["report"]).exists()
    reference = pd.read_parquet(stored / meta["reference_data"])
    assert list(reference.columns) == list(model.contract.names)
    assert len(reference) == meta["rows"]["train"]
    profile = reference_profile(stored).to_pandas()
    assert set(model.contract.names) <= set(profile.index)
    assert profile.loc["loan_amnt", "counts/n"] == meta["rows"]["train"]


def test_the_feature_service_is_chosen_on_the_validation_window(demo_home):
    meta = registry.load(demo_home.training["model_tag"]).metadata
    selection, rows = meta["feature_selection"], meta["feature_variants"]
    assert selection["how"] == "validation" and selection["why"]
    chosen = [row["feature_service"] for row in rows if row["chosen"]]
    assert chosen == [selection["feature_service"]]
    assert all("test_auc" not in row for row in rows)  # the test window judges the final model only
    best = max(rows, key=lambda row: row["valid_auc"])
    contract = next(row for row in rows if row["feature_service"] == MODEL_FEATURE_SERVICE)
    expected = (best if best["valid_auc"] >= contract["valid_auc"] + MIN_VARIANT_VALID_GAIN
                else contract)  # fmt: skip
    assert selection["feature_service"] == expected["feature_service"]
    assert demo_home.training["feature_selection"] == selection


def test_a_variant_replaces_the_contract_only_by_a_clear_validation_win():
    def rows(**valid_auc):
        return [{"feature_service": name, "valid_auc": auc} for name, auc in valid_auc.items()]

    assert choose_feature_service(rows(base=0.80, wide=0.82, narrow=0.79), "base")[0] == "wide"
    close = rows(base=0.80, wide=0.80 + MIN_VARIANT_VALID_GAIN / 2)
    chosen, why = choose_feature_service(close, "base")
    assert chosen == "base" and "wide leads by" in why
    assert choose_feature_service(rows(base=0.85, wide=0.82), "base")[0] == "base"


def test_training_records_missing_shares_and_the_rules_that_apply(demo_home):
    meta = registry.load(demo_home.training["model_tag"]).metadata
    shares = meta["training_missing_share"]
    assert set(shares) == set(meta["feature_names"])
    assert shares["person_income"] == 0.0 and 0 < shares["bankruptcies"] < 0.2  # thin files
    assert demo_home.training["warnings"] == meta["warnings"] == []
    assert meta["rules"]["missing_watched"] == meta["feature_names"]  # the model had them all
    assert meta["rules"]["not_applicable"] == {}
    assert demo_home.training["training_missing_share"] == shares
    report = json.loads(Path(demo_home.training["report"]).with_suffix(".json").read_text())
    assert report["details"]["missing in the training rows (share, by feature)"] == shares
    assert report["details"]["feature service"] == meta["feature_selection"]


# --- Recency: the settings' training window and half-life weights (no home needed) ---

NEWEST = pd.Timestamp("2026-03-01", tz="UTC")
ONE_FEATURE = FeatureContract("one_feature", ("x",), (), ("Float64",))


def _aged(ages_days: np.ndarray, **columns) -> pd.DataFrame:
    times = NEWEST - pd.to_timedelta(np.asarray(ages_days, dtype=float), unit="D")
    return pd.DataFrame({LOANS.timestamp: times, **columns})


def test_recency_weights_halve_every_half_life():
    frame = _aged([0, 3, 6, 1.5])
    weights = recency_weights(frame[LOANS.timestamp], half_life_days=3.0)
    np.testing.assert_allclose(weights, [1, 0.5, 0.25, 2**-0.5])
    frame[WEIGHT_COLUMN] = weights
    assert sample_weights(frame).mean() == pytest.approx(1.0)  # scaled, in the same ratios
    assert sample_weights(frame)[0] / sample_weights(frame)[1] == pytest.approx(2.0)
    assert sample_weights(frame.drop(columns=WEIGHT_COLUMN)) is None


def test_a_training_window_keeps_the_recent_rows_or_the_newest_minimum():
    frame = _aged(np.arange(0, 100, 0.01)[::-1])  # 100 rows a day for 100 days, oldest first
    kept, described = recent_rows(frame, window_days=40)
    ages = (NEWEST - kept[LOANS.timestamp]).dt.total_seconds() / 86_400
    assert len(kept) == 4_000 and ages.max() < 40 and not described["widened"]
    # 10 days hold fewer rows than a test window of MIN_TEST_ROWS needs: the newest are kept.
    kept, described = recent_rows(frame, window_days=10)
    assert MIN_WINDOW_ROWS * TEST_SHARE >= MIN_TEST_ROWS
    assert len(kept) == MIN_WINDOW_ROWS and described["widened"]
    assert kept[LOANS.timestamp].min() == frame[LOANS.timestamp].nlargest(MIN_WINDOW_ROWS).min()
    assert recent_rows(frame, None)[0] is frame


def test_the_time_split_never_splits_one_event_time():
    # Ten days of 100 rows each, every row of a day at the same time (as a day's batch is).
    frame = _aged(np.repeat(np.arange(10)[::-1], 100), loan_id=np.arange(1_000))
    train, valid, test = time_split(frame, test_share=0.25, valid_share=0.1)
    assert len(train) + len(valid) + len(test) == len(frame)
    assert len(test) == 300 and len(valid) == 100  # whole days, each window at least its share
    assert train[LOANS.timestamp].max() < valid[LOANS.timestamp].min()
    assert valid[LOANS.timestamp].max() < test[LOANS.timestamp].min()
    # What `creditflow retrain` compares on, the rows after the validation window, is the test.
    after = frame[frame[LOANS.timestamp] > valid[LOANS.timestamp].max()]
    assert set(after["loan_id"]) == set(test["loan_id"])


def _two_regimes(seed: int = 0) -> pd.DataFrame:
    """Many old outcomes where default rises with x, a few recent ones where it falls."""
    rng = np.random.default_rng(seed)
    ages = np.r_[rng.uniform(20, 200, 6_000), rng.uniform(0, 5, 1_500)]
    x = rng.uniform(-1, 1, len(ages))
    slope = np.where(ages >= 20, 3.0, -3.0)
    defaulted = rng.random(len(ages)) < 1 / (1 + np.exp(-slope * x))
    frame = _aged(ages, x=x, **{LABEL_COLUMN: defaulted.astype(int)})
    frame[WEIGHT_COLUMN] = recency_weights(frame[LOANS.timestamp], half_life_days=2.0)
    return frame.sort_values(LOANS.timestamp, kind="stable").reset_index(drop=True)


def test_recency_weights_make_the_model_follow_the_newest_outcomes():
    frame = _two_regimes()
    valid = frame.index % 5 == 0  # both regimes in both parts
    probe = pd.DataFrame({"x": [-0.8, 0.8]})

    def default_rate_falls_with_x(data: pd.DataFrame) -> bool:
        booster = fit(data[~valid], data[valid], ONE_FEATURE)
        low, high = predict(booster, probe, ONE_FEATURE)
        return bool(low > high)

    assert default_rate_falls_with_x(frame)  # the recent regime
    assert not default_rate_falls_with_x(frame.drop(columns=WEIGHT_COLUMN))  # the majority's


def test_weights_reach_the_calibration():
    rng = np.random.default_rng(1)
    scores = rng.uniform(0.1, 0.3, 8_000)
    heavy = np.arange(len(scores)) % 2 == 0  # interleaved: each half of the window has both
    # The heavy rows default at 0.9 x their score, the others at half of it.
    labels = (rng.random(len(scores)) < np.where(heavy, 0.9, 0.5) * scores).astype(int)
    weighted, _ = fit_calibration(labels, scores, np.where(heavy, 1.0, 1e-3))
    plain, _ = fit_calibration(labels, scores)
    assert weighted.method != "none" and plain.method != "none"
    at = np.array([0.2])
    assert weighted.apply(at)[0] > 0.16 > 0.15 > plain.apply(at)[0]


def test_the_development_sample_of_feedback_rows_is_the_scored_population(home):
    """Outcomes exist only for approved loans: a model trained mostly on them is compared, by
    the drift checks, with every application the service answered over the same period."""
    from creditflow.db import get_engine
    from creditflow.feedback.logged_predictions import prediction_row, write_predictions
    from creditflow.training.reference import development_sample

    contract = FeatureContract("two", ("x", "kind"), ("kind",), ("Float64", "String"))
    application = {"dob_ssn": "19800101_1234", "zipcode": 12345}
    answers = [  # ten days, 100 answers a day: the approved ones x < 0.3, the declined x >= 0.3
        prediction_row(home, application, NEWEST - pd.Timedelta(days=day),
                       decision="approve" if x < 0.3 else "decline",
                       features={"x": x, "kind": "a" if x < 0.5 else "b"})
        for day in range(10) for x in np.linspace(0, 1, 100)
    ]  # fmt: skip
    write_predictions(get_engine(home), answers)
    approved = _aged(np.repeat(np.arange(10), 30), x=np.tile(np.linspace(0, 0.29, 30), 10),
                     kind="a", loan_id=-np.arange(1, 301))  # fmt: skip
    reference, described = development_sample(home, approved, contract)
    assert described["source"].startswith("answers logged") and len(reference) == len(approved)
    assert reference["x"].max() > 0.9 and set(reference["kind"]) == {"a", "b"}  # declined too
    assert reference["x"].dtype == approved["x"].dtype
    # Ingested loans (ids of 0 or more) are the population themselves.
    loans = approved.assign(loan_id=np.arange(300))
    reference, described = development_sample(home, loans, contract)
    assert described["source"] == "training rows"
    pd.testing.assert_frame_equal(reference, loans[["x", "kind"]])
