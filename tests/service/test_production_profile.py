"""The production profile, chosen by configuration only: SQL registry on PostgreSQL and the Redis
online store, read by the same ServiceFeatures code as the embedded default."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from datetime import UTC, datetime

import pandas as pd
import pytest

from creditflow.contract import APPLICATIONS, CREDIT_HISTORY, LOANS
from creditflow.ingestion.offline import read_table
from creditflow.store.features import get_service, get_store
from creditflow.store.service_features import ServiceFeatures

BUREAU = [c.name for c in CREDIT_HISTORY.columns if c.kind == "int"]


@contextmanager
def _environment_kept():
    """Feast reads the yaml's ${...} when a store is built; our own environment stays as is."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="module")
def production(demo_home, feast_cli, throwaway_postgres, tmp_path_factory):
    """The demo world's offline data, registered in a throwaway Postgres database and
    materialized into Redis; yields (settings, store)."""
    home = tmp_path_factory.mktemp("production-home")
    shutil.copytree(demo_home.settings.data_dir, home / "data")
    with throwaway_postgres() as pg_url:
        settings = demo_home.settings.model_copy(
            update={"home": home, "profile": "production", "pg_url": pg_url}
        )
        feast_cli(settings, "apply")
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
        feast_cli(settings, "materialize-incremental", now)
        with _environment_kept():
            store = get_store(settings)
        assert store.config.online_store.type == "redis"
        assert store.config.registry.registry_type == "sql"
        yield settings, store


def test_redis_reads_equal_feasts_and_stale_values_are_missing(
    production, demo_home, feature_mismatches
):
    _, store = production
    service_name = demo_home.training["feature_service"]
    features = ServiceFeatures(store, service_name)
    loans = read_table(demo_home.settings, LOANS).drop_duplicates("dob_ssn", keep="last")
    rows = loans.sample(200, random_state=5)[APPLICATIONS.names].astype(object).to_dict("records")
    rows.append({**rows[0], "dob_ssn": "19000101_0200"})  # unknown to the store
    theirs = store.get_online_features(features=get_service(store, service_name),
                                       entity_rows=rows).to_dict()  # fmt: skip
    ours = features.read(rows)
    assert not feature_mismatches(ours, theirs, features.names)
    assert sum(v is not None for v in ours["bankruptcies"]) > 150
    assert ours["bankruptcies"][-1] is None

    from feast.data_source import PushMode

    old = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(days=400)
    record = pd.DataFrame([{"dob_ssn": "19000101_0201", **dict.fromkeys(BUREAU, 1),
                            "event_timestamp": old, "created_timestamp": old}])  # fmt: skip
    store.push("credit_history_push", record, to=PushMode.ONLINE)
    stale = features.read([{**rows[0], "dob_ssn": "19000101_0201"}])
    assert store.get_online_features(
        features=["credit_history:bankruptcies"], entity_rows=[{"dob_ssn": "19000101_0201"}]
    ).to_dict()["bankruptcies"] == [1]
    assert all(stale[name] == [None] for name in BUREAU)
