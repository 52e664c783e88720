"""Streaming: fresh credit-history records pushed through the same contract."""

from __future__ import annotations

import pandas as pd
import pytest

from creditflow.config import get_settings
from creditflow.contract import CREDIT_HISTORY
from creditflow.demo_world.generator import generate_world
from creditflow.ingestion import offline
from creditflow.ingestion.ingest import ingest
from creditflow.ingestion.readers import RawBatch, frame_fingerprint
from creditflow.store.features import get_store


def batch(frame: pd.DataFrame) -> RawBatch:
    frame = frame.reset_index(drop=True)
    return RawBatch(frame, "test", frame_fingerprint(frame))


@pytest.fixture(scope="module")
def pushed_home(tmp_path_factory, feast_cli):
    """A home with a small world ingested and registered (nothing materialized)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("CREDITFLOW_HOME", str(tmp_path_factory.mktemp("push-home")))
        for key in ("BENTOML_HOME", "FEAST_FS_YAML_FILE_PATH"):
            monkeypatch.setenv(key, "")
        settings = get_settings()
        world = generate_world(300, seed=5, dirty_share=0)
        for table in ("zipcodes", "credit_history"):
            ingest(table, batch(world[table]), settings)
        feast_cli(settings, "apply")
        yield settings, world


def online_missed(settings, dob_ssn: str):
    store = get_store(settings)
    response = store.get_online_features(
        features=["credit_history:missed_payments_1y"], entity_rows=[{"dob_ssn": dob_ssn}]
    )
    return response.to_dict()["missed_payments_1y"][0]


def fresh_record(world, person: int, **changes) -> pd.DataFrame:
    """A new snapshot for the n-th person of the world (each test uses its own person)."""
    record = world["credit_history"].drop_duplicates("dob_ssn").iloc[[person]].copy()
    now = pd.Timestamp.now(tz="UTC").floor("s")
    record["event_timestamp"] = now
    record["created_timestamp"] = now
    for column, value in changes.items():
        record[column] = value
    return record


def test_a_valid_push_is_online_at_once_and_offline_too(pushed_home):
    settings, world = pushed_home
    record = fresh_record(world, 0, missed_payments_1y=9)
    dob_ssn = record["dob_ssn"].iloc[0]
    assert online_missed(settings, dob_ssn) is None  # nothing materialized yet
    summary = ingest("credit_history", batch(record), settings, push_online=True)
    assert (summary["accepted"], summary["quarantined"]) == (1, 0)
    assert online_missed(settings, dob_ssn) == 9
    stored = offline.read_table(settings, CREDIT_HISTORY)
    assert ((stored["dob_ssn"] == dob_ssn) & (stored["missed_payments_1y"] == 9)).sum() == 1


def test_an_invalid_push_is_quarantined_and_never_served(pushed_home):
    settings, world = pushed_home
    record = fresh_record(world, 1, missed_payments_1y=-3)
    summary = ingest("credit_history", batch(record), settings, push_online=True)
    assert (summary["accepted"], summary["quarantined"]) == (0, 1)
    assert summary["reasons"] == {"missed_payments_1y >= 0": 1}
    assert online_missed(settings, record["dob_ssn"].iloc[0]) != -3


def test_ingest_with_materialize_updates_the_online_store(pushed_home):
    settings, world = pushed_home
    record = fresh_record(world, 2, missed_payments_1y=5)
    record["event_timestamp"] -= pd.Timedelta(minutes=10)  # a batch, not a stream
    summary = ingest("credit_history", batch(record), settings, materialize=True)
    assert summary["materialized"] == ["credit_history"]
    assert online_missed(settings, record["dob_ssn"].iloc[0]) == 5


def test_a_pushed_batch_leaves_each_applicants_newest_record_online(pushed_home):
    settings, world = pushed_home
    newer = fresh_record(world, 3, missed_payments_1y=7)
    older = fresh_record(world, 3, missed_payments_1y=2)
    older["event_timestamp"] -= pd.Timedelta(minutes=5)  # reported after the newer one
    other = fresh_record(world, 4, missed_payments_1y=4)
    summary = ingest("credit_history", batch(pd.concat([newer, other, older])), settings,
                     push_online=True)  # fmt: skip
    assert (summary["accepted"], summary["quarantined"]) == (3, 0)
    assert online_missed(settings, newer["dob_ssn"].iloc[0]) == 7
    assert online_missed(settings, other["dob_ssn"].iloc[0]) == 4
    stored = offline.read_table(settings, CREDIT_HISTORY)
    assert (stored["dob_ssn"] == newer["dob_ssn"].iloc[0]).sum() >= 2  # offline keeps both
