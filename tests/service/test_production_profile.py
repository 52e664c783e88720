"""The production profile, chosen by configuration only: SQL registry on PostgreSQL and the Redis
online store, read by the same ServiceFeatures code as the embedded default."""

from __future__ import annotations

import os
import random
import shutil
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime

import pandas as pd
import pytest

from creditflow.contract import APPLICATIONS, CREDIT_HISTORY, LOANS
from creditflow.ingestion.offline import read_table
from creditflow.store.features import get_service, get_store
from creditflow.store.service_features import ServiceFeatures

BUREAU = [c.name for c in CREDIT_HISTORY.columns if c.kind == "int"]

# The machine's Redis. Database 0 is where the production profile writes by default (a user's
# online store): these tests claim an empty database of their own, write only there, and
# delete their keys after.
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
CLAIM = "creditflow-test-claim"  # the key that makes a database this module's alone
# Feast's Redis keys: the serialized entity key, then the project name.
PROJECT_KEYS = b"*creditflow"
# An applicant unknown to the demo world, new to every run: its key shows where a run wrote.
UNKNOWN = f"19000101_{random.randrange(2000, 10000):04d}"


def _redis(db: int):
    import redis

    return redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)


def _keys(client, pattern: bytes = PROJECT_KEYS) -> list[bytes]:
    return list(client.scan_iter(match=pattern, count=5000))


class OwnRedisDb:
    """An empty Redis database (never 0) claimed for this module alone: a key only one session
    can set (SET NX), in a database that held nothing else when it was set."""

    def __init__(self) -> None:
        self.token = uuid.uuid4().hex
        for db in range(15, 0, -1):
            client = _redis(db)
            if client.set(CLAIM, self.token, nx=True, ex=6 * 3600):
                if client.dbsize() == 1:
                    self.db, self.client = db, client
                    return
                client.delete(CLAIM)  # someone's data: not ours to write into
            client.close()
        pytest.fail("no empty Redis database (1 to 15) to claim for the production profile tests")

    @property
    def url(self) -> str:
        return f"{REDIS_HOST}:{REDIS_PORT},db={self.db}"

    def clean(self) -> None:
        """Deletes this module's keys (its project's, in its own database) and the claim."""
        if self.client.get(CLAIM) != self.token.encode():
            return  # the claim expired: the database may be someone else's now
        if keys := _keys(self.client):
            for start in range(0, len(keys), 1000):
                self.client.delete(*keys[start : start + 1000])
        self.client.delete(CLAIM)


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
def redis_db():
    """A Redis database of this module's own (:class:`OwnRedisDb`), cleaned after."""
    own = OwnRedisDb()
    try:
        yield own
    finally:
        own.clean()
        own.client.close()


@pytest.fixture(scope="module")
def user_keys():
    """The production project's keys in Redis database 0 (a user's) before these tests."""
    with _redis(0) as client:
        return set(_keys(client))


@pytest.fixture(scope="module")
def production(demo_home, feast_cli, throwaway_postgres, tmp_path_factory, user_keys, redis_db):
    """The demo world's offline data, registered in a throwaway Postgres database and
    materialized into a Redis database of its own; yields (settings, store)."""
    home = tmp_path_factory.mktemp("production-home")
    shutil.copytree(demo_home.settings.data_dir, home / "data")
    with throwaway_postgres() as pg_url:
        settings = demo_home.settings.model_copy(
            update={"home": home, "profile": "production", "pg_url": pg_url,
                    "redis_url": redis_db.url}
        )  # fmt: skip
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
    record = pd.DataFrame([{"dob_ssn": UNKNOWN, **dict.fromkeys(BUREAU, 1),
                            "event_timestamp": old, "created_timestamp": old}])  # fmt: skip
    store.push("credit_history_push", record, to=PushMode.ONLINE)
    stale = features.read([{**rows[0], "dob_ssn": UNKNOWN}])
    assert store.get_online_features(
        features=["credit_history:bankruptcies"], entity_rows=[{"dob_ssn": UNKNOWN}]
    ).to_dict()["bankruptcies"] == [1]
    assert all(stale[name] == [None] for name in BUREAU)


def test_only_our_own_redis_database_was_written_and_it_is_left_empty(production, redis_db,
                                                                      user_keys):  # fmt: skip
    """Last in this module: it deletes the keys the tests above wrote (the push of an applicant
    new to every run among them, which database 0 would not have held before)."""
    with _redis(0) as client:
        assert set(_keys(client)) <= user_keys  # no key of ours in the user's database
    assert len(_keys(redis_db.client)) > 1000  # the materialized world went to ours
    redis_db.clean()
    assert redis_db.client.dbsize() == 0
