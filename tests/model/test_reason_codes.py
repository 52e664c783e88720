"""Reason codes a person can read: a feature the store did not have is reported as missing,
never as a reason with a null value (e.g. ``state: null`` for an unknown zipcode)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from creditflow.batch.score import score_batch
from creditflow.bento.scoring import Scorer
from creditflow.contract import APPLICATIONS, LOANS, ZIPCODES
from creditflow.ingestion.offline import read_table
from creditflow.model import registry
from creditflow.store.features import get_store

UNKNOWN_ZIPCODE = 99999  # in no demo world: the store has no zipcode features for it


@pytest.fixture(scope="module")
def unknown_zipcode(demo_home):
    """The model, its zipcode features, and 200 real applicants living at an unknown zipcode."""
    model = registry.load(demo_home.training["model_tag"])
    zipcode_features = [c.name for c in ZIPCODES.columns if c.name in model.contract.names]
    assert zipcode_features, "the model uses zipcode features"
    loans = read_table(demo_home.settings, LOANS).drop_duplicates("dob_ssn", keep="last")
    sample = loans.sample(200, random_state=7)[APPLICATIONS.names].astype(object)
    applications = [{**row, "zipcode": UNKNOWN_ZIPCODE} for row in sample.to_dict("records")]
    return model, zipcode_features, applications


def test_an_unknown_zipcodes_features_are_missing_not_reasons(demo_home, unknown_zipcode):
    model, zipcode_features, applications = unknown_zipcode
    scorer = Scorer(model, get_store(demo_home.settings))
    names = model.contract.names

    scores = scorer.score(applications)

    # Precondition (else this test could not fail): XGBoost's contributions put a missing
    # zipcode feature among the top reasons of some explained applicant.
    columns = scorer.online_features(applications)
    assert all(v is None for n in zipcode_features for v in columns[n])
    matrix = scorer.predictor.encoder.encode_columns(columns)
    raw = scorer.predictor.public.contributions(matrix)[:, :-1]
    top = np.argsort(-raw, axis=1, kind="stable")[:, :3]
    zipcode_index = [names.index(n) for n in zipcode_features]
    explained = np.array([s.decision != "approve" for s in scores])
    would_name_missing = np.isin(top, zipcode_index) & (np.take_along_axis(raw, top, 1) > 0)
    assert would_name_missing[explained].any()

    assert explained.any()
    for score in scores:
        assert set(zipcode_features) <= set(score.missing_features)
        assert all(r.value is not None for r in score.reasons), score.reasons
        assert not {r.feature for r in score.reasons} & set(score.missing_features)
        assert all(r.contribution > 0 for r in score.reasons)
    assert sum(bool(s.reasons) for s in scores if s.decision != "approve") > 0.9 * explained.sum()


def test_score_batch_names_no_missing_feature_as_a_reason(demo_home, unknown_zipcode, tmp_path):
    """`creditflow score-batch` answers with the same Predictor: reason_1..3 never name a
    missing feature either."""
    model, zipcode_features, applications = unknown_zipcode
    source = tmp_path / "applications.csv"
    pd.DataFrame(applications).to_csv(source, index=False)
    output = tmp_path / "scored.parquet"
    summary = score_batch(str(source), output, at=demo_home.materialized_at,
                          model_tag=model.tag, settings=demo_home.settings)  # fmt: skip
    assert summary["scored"] == len(applications)
    scored = pd.read_parquet(output)
    assert (scored["decision"] != "approve").any()
    for _, row in scored.iterrows():
        missing = set(row["missing_features"])
        assert set(zipcode_features) <= missing
        reasons = {row[f"reason_{k}"] for k in (1, 2, 3)} - {None}
        assert not reasons & missing
