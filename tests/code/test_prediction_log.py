"""The prediction log: batched, off the request path, nothing dropped silently."""

import os
import pickle
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from cryptography.fernet import Fernet
from prometheus_client import REGISTRY

from creditflow.applicant_keys import KeyCipher, entity_hasher
from creditflow.bento.prediction_log import ENTITY_KEY_VALUES, KeySealer, PredictionLog
from creditflow.config import get_settings
from creditflow.tables import metadata, predictions


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


def test_every_recorded_prediction_is_written_by_close(sql_engine):
    """On SQLite and PostgreSQL; the writer connects from its own process."""
    metadata.create_all(sql_engine)
    log = PredictionLog(sql_engine, batch_size=100, interval_s=0.05)
    for i in range(0, 1234, 2):  # a request's rows at a time, as /predict's micro-batches
        log.record([_row(i), _row(i + 1)])
    log.close()
    assert (log.written, log.dropped, _count(sql_engine)) == (1234, 0, 1234)


def test_rows_are_written_within_the_interval_while_serving(tmp_path):
    engine = _engine(tmp_path)
    log = PredictionLog(engine, interval_s=0.1)
    try:
        log.record([_row(0), _row(1)])
        log.record([_row(2)])
        deadline = time.monotonic() + 10
        # The writer commits the rows, then counts them: wait for both (a loaded machine shows
        # the gap between the two).
        while (_count(engine), log.written) != (3, 3) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (_count(engine), log.written) == (3, 3)  # before close
    finally:
        log.close()


def test_the_writer_is_another_process(tmp_path):
    """Its work must not hold the serving process's interpreter lock."""
    log = PredictionLog(_engine(tmp_path))
    try:
        assert log._writer.pid not in (None, os.getpid()) and log._writer.is_alive()
    finally:
        log.close()


def _wait_until_it_ignores_sigterm(pid: int) -> None:
    """Until the process has set SIGTERM to be ignored (Linux: SigIgn in /proc), however long
    its start takes on a busy machine."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = Path(f"/proc/{pid}/status").read_text()
        ignored = int(next(line for line in status.splitlines()
                           if line.startswith("SigIgn:")).split()[1], 16)  # fmt: skip
        if ignored >> (signal.SIGTERM - 1) & 1:
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} never ignored SIGTERM")


def test_the_writer_outlives_a_stop_signal(tmp_path):
    """`bentoml serve`'s stop signal reaches the writer too; the service's shutdown hook, which
    runs after it, must still find the writer there to drain the log."""
    engine = _engine(tmp_path)
    log = PredictionLog(engine, interval_s=5)
    writer = log._writer.pid
    log.record([_row(0)])
    _wait_until_it_ignores_sigterm(writer)
    os.kill(writer, signal.SIGTERM)
    log.record([_row(1)])
    log.close()
    assert log._writer.pid == writer and log._writer.exitcode == 0  # it closed, not killed
    assert (log.written, log.dropped, _count(engine)) == (2, 0, 2)


def test_no_row_is_lost_silently_to_a_stop_signal_while_the_writer_starts(tmp_path):
    """Killed before it ignores the signal, the writer is replaced, or the serving process
    writes the rows itself; a row it had already been handed is counted as dropped."""
    engine = _engine(tmp_path)
    log = PredictionLog(engine, interval_s=5)
    os.kill(log._writer.pid, signal.SIGTERM)  # at once: it may not ignore it yet
    log.record([_row(0)])
    log.close()
    assert log.written + log.dropped == 1 and _count(engine) == log.written


def test_a_prediction_recorded_after_close_is_still_written(tmp_path):
    engine = _engine(tmp_path)
    log = PredictionLog(engine, interval_s=5)
    log.record([_row(0)])
    started = time.monotonic()
    log.close()  # drains at once, without waiting for the 5 s interval
    assert time.monotonic() - started < 4
    log.record([_row(1)])  # a request answered during shutdown
    assert (log.written, log.dropped, _count(engine)) == (2, 0, 2)


def test_overflow_is_counted_never_silent(tmp_path):
    engine = _engine(tmp_path)
    log = PredictionLog(engine, capacity=5, interval_s=0.01)
    before = _dropped_metric()
    os.kill(log._writer.pid, signal.SIGSTOP)  # the writer (the database) stalls
    try:
        for i in range(20):
            log.record([_row(i)])
    finally:
        os.kill(log._writer.pid, signal.SIGCONT)
    log.close()
    assert (log.written, log.dropped, _count(engine)) == (5, 15, 5)
    assert _dropped_metric() - before == 15


def test_a_dead_writer_is_replaced_and_its_rows_counted(tmp_path):
    engine = _engine(tmp_path)
    log = PredictionLog(engine, interval_s=0.01)
    first = log._writer.pid
    os.kill(first, signal.SIGSTOP)
    log.record([_row(0), _row(1)])
    time.sleep(0.5)  # handed over (they wait in the pipe): the writer dies with them
    os.kill(first, signal.SIGKILL)
    log.record([_row(2)])  # its hand-off finds the writer gone: another one writes it
    deadline = time.monotonic() + 10
    while log.written < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log._writer.pid != first and log._writer.is_alive()
    log.record([_row(3)])
    log.close()
    assert (log.written, log.dropped, _count(engine)) == (2, 2, 2)


def _dropped_metric() -> float:
    return REGISTRY.get_sample_value("creditflow_prediction_log_dropped_total") or 0.0


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


def _raw_row(i: int, keys: tuple) -> dict:
    row = _row(i)
    del row["entity_hash"]
    return {**row, ENTITY_KEY_VALUES: keys, "application": {"person_age": 30 + i}}


def test_the_writer_hashes_and_encrypts_the_entity_keys(sql_engine, tmp_path):
    """The serving process hands raw keys to the writer; the table holds their keyed hash and
    their ciphertext, which decrypts to them, never the keys. Rows recorded after close (written
    by the serving process) are sealed the same way."""
    metadata.create_all(sql_engine)
    cipher = KeyCipher(Fernet.generate_key())
    sealer = KeySealer(tmp_path / "entity.key", cipher)
    keys = [(f"1980010{i}_123{i}", 2110 + i) for i in range(4)]
    log = PredictionLog(sql_engine, interval_s=0.05, sealer=sealer)
    log.record([_raw_row(0, keys[0]), _raw_row(1, keys[1])])
    log.record([_raw_row(2, keys[2])])
    log.close()
    log.record([_raw_row(3, keys[3])])  # after close: written in this process
    with sql_engine.connect() as conn:
        rows = conn.execute(sa.select(predictions).order_by(predictions.c.prediction_id)).all()
    assert len(rows) == 4 and log.dropped == 0
    entity_hash = entity_hasher(tmp_path / "entity.key")
    for row, (dob_ssn, zipcode) in zip(rows, keys, strict=True):
        assert cipher.decrypt(row.entity_keys) == {"dob_ssn": dob_ssn, "zipcode": zipcode}
        assert row.entity_hash == entity_hash(dob_ssn, zipcode)
        assert dob_ssn not in repr(tuple(row)) and ENTITY_KEY_VALUES not in repr(tuple(row))


def test_a_sealer_reaches_the_writer_without_its_hash_function(tmp_path):
    """Pickled for the writer process: the key file's path and the cipher, no closure."""
    sealer = KeySealer.of_home(get_settings().model_copy(update={"home": tmp_path}))
    copy = pickle.loads(pickle.dumps(sealer))
    rows = [{ENTITY_KEY_VALUES: ("19800101_1234", 2110)}]
    copy.seal(rows)
    assert rows[0]["entity_hash"] == entity_hasher(tmp_path / "entity_hash.key")(
        "19800101_1234", 2110
    )
