"""`creditflow feedback import`: every row stored, a duplicate or rejected with its reason
(rows_in == stored + duplicates + rejected), corrections chained, the same file twice adding
nothing, `--as-of` as the time of receipt. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

from creditflow import clock
from creditflow.contract import EXAMPLE_APPLICATION
from creditflow.feedback.importer import BEFORE, FUTURE, UNKNOWN, import_labels
from creditflow.feedback.labels import current_labels, label_history, record_label
from creditflow.feedback.logged_predictions import prediction_row, write_predictions
from creditflow.migrate import upgrade_engine
from creditflow.tables import ingestion_log, labels, quarantine

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture()
def db(sql_engine):
    upgrade_engine(sql_engine)
    return sql_engine


@pytest.fixture()
def ids(db, home) -> list[str]:
    """Ten logged predictions, made at AT."""
    return write_predictions(db, [prediction_row(home, EXAMPLE_APPLICATION, AT) for _ in range(10)])


def _rows(engine, table) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(table).order_by(table.c.id)).mappings()]


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def test_a_mixed_file_is_reconciled(db, home, ids, tmp_path):
    existing = record_label(db, ids[0], 1, AT + 30 * DAY)  # already known
    record_label(db, ids[1], 1, AT + 30 * DAY)  # the file changes it: a correction
    lines = [
        "prediction_id,outcome,outcome_at,source",
        f"{ids[0]},1,{_iso(AT + 30 * DAY)},bank",  # 1 duplicate of the stored label
        f"{ids[1]},0,{_iso(AT + 30 * DAY)},bank",  # 2 correction of the stored label
        f"{ids[2]},1,{_iso(AT + 40 * DAY)},",  # 3 stored (no source: the import's)
        f"{ids[3]},0,{_iso(AT + 40 * DAY)},bank",  # 4 superseded by row 6 (a duplicate)
        f"{ids[3]},0,{_iso(AT + 40 * DAY)},bank",  # 5 superseded by row 6 (a duplicate)
        f"{ids[3]},1,{_iso(AT + 41 * DAY)},bank",  # 6 stored: the file's last word
        f"{uuid.uuid4().hex},1,{_iso(AT + 40 * DAY)},bank",  # 7 unknown prediction
        f"{ids[4]},2,{_iso(AT + 40 * DAY)},bank",  # 8 outcome not 0/1
        f"{ids[5]},1,{_iso(AT - DAY)},bank",  # 9 before the prediction
        f"{ids[6]},1,{_iso(datetime.now(UTC) + 30 * DAY)},bank",  # 10 in the future
        f"NOT-AN-ID,1,{_iso(AT + 40 * DAY)},bank",  # 11 malformed id
        f"{ids[7]},1,yesterday,bank",  # 12 not a time
        f"{ids[8]},1",  # 13 a broken line: too few fields
    ]
    path = tmp_path / "outcomes.csv"
    path.write_text("\n".join(lines) + "\n")

    summary = import_labels(path, home, engine=db, source_name="bulk")

    assert summary["rows_in"] == 13
    assert summary["rows_in"] == summary["stored"] + summary["duplicates"] + summary["rejected"]
    assert (summary["stored"], summary["corrections"], summary["duplicates"]) == (3, 1, 3)
    assert summary["superseded"] == 2
    assert summary["rejected"] == 7
    reasons = summary["reasons"]
    assert reasons[UNKNOWN] == reasons[BEFORE] == reasons[FUTURE] == 1
    assert reasons["outcome <= 1"] == 1
    assert reasons["prediction_id matches ^[0-9a-f]{32}$"] == 1
    assert reasons["outcome_at is not an ISO 8601 timestamp"] == 1
    assert reasons["unparseable CSV line"] == 1

    # Rejected rows are kept as received, with why, in the quarantine.
    kept = [r for r in _rows(db, quarantine) if r["table_name"] == "labels"]
    assert len(kept) == 7
    assert {r["batch_id"] for r in kept} == {summary["batch_id"]}
    by_reason = {r["reasons"]: r for r in kept}
    assert json.loads(by_reason[BEFORE]["payload"])["prediction_id"] == ids[5]
    assert any(r["payload"] == f"{ids[8]},1" for r in kept)
    log = [r for r in _rows(db, ingestion_log) if r["table_name"] == "labels"]
    assert (log[0]["rows_in"], log[0]["quarantined"]) == (13, 7)

    # A correction names the label it replaces; the newest counts; history is kept.
    history = label_history(db, ids[1])
    assert [(h["outcome"], h["corrects"]) for h in history] == [(1, None), (0, history[0]["id"])]
    assert [(h["outcome"], h["outcome_at"]) for h in label_history(db, ids[3])] == [
        (1, AT + 41 * DAY)
    ]
    assert label_history(db, ids[2])[0]["source"] == "bulk"
    assert [h["id"] for h in label_history(db, ids[0])] == [existing.label_id]
    current = current_labels(db).set_index("prediction_id")["outcome"].to_dict()
    assert current == {ids[0]: 1, ids[1]: 0, ids[2]: 1, ids[3]: 1}

    # A label recorded after the import gets its own id (the bulk ids are taken).
    after = record_label(db, ids[9], 1, AT + 50 * DAY)
    assert after.label_id > max(r["id"] for r in _rows(db, labels) if r["id"] != after.label_id)

    # The same file again: nothing new is stored.
    again = import_labels(path, home, engine=db, source_name="bulk")
    assert (again["stored"], again["duplicates"], again["rejected"]) == (0, 6, 7)
    assert len(_rows(db, labels)) == 6  # 2 before + 3 + 1 after


def test_parquet_with_naive_times_and_no_source_column(db, home, ids, tmp_path):
    frame = pd.DataFrame({
        "prediction_id": ids[:3],
        "outcome": [0, 1, 0],
        "outcome_at": pd.to_datetime([AT + 10 * DAY] * 3).tz_localize(None),  # naive: UTC
    })  # fmt: skip
    path = tmp_path / "outcomes.parquet"
    frame.to_parquet(path)
    summary = import_labels(path, home, engine=db)
    assert (summary["rows_in"], summary["stored"], summary["rejected"]) == (3, 3, 0)
    stored = current_labels(db)
    assert set(stored["source"]) == {"import"}
    assert (stored["outcome_at"] == pd.Timestamp(AT + 10 * DAY)).all()


def test_a_sql_source(db, home, ids, tmp_path):
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    source = sa.create_engine(url)
    rows = pd.DataFrame({"prediction_id": ids[:2], "outcome": [1, 0],
                         "outcome_at": [_iso(AT + 5 * DAY)] * 2})  # fmt: skip
    rows.to_sql("outcomes", source, index=False)
    source.dispose()
    summary = import_labels(url, home, engine=db, sql_table="outcomes")
    assert (summary["rows_in"], summary["stored"]) == (2, 2)


def test_as_of_is_the_time_of_receipt(db, home, ids, tmp_path):
    path = tmp_path / "outcomes.csv"
    path.write_text(f"prediction_id,outcome,outcome_at\n{ids[0]},1,{_iso(AT + 20 * DAY)}\n")
    received = AT + 60 * DAY
    with clock.frozen(received):
        summary = import_labels(path, home, engine=db)
    assert summary["received_at"] == received.isoformat()
    assert label_history(db, ids[0])[0]["received_at"] == received
    assert current_labels(db, received - DAY).empty
    late = tmp_path / "late.csv"  # an outcome known after the import's as-of: in the future
    late.write_text(f"prediction_id,outcome,outcome_at\n{ids[1]},1,{_iso(AT + 90 * DAY)}\n")
    with clock.frozen(received):
        assert import_labels(late, home, engine=db)["reasons"] == {FUTURE: 1}


def test_a_label_reported_during_an_import_waits_for_it(db, home, ids):
    """The import holds the labels' lock from reading the current labels to its commit: a
    label reported meanwhile is recorded after it, as a correction of what it stored."""
    import threading

    from creditflow.feedback.bulk import insert_rows
    from creditflow.feedback.importer import _allocate_ids, _locked

    receipts = []
    with _locked(db) as conn:  # an import in progress, about to store a label for ids[0]
        reporter = threading.Thread(
            target=lambda: receipts.append(record_label(db, ids[0], 0, AT + 9 * DAY))
        )
        reporter.start()
        _wait_until_blocked(db, reporter)
        assert not receipts  # still waiting for the import
        first = _allocate_ids(conn, 1)
        insert_rows(conn, "labels", pd.DataFrame({
            "id": [first], "prediction_id": [ids[0]], "outcome": [1],
            "outcome_at": [pd.Timestamp(AT + 8 * DAY)], "source": ["import"],
            "received_at": [pd.Timestamp(clock.now())], "corrects": [None],
        }))  # fmt: skip
    reporter.join()
    assert (receipts[0].status, receipts[0].corrects) == ("correction", first)
    assert [h["outcome"] for h in label_history(db, ids[0])] == [1, 0]


def _wait_until_blocked(engine, thread, patience: float = 10.0) -> None:
    """Until the thread waits on a lock (PostgreSQL says so; SQLite: a moment)."""
    import time

    if engine.dialect.name != "postgresql":
        time.sleep(0.5)
        return
    deadline = time.monotonic() + patience
    query = sa.text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()")  # fmt: skip
    with engine.connect() as conn:
        while time.monotonic() < deadline and thread.is_alive():
            if conn.execute(query).scalar():
                return
            time.sleep(0.05)
