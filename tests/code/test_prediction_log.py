"""The prediction log: batched, off the request path, nothing dropped silently."""

import threading
from datetime import UTC, datetime

import sqlalchemy as sa

from bento.prediction_log import PredictionLog, entity_hasher
from creditflow.db import metadata, predictions


def _engine(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'log.db'}")
    metadata.create_all(engine)
    return engine


def _row(i: int) -> dict:
    return {"prediction_id": f"{i:032d}", "at": datetime.now(UTC), "model_tag": "m:1",
            "entity_hash": "h", "features": {"x": i}, "default_probability": 0.5,
            "decision": "review", "decided_by": "band:review", "rules_fired": []}  # fmt: skip


def _count(engine) -> int:
    with engine.connect() as conn:
        return conn.scalar(sa.select(sa.func.count()).select_from(predictions))


def test_every_recorded_prediction_is_written_by_close(tmp_path):
    engine = _engine(tmp_path)
    log = PredictionLog(engine, batch_size=100, interval_s=0.05)
    for i in range(1234):
        log.record(_row(i))
    log.close()
    assert (log.written, log.dropped, _count(engine)) == (1234, 0, 1234)


def test_a_prediction_recorded_after_close_is_still_written(tmp_path):
    engine = _engine(tmp_path)
    log = PredictionLog(engine, interval_s=5)
    log.record(_row(0))
    log.close()  # drains at once, without waiting for the 5 s interval
    log.record(_row(1))  # a request answered during shutdown
    assert (log.written, log.dropped, _count(engine)) == (2, 0, 2)


def test_overflow_is_counted_never_silent(tmp_path, monkeypatch):
    engine = _engine(tmp_path)
    gate = threading.Event()
    real_write = PredictionLog._write

    def slow_write(self, rows):  # the database stalls until the gate opens
        gate.wait(10)
        real_write(self, rows)

    monkeypatch.setattr(PredictionLog, "_write", slow_write)
    drops = []
    log = PredictionLog(engine, capacity=5, batch_size=1, interval_s=0.01,
                        on_drop=lambda: drops.append(1))  # fmt: skip
    for i in range(20):
        log.record(_row(i))
    gate.set()
    log.close()
    assert log.dropped >= 14 and len(drops) == log.dropped
    assert log.written + log.dropped == 20 == _count(engine) + log.dropped


def test_entity_hash_is_keyed_stable_and_not_the_key(tmp_path):
    key_file = tmp_path / "entity.key"
    first = entity_hasher(key_file)
    again = entity_hasher(key_file)  # the key persists in the home
    other = entity_hasher(tmp_path / "other.key")
    digest = first("19800101_1234", 2110)
    assert digest == again("19800101_1234", 2110)
    assert digest != other("19800101_1234", 2110)
    assert digest != first("19800101_1235", 2110)
    assert "19800101" not in digest and len(digest) == 64
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
