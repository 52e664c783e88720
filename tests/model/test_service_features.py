"""The scoring paths' feature reads against Feast's own: online in-process, and for batches.

``ServiceFeatures`` plans a FeatureService's reads once instead of per call (creditflow/
service_features.py); these tests hold it to ``get_online_features`` and to the full
FeatureService's ``get_historical_features``, and check the one place it differs on purpose:
a value older than its view's TTL is missing online, as it is in the point-in-time join.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from creditflow.features import get_service, get_store
from creditflow.service_features import ServiceFeatures
from ingestion.contract import APPLICATIONS, CREDIT_HISTORY, LOANS
from ingestion.ingest import ingest
from ingestion.offline import read_table
from ingestion.readers import RawBatch, frame_fingerprint
from training.dataset import entity_frame, historical_features

BUREAU = [c.name for c in CREDIT_HISTORY.columns if c.kind in ("int", "float")]


@pytest.fixture(scope="module")
def store(demo_home):
    return get_store(demo_home.settings)


@pytest.fixture(scope="module")
def features(demo_home, store):
    return ServiceFeatures(store, demo_home.training["feature_service"])


@pytest.fixture(scope="module")
def applications(demo_home) -> list[dict]:
    loans = read_table(demo_home.settings, LOANS).drop_duplicates("dob_ssn", keep="last")
    sample = loans.sample(300, random_state=2)[APPLICATIONS.names].astype(object)
    rows = sample.to_dict("records")
    return rows + [{**rows[0], "dob_ssn": "19000101_0100"}, {**rows[1], "zipcode": 99999}]


def test_online_reads_equal_feasts_get_online_features(
    demo_home, store, features, applications, feature_mismatches
):
    service = get_service(store, demo_home.training["feature_service"])
    theirs = store.get_online_features(features=service, entity_rows=applications).to_dict()
    ours = features.read(applications)
    assert list(ours) == list(features.names)
    assert not feature_mismatches(ours, theirs, features.names)
    assert all(ours["bankruptcies"][row] is not None for row in range(10))
    assert ours["bankruptcies"][-2] is None and ours["bankruptcies"][-1] is not None
    assert ours["total_wages"][-1] is None  # unknown zipcode


def test_batch_reads_equal_the_full_feature_service_join(
    demo_home, store, features, feature_mismatches
):
    loans = read_table(demo_home.settings, LOANS).sample(500, random_state=3)
    entities = entity_frame(loans)
    theirs = historical_features(entities, demo_home.training["feature_service"],
                                 demo_home.settings, store)  # fmt: skip
    ours = pd.DataFrame(features.historical(entities, "loan_id"))
    assert len(ours) == len(entities)
    assert ours["loan_id"].tolist() == entities["loan_id"].tolist()
    columns = {name: ours[name].tolist() for name in features.names}
    theirs = {name: theirs[name].tolist() for name in features.names}
    assert not feature_mismatches(columns, theirs, features.names)
    assert ours["debt_to_income"].notna().sum() > 400


def test_a_value_older_than_its_ttl_is_missing_online(demo_home, store, features, applications):
    view = store.get_feature_view("credit_history")
    old = pd.Timestamp.now(tz="UTC").floor("s") - view.ttl - pd.Timedelta(days=5)
    record = pd.DataFrame([{"dob_ssn": "19000101_0101", **dict.fromkeys(BUREAU, 1),
                            "event_timestamp": old, "created_timestamp": old}])  # fmt: skip
    batch = RawBatch(record, "stale", frame_fingerprint(record))
    assert ingest("credit_history", batch, demo_home.settings, push_online=True)["accepted"] == 1
    row = [{**applications[0], "dob_ssn": "19000101_0101"}]
    # Feast's online read serves the stale snapshot as if it were current ...
    refs = [f"credit_history:{name}" for name in BUREAU]
    served = store.get_online_features(features=refs, entity_rows=[{"dob_ssn": "19000101_0101"}])
    assert served.to_dict()["bankruptcies"] == [1]
    # ... the point-in-time join (what training saw) has nothing, and neither do we.
    ours = features.read(row)
    assert all(ours[name] == [None] for name in BUREAU)
    joined = features.historical(
        pd.DataFrame(row).assign(event_timestamp=pd.Timestamp.now(tz="UTC"), row=0), "row"
    )
    assert all(np.isnan(joined[name]).all() for name in BUREAU)


def test_on_demand_view_answers_one_row_as_it_answers_many(features):
    """The on-demand view computes a request's one row with Python floats and many rows with
    numpy (feature_repo/on_demand.py): the same values, missing and zero divisors included."""
    (transform,) = features.transforms
    inputs = [f.name for f in transform.view.source_request_sources["application"].schema]
    inputs += [f.name for s in transform.view.source_feature_view_projections.values()
               for f in s.features]  # fmt: skip
    rng = np.random.default_rng(5)
    rows = [
        {name: float(rng.integers(0, 4)) if rng.random() > 0.2 else None for name in inputs}
        for _ in range(400)
    ]  # fmt: skip  (zeros and None on purpose)
    rows += [{name: float(rng.uniform(1, 1e6)) for name in inputs} for _ in range(100)]
    many = transform.apply({name: [row[name] for row in rows] for name in inputs})
    for index, row in enumerate(rows):
        one = transform.apply({name: [value] for name, value in row.items()})
        for name, values in one.items():
            expected = many[name][index]
            assert values == [expected] or (expected != expected and values[0] != values[0]), (
                name, row)  # fmt: skip
    assert any(v is None for v in many["loan_to_income"])  # the edge cases were there
    assert any(v is not None for v in many["loan_to_income"])
