"""Ingestion: every row ends in the offline store or in quarantine, with its reason."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from creditflow.config import get_settings
from creditflow.contract import LOANS
from creditflow.db import get_engine
from creditflow.demo_world.generator import generate_world
from creditflow.ingestion import ledger, offline
from creditflow.ingestion.ingest import ingest
from creditflow.ingestion.readers import RawBatch, SchemaError, frame_fingerprint, read_source
from creditflow.tables import ingestion_log, quarantine


@pytest.fixture(scope="module")
def world() -> dict[str, pd.DataFrame]:
    return generate_world(400, seed=3, dirty_share=0)


def batch(frame: pd.DataFrame, source: str = "test") -> RawBatch:
    frame = frame.reset_index(drop=True)
    return RawBatch(frame, source, frame_fingerprint(frame))


def quarantine_rows(settings, batch_id: str) -> list[dict]:
    return ledger.quarantined_rows(get_engine(settings), batch_id=batch_id, limit=10_000)


def reconciled(summary: dict, settings) -> dict:
    """Checks made for every batch: nothing lost, every quarantined row has its reason."""
    assert summary["rows_in"] == summary["accepted"] + summary["quarantined"]
    rows = quarantine_rows(settings, summary["batch_id"])
    assert len(rows) == summary["quarantined"]
    assert all(row["reasons"] for row in rows)
    stored = offline.read_table(settings, LOANS) if summary["table"] == "loans" else None
    if stored is not None:
        assert len(stored) >= summary["accepted"]
    return {row["row_number"]: row for row in rows}


def test_seed_cases_are_quarantined_with_their_rule(home, world):
    loans = world["loans"].copy()
    loans.loc[0, "person_age"] = -5
    loans.loc[1, "person_income"] = 999_999_999
    loans.loc[2, "person_emp_length"] = None  # null in a required column
    loans.loc[3, "loan_intent"] = "CRYPTO"  # unknown category
    loans.loc[4, ["person_age", "loan_intent"]] = [144, "CRYPTO"]  # two rules at once
    summary = ingest("loans", batch(loans), home)
    rows = reconciled(summary, home)
    assert summary["accepted"] == len(loans) - 5
    assert rows[0]["reasons"] == "person_age >= 18"
    assert rows[1]["reasons"] == "person_income <= 10,000,000"
    assert rows[2]["reasons"] == "person_emp_length is null"
    assert rows[3]["reasons"] == "loan_intent in allowed categories"
    assert rows[4]["reasons"] == "loan_intent in allowed categories; person_age <= 100"
    assert rows[0]["payload"]["person_age"] == -5  # the row is kept as it was received
    assert summary["reasons"]["loan_intent in allowed categories"] == 2
    stored = offline.read_table(home, LOANS)
    assert not stored["loan_id"].isin(loans.loc[:4, "loan_id"]).any()
    assert stored.dtypes["person_age"] == "int64"


def test_duplicate_loan_ids_within_and_across_batches(home, world):
    loans = world["loans"]
    first = pd.concat([loans.iloc[:10], loans.iloc[[3]]])  # loan 3 twice in one batch
    summary = ingest("loans", batch(first), home)
    rows = reconciled(summary, home)
    assert (summary["accepted"], summary["quarantined"]) == (10, 1)
    assert rows[10]["reasons"] == "duplicate loan_id in batch"
    second = loans.iloc[5:15].copy()  # 5 of these were ingested already
    second["created_timestamp"] += pd.Timedelta(hours=1)  # other content, same loans
    summary = ingest("loans", batch(second), home)
    reconciled(summary, home)
    assert (summary["accepted"], summary["quarantined"]) == (5, 5)
    assert summary["reasons"] == {"loan_id already ingested": 5}
    assert offline.read_table(home, LOANS)["loan_id"].is_unique


def test_a_record_repeated_in_a_later_batch_is_refused_on_its_key_and_time(home, world):
    history = world["credit_history"].sort_values("event_timestamp", kind="stable")
    first = history.iloc[:50]
    assert ingest("credit_history", batch(first), home)["accepted"] == 50
    later = history.iloc[50:60]
    # Rows 40-44 again (other content, same applicant and time), then row 45's applicant at a
    # time of its own: the key is (applicant, event time), so only the first five repeat.
    repeated = first.iloc[40:45].copy()
    repeated["created_timestamp"] += pd.Timedelta(hours=1)
    moved = first.iloc[[45]].assign(event_timestamp=later["event_timestamp"].max())
    summary = ingest("credit_history", batch(pd.concat([later, repeated, moved])), home)
    reconciled(summary, home)
    assert (summary["accepted"], summary["quarantined"]) == (11, 5)
    assert summary["reasons"] == {"dob_ssn+event_timestamp already ingested": 5}


def test_a_broken_row_does_not_shadow_a_good_row_with_the_same_key(home, world):
    loans = pd.concat([world["loans"].iloc[[0]], world["loans"].iloc[[0]]])
    loans.iloc[0, loans.columns.get_loc("person_age")] = -5
    summary = ingest("loans", batch(loans), home)
    assert (summary["accepted"], summary["quarantined"]) == (1, 1)
    assert offline.read_table(home, LOANS)["person_age"].iloc[0] == world["loans"]["person_age"][0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda df: df.drop(columns=["person_income"]), "missing column(s) ['person_income']"),
        (lambda df: df.rename(columns={"person_income": "income"}), "contract: ['income']"),
        (lambda df: df.assign(person_age="forty"), "'person_age' should hold numbers"),
        (lambda df: df.assign(event_timestamp="yesterday"), "'event_timestamp' should hold"),
    ],
)  # fmt: skip
def test_a_wrong_schema_rejects_the_whole_batch_and_writes_nothing(home, world, change, message):
    with pytest.raises(SchemaError) as err:
        ingest("loans", batch(change(world["loans"].copy())), home)
    assert message in str(err.value)
    assert offline.batch_files(home, "loans") == []
    with get_engine(home).connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(ingestion_log)) == 0
        assert conn.scalar(sa.select(sa.func.count()).select_from(quarantine)) == 0


def test_the_same_batch_twice_adds_nothing(home, world, tmp_path):
    path = tmp_path / "loans.parquet"
    world["loans"].to_parquet(path)
    first = ingest("loans", read_source(str(path)), home)
    files = offline.batch_files(home, "loans")
    again = ingest("loans", read_source(str(path)), home)
    assert again["already_ingested"] is True
    assert again["batch_id"] == first["batch_id"]
    assert (again["accepted"], again["quarantined"]) == (first["accepted"], first["quarantined"])
    assert offline.batch_files(home, "loans") == files
    assert len(offline.read_table(home, LOANS)) == len(world["loans"])


def test_late_rows_are_accepted_and_counted(home, world):
    loans = world["loans"].sort_values("event_timestamp")
    ingest("loans", batch(loans.iloc[200:]), home)
    summary = ingest("loans", batch(loans.iloc[:200]), home)  # all older than the newest
    reconciled(summary, home)
    assert summary["accepted"] == summary["late"] == 200


def test_implausible_event_times_are_quarantined(home, world):
    loans = world["loans"].iloc[:3].copy()
    now = pd.Timestamp.now(tz="UTC")
    loans.iloc[0, loans.columns.get_loc("event_timestamp")] = now + pd.Timedelta(days=2)
    loans.iloc[1, loans.columns.get_loc("event_timestamp")] = now - pd.Timedelta(days=4000)
    rows = reconciled(summary := ingest("loans", batch(loans), home), home)
    assert summary["accepted"] == 1
    assert rows[0]["reasons"] == "event_timestamp not in the future"
    assert rows[1]["reasons"] == "event_timestamp within 3650 days"


def test_a_csv_with_a_broken_line_loses_no_row(home, world, tmp_path):
    path = tmp_path / "loans.csv"
    world["loans"].iloc[:20].to_csv(path, index=False)
    lines = path.read_text().splitlines()
    lines.insert(5, "7,broken,line")  # too few fields
    lines[10] = lines[10].replace(",", ",not-a-number,", 1).rsplit(",", 1)[0]  # shifted fields
    path.write_text("\n".join(lines) + "\n")
    summary = ingest("loans", read_source(str(path)), home)
    rows = reconciled(summary, home)
    assert summary["rows_in"] == 21
    assert summary["quarantined"] >= 1
    assert summary["reasons"]["unparseable CSV line"] >= 1
    broken = [row for row in rows.values() if "unparseable CSV line" in row["reasons"]]
    assert any(row["payload"] == "7,broken,line" for row in broken)


def test_csv_values_that_do_not_parse_quarantine_only_their_rows(home, world, tmp_path):
    loans = world["loans"].iloc[:20].astype({"person_age": object})
    loans.iloc[3, loans.columns.get_loc("person_age")] = "forty"
    loans.iloc[4, loans.columns.get_loc("person_age")] = 40.5
    path = tmp_path / "loans.csv"
    loans.to_csv(path, index=False)
    rows = reconciled(summary := ingest("loans", read_source(str(path)), home), home)
    assert summary["accepted"] == 18
    assert rows[3]["reasons"] == "person_age is not a number"
    assert rows[4]["reasons"] == "person_age is not an integer"


def test_sql_sources_by_table_and_by_query(home, world, sql_engine):
    url = sql_engine.url.render_as_string(hide_password=False)
    loans = world["loans"].iloc[:50].copy()
    loans.loc[loans.index[0], "person_age"] = -5
    loans.to_sql("loans_source", sql_engine, index=False)
    summary = ingest("loans", read_source(url, sql_table="loans_source"), home)
    rows = reconciled(summary, home)
    assert (summary["accepted"], summary["quarantined"]) == (49, 1)
    assert rows[0]["reasons"] == "person_age >= 18"
    query = "select * from loans_source where person_age >= 0"
    again = ingest("loans", read_source(url, query=query), home)
    assert again["reasons"] == {"loan_id already ingested": 49}


def test_rare_values_are_warnings_not_rejections(home, world):
    ingest("loans", batch(world["loans"].iloc[:300]), home)
    more = world["loans"].iloc[300:].copy()
    more.iloc[0, more.columns.get_loc("person_income")] = 6_000_000
    summary = ingest("loans", batch(more), home)
    assert summary["quarantined"] == 0
    assert summary["warnings"]["outliers"]["person_income"] >= 1


def test_a_crash_before_the_commit_leaves_nothing_visible(home, world, monkeypatch):
    loans = world["loans"].iloc[:30]

    def crash(*args, **kwargs):
        raise RuntimeError("power cut")

    monkeypatch.setattr(ledger, "record", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        ingest("loans", batch(loans), home)
    assert offline.batch_files(home, "loans") == []  # staged, never published
    monkeypatch.undo()
    summary = ingest("loans", batch(loans), home)  # the retry ingests it, once
    assert summary["accepted"] == 30
    assert len(offline.read_table(home, LOANS)) == 30
    assert not list((home.table_dir("loans") / offline.STAGING).glob("*.parquet"))


def test_a_crash_after_the_commit_is_finished_by_the_next_run(home, world, monkeypatch):
    loans = world["loans"].iloc[:30]

    def crash(*args, **kwargs):
        raise RuntimeError("power cut")

    monkeypatch.setattr(offline, "publish", crash)
    with pytest.raises(RuntimeError):
        ingest("loans", batch(loans), home)
    monkeypatch.undo()
    assert offline.batch_files(home, "loans") == []
    again = ingest("loans", batch(loans), home)
    assert again["already_ingested"] is True
    assert len(offline.read_table(home, LOANS)) == 30  # recovered: published exactly once


def test_cli_prints_one_json_line_and_fails_loudly(home, world, tmp_path):
    good, bad = tmp_path / "good.parquet", tmp_path / "bad.parquet"
    world["loans"].iloc[:10].to_parquet(good)
    world["loans"].iloc[:10].drop(columns=["loan_amnt"]).to_parquet(bad)
    cli = str(Path(sys.executable).parent / "creditflow")
    env_home = {"CREDITFLOW_HOME": str(home.home), "PATH": str(Path(sys.executable).parent)}
    ok = subprocess.run([cli, "ingest", str(good), "--table", "loans", "--json"],
                        capture_output=True, text=True, env=env_home)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    summary = json.loads(ok.stdout.strip().splitlines()[-1])
    assert {"table", "batch_id", "rows_in", "accepted", "quarantined", "reasons"} <= set(summary)
    assert summary["accepted"] == 10
    failed = subprocess.run([cli, "ingest", str(bad), "--table", "loans", "--json"],
                            capture_output=True, text=True, env=env_home)  # fmt: skip
    assert failed.returncode == 1
    error = json.loads(failed.stdout.strip().splitlines()[-1])
    assert error["ok"] is False and "loan_amnt" in error["error"]


@pytest.fixture()
def postgres_home(home, monkeypatch, throwaway_postgres):
    """Our tables in a throwaway PostgreSQL database (the production profile's database)."""
    with throwaway_postgres() as url:
        monkeypatch.setenv("CREDITFLOW_DATABASE_URL", url)
        try:
            yield get_settings()
        finally:
            get_engine(get_settings()).dispose()


def test_ingestion_log_and_quarantine_on_postgres(postgres_home, world):
    assert postgres_home.sql_url.startswith("postgresql")
    loans = world["loans"].iloc[:40].copy()
    loans.iloc[0, loans.columns.get_loc("person_age")] = -5
    summary = ingest("loans", batch(loans), postgres_home)
    rows = reconciled(summary, postgres_home)
    assert rows[0]["reasons"] == "person_age >= 18"
    again = ingest("loans", batch(loans), postgres_home)
    assert again["already_ingested"] is True
    assert again["reasons"] == summary["reasons"]
    with get_engine(postgres_home).connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(ingestion_log)) == 1
