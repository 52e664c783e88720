"""The scoring paths' feature reads against Feast's own: online in-process, and for batches.

``ServiceFeatures`` plans a FeatureService's reads once instead of per call (creditflow/
service_features.py); these tests hold it to ``get_online_features`` and to the full
FeatureService's ``get_historical_features``, and check the one place it differs on purpose:
a value older than its view's TTL is missing online, as it is in the point-in-time join.
Every test runs with the hand-made read (fast) and with Feast's public path only
(CREDITFLOW_FAST_PATHS=0), and the hand-made read's load-time check is made to fail once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from creditflow.contract import APPLICATIONS, CREDIT_HISTORY, LOANS
from creditflow.ingestion.ingest import ingest
from creditflow.ingestion.offline import read_table
from creditflow.ingestion.readers import RawBatch, frame_fingerprint
from creditflow.store.features import get_service, get_store
from creditflow.store.point_in_time import historical_features
from creditflow.store.service_features import ServiceFeatures, _Transform
from creditflow.training.dataset import entity_frame

BUREAU = [c.name for c in CREDIT_HISTORY.columns if c.kind in ("int", "float")]


@pytest.fixture(scope="module")
def store(demo_home):
    return get_store(demo_home.settings)


@pytest.fixture(scope="module", params=["fast", "public"])
def mode(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def features(mode, demo_home, store):
    return ServiceFeatures(store, demo_home.training["feature_service"], fast_paths=mode == "fast")


@pytest.fixture(scope="module")
def applications(demo_home) -> list[dict]:
    loans = read_table(demo_home.settings, LOANS).drop_duplicates("dob_ssn", keep="last")
    sample = loans.sample(300, random_state=2)[APPLICATIONS.names].astype(object)
    rows = sample.to_dict("records")
    return rows + [{**rows[0], "dob_ssn": "19000101_0100"}, {**rows[1], "zipcode": 99999}]


def test_online_reads_equal_feasts_get_online_features(
    demo_home, store, mode, features, applications, feature_mismatches
):
    service = get_service(store, demo_home.training["feature_service"])
    theirs = store.get_online_features(features=service, entity_rows=applications).to_dict()
    ours = features.read(applications)
    assert list(ours) == list(features.names)
    assert not feature_mismatches(ours, theirs, features.names)
    assert all(ours["bankruptcies"][row] is not None for row in range(10))
    assert ours["bankruptcies"][-2] is None and ours["bankruptcies"][-1] is not None
    assert ours["total_wages"][-1] is None  # unknown zipcode
    # The fast read compared itself with the public one on stored values, and passed.
    assert (features.fast, features.checked) == ((True, True) if mode == "fast" else (False, False))
    features.probe()  # readiness, either way


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


@pytest.fixture(scope="module")
def stale_applicant(demo_home, store) -> str:
    """An applicant whose only bureau snapshot is older than the view's TTL, online."""
    view = store.get_feature_view("credit_history")
    old = pd.Timestamp.now(tz="UTC").floor("s") - view.ttl - pd.Timedelta(days=5)
    record = pd.DataFrame([{"dob_ssn": "19000101_0101", **dict.fromkeys(BUREAU, 1),
                            "event_timestamp": old, "created_timestamp": old}])  # fmt: skip
    batch = RawBatch(record, "stale", frame_fingerprint(record))
    assert ingest("credit_history", batch, demo_home.settings, push_online=True)["accepted"] == 1
    return "19000101_0101"


def test_a_value_older_than_its_ttl_is_missing_online(
    store, features, applications, stale_applicant
):
    row = [{**applications[0], "dob_ssn": stale_applicant}]
    # Feast's online read serves the stale snapshot as if it were current ...
    refs = [f"credit_history:{name}" for name in BUREAU]
    served = store.get_online_features(features=refs, entity_rows=[{"dob_ssn": stale_applicant}])
    assert served.to_dict()["bankruptcies"] == [1]
    # ... the point-in-time join (what training saw) has nothing, and neither do we.
    ours = features.read(row)
    assert all(ours[name] == [None] for name in BUREAU)
    assert ours["debt_to_income"] == [None]  # computed without the stale dues
    fresh = features.read(applications[:1])
    assert fresh["bankruptcies"] != [None] and fresh["debt_to_income"] != [None]
    joined = features.historical(
        pd.DataFrame(row).assign(event_timestamp=pd.Timestamp.now(tz="UTC"), row=0), "row"
    )
    assert all(np.isnan(joined[name]).all() for name in BUREAU)


class _OneValueOff(ServiceFeatures):
    """A hand-made read that gets one value wrong: a stored one, or an on-demand output."""

    wrong = "bankruptcies"
    fast_reads = 0

    def _fast_values(self, rows, now):
        self.fast_reads += 1
        values = super()._fast_values(rows, now)
        column = values[self.wrong]
        row = next(i for i, value in enumerate(column) if value is not None)
        column[row] = column[row] + 1
        return values


@pytest.mark.parametrize("wrong", ["bankruptcies", "debt_to_income"])
def test_hand_made_read_unused_when_it_differs_from_feasts(
    demo_home, store, applications, feature_mismatches, wrong, caplog
):
    """The load-time check: one value off, and the read falls back to Feast's public path for
    good, with a warning; the answers are Feast's."""
    name = demo_home.training["feature_service"]
    features = type("Corrupted", (_OneValueOff,), {"wrong": wrong})(store, name, fast_paths=True)
    theirs = store.get_online_features(
        features=get_service(store, name), entity_rows=applications
    ).to_dict()
    ours = features.read(applications)
    warning = "hand-made feature read unused, Feast's public API serves every read"
    assert f"{warning}: {wrong} of row" in caplog.text
    assert not features.fast and not features.checked
    assert not feature_mismatches(ours, theirs, features.names)
    again = features.read(applications[:20])
    assert features.fast_reads == 1  # the public path from then on
    assert not feature_mismatches(again, {n: v[:20] for n, v in theirs.items()}, features.names)


class _InternalsGone(ServiceFeatures):
    """As if Feast's SQLite store had lost the private ``_get_conn`` the mmap pragma uses."""

    @property
    def online_store(self):
        raise AttributeError("'SqliteOnlineStore' object has no attribute '_get_conn'")


def test_hand_made_read_unused_when_feast_internals_are_gone(
    demo_home, store, applications, feature_mismatches, caplog
):
    """The service still becomes ready and answers, through Feast's public API."""
    name = demo_home.training["feature_service"]
    features = _InternalsGone(store, name, fast_paths=True)
    features.probe()  # readiness: the public read answers
    ours = features.read(applications[:50])
    gone = "'SqliteOnlineStore' object has no attribute '_get_conn'"
    assert f"serves every read: AttributeError: {gone}" in caplog.text
    assert not features.fast
    theirs = store.get_online_features(
        features=get_service(store, name), entity_rows=applications[:50]
    ).to_dict()
    assert not feature_mismatches(ours, theirs, features.names)


@dataclass(frozen=True)
class _OffTransform(_Transform):
    """The on-demand view's direct call with one output value off (transform_dict intact)."""

    def apply(self, values, as_arrays=False, public=False):
        output = super().apply(values, as_arrays, public)
        if not public:
            column = list(output["debt_to_income"])
            row = next(i for i, value in enumerate(column) if value is not None)
            column[row] += 1
            output["debt_to_income"] = column
        return output


def test_batch_transformation_unused_when_it_differs_from_transform_dict(
    demo_home, store, feature_mismatches, caplog
):
    """Batches check the direct transformation against transform_dict on their first rows: one
    value off, and Feast's transform_dict computes the batch (and every read after it)."""
    name = demo_home.training["feature_service"]
    features = ServiceFeatures(store, name, fast_paths=True)
    features.transforms = tuple(_OffTransform(t.view, t.features) for t in features.transforms)
    entities = entity_frame(read_table(demo_home.settings, LOANS).sample(200, random_state=6))
    ours = features.historical(entities, "loan_id")
    warning = "Feast's public API serves every read: application_features: debt_to_income of"
    assert warning in caplog.text
    assert not features.fast
    theirs = historical_features(entities, name, demo_home.settings, store)
    columns = {n: pd.Series(ours[n]).tolist() for n in features.names}
    assert not feature_mismatches(columns, {n: theirs[n].tolist() for n in features.names},
                                  features.names)  # fmt: skip


def test_check_waits_for_an_entity_with_stored_values(demo_home, store, applications, caplog):
    """Unknown entities (or an empty store) prove nothing: the check goes on until a read has
    a stored value from every view, without failing a read."""
    features = ServiceFeatures(store, demo_home.training["feature_service"], fast_paths=True)
    unknown = {**applications[0], "dob_ssn": "19000101_0102", "zipcode": 99998}
    assert features.read([unknown])["bankruptcies"] == [None]
    assert features.fast and not features.checked
    features.read(applications[:20])
    assert features.fast and features.checked
    assert "unused" not in caplog.text


def test_fast_paths_setting_selects_feasts_public_path(demo_home, store, applications, monkeypatch):
    """CREDITFLOW_FAST_PATHS=0: Feast's public calls only; the online store is never opened by
    us (so no mmap pragma), the on-demand view goes through transform_dict."""
    monkeypatch.setenv("CREDITFLOW_FAST_PATHS", "0")
    features = ServiceFeatures(store, demo_home.training["feature_service"])
    assert not features.fast
    features.read(applications[:3])
    features.probe()
    assert "online_store" not in vars(features)
    monkeypatch.setenv("CREDITFLOW_FAST_PATHS", "1")
    assert ServiceFeatures(store, demo_home.training["feature_service"]).fast


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
    public = not features.fast  # through transform_dict
    many = transform.apply({name: [row[name] for row in rows] for name in inputs}, public=public)
    for index, row in enumerate(rows):
        one = transform.apply({name: [value] for name, value in row.items()}, public=public)
        for name, values in one.items():
            expected = many[name][index]
            assert values == [expected] or (expected != expected and values[0] != values[0]), (
                name, row)  # fmt: skip
    assert any(v is None for v in many["loan_to_income"])  # the edge cases were there
    assert any(v is not None for v in many["loan_to_income"])
