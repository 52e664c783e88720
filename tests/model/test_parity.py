"""Training/serving parity: the promise of the whole design.

For real applicants, the feature vector the service builds from the online store must equal
the one training builds with the point-in-time join, at a time after the newest feature value.
Held with the fast paths and with the public APIs only (CREDITFLOW_FAST_PATHS=0).
"""

import math

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from creditflow.bento.scoring import Scorer
from creditflow.contract import LOANS
from creditflow.ingestion.offline import read_table
from creditflow.model import registry
from creditflow.preprocessing.encoding import training_frame
from creditflow.store.point_in_time import historical_features
from creditflow.training.dataset import entity_frame


@pytest.fixture(scope="module")
def offline_vectors(demo_home):
    valid = read_table(demo_home.settings, LOANS)
    # One loan per applicant (the online store holds one value per entity), 300 applicants.
    sample = valid.drop_duplicates("dob_ssn", keep="last").sample(300, random_state=1)
    entities = entity_frame(sample)
    entities["event_timestamp"] = pd.Timestamp(demo_home.materialized_at)
    offline = historical_features(
        entities, demo_home.training["feature_service"], demo_home.settings
    )
    return entities, offline


@pytest.fixture(scope="module", params=["fast", "public"])
def paired_vectors(request, demo_home, offline_vectors):
    entities, offline = offline_vectors
    model = registry.load(demo_home.training["model_tag"])
    with pytest.MonkeyPatch.context() as patch:  # the setting, read when the scorer is built
        patch.setenv("CREDITFLOW_FAST_PATHS", "1" if request.param == "fast" else "0")
        scorer = Scorer(model)
    fast = request.param == "fast"
    assert scorer.predictor.fast_paths is fast and scorer.features.fast is fast
    assert (scorer.predictor.tables is not None) is fast
    request_fields = ["dob_ssn", "zipcode", *scorer.model.contract.names]
    applications = [
        {k: v for k, v in row.items() if k in request_fields}
        for row in entities.astype(object).to_dict("records")
    ]
    online = scorer.online_features(applications)
    return model, scorer, offline, online


def _same(offline_value, online_value) -> bool:
    offline_missing = offline_value is None or (
        isinstance(offline_value, float) and math.isnan(offline_value)
    )
    if offline_missing or online_value is None:
        return offline_missing and online_value is None
    if isinstance(online_value, str) or isinstance(offline_value, str):
        return offline_value == online_value
    if isinstance(online_value, int) and not isinstance(online_value, bool):
        return float(offline_value) == float(online_value) and float(online_value).is_integer()
    return math.isclose(float(offline_value), float(online_value), rel_tol=1e-9, abs_tol=0)


def test_every_feature_matches_for_300_applicants(paired_vectors):
    model, _, offline, online = paired_vectors
    mismatches = []
    for name in model.contract.names:
        for row, (off, on) in enumerate(zip(offline[name].tolist(), online[name], strict=True)):
            if not _same(off, on):
                mismatches.append((name, row, off, on))
    assert not mismatches, f"{len(mismatches)} mismatches, first: {mismatches[:5]}"


def test_the_comparison_covers_missing_and_present_values(paired_vectors):
    model, _, offline, online = paired_vectors
    present = sum(v is not None for v in online["missed_payments_1y"])
    assert present > 250  # most applicants have a fresh bureau snapshot
    assert set(model.contract.categorical) <= set(online)


def test_service_and_training_encodings_give_the_same_scores(paired_vectors):
    model, scorer, offline, online = paired_vectors
    frame = training_frame(offline, model.contract)
    expected = model.booster.predict(
        xgb.DMatrix(frame, enable_categorical=True), iteration_range=model.iteration_range
    )
    served = model.booster.inplace_predict(
        scorer.predictor.encoder.encode_columns(online), iteration_range=model.iteration_range
    )
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-7)
    # The scorer's own trees (leaf tables for one row, C calls for many, or the public API).
    one = np.concatenate([scorer.predictor.predict({n: v[i : i + 1] for n, v in online.items()})
                          .probability for i in range(0, len(served), 10)])  # fmt: skip
    calibrated = scorer.predictor.calibration.apply(expected.astype(np.float64))
    np.testing.assert_allclose(one, calibrated[::10], rtol=1e-5, atol=1e-7)
    many = scorer.predictor.predict(online).probability
    np.testing.assert_allclose(many, calibrated, rtol=1e-5, atol=1e-7)
