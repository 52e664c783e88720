"""A catalogue of hostile inputs and the expected outcome at each door: file ingestion (CSV,
typed frames as `creditflow push` reads them) and the request model of /predict.

Each file either fails loudly and precisely (SchemaError naming file, line, column or value,
nothing written) or is quarantined row by row; rows in == rows accounted for, always.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pydantic
import pytest
import sqlalchemy as sa

from creditflow.contract import (
    APPLICATIONS,
    CREDIT_HISTORY,
    EXAMPLE_APPLICATION,
    LOANS,
    ZIPCODES,
    request_model,
)
from creditflow.db import get_engine
from creditflow.demo_world.generator import generate_world
from creditflow.ingestion import ledger, offline
from creditflow.ingestion.conform import final_types
from creditflow.ingestion.ingest import ingest
from creditflow.ingestion.readers import (
    MAX_LINE_CHARS,
    RawBatch,
    SchemaError,
    frame_fingerprint,
    read_source,
)
from creditflow.tables import ingestion_log

# Times of the demo world are relative to the wall clock; pinned ones use this "now".
NOW = datetime(2026, 12, 31, tzinfo=UTC)


@pytest.fixture(scope="module")
def world() -> dict[str, pd.DataFrame]:
    return generate_world(60, seed=11, dirty_share=0)


def csv_lines(frame: pd.DataFrame) -> list[str]:
    return frame.to_csv(index=False).splitlines()


def write(tmp_path: Path, lines: list[str], name: str = "batch.csv", encoding="utf-8") -> str:
    path = tmp_path / name
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return str(path)


def accounted(summary: dict, settings) -> dict[int, dict]:
    """Rows in == accepted + quarantined, each quarantined row with its reasons."""
    assert summary["rows_in"] == summary["accepted"] + summary["quarantined"]
    rows = ledger.quarantined_rows(get_engine(settings), batch_id=summary["batch_id"], limit=100)
    assert len(rows) == summary["quarantined"] and all(row["reasons"] for row in rows)
    return {row["row_number"]: row for row in rows}


def nothing_written(settings, table: str) -> None:
    assert offline.batch_files(settings, table) == []
    with get_engine(settings).connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(ingestion_log)) == 0


# --- numbers that do not fit: quarantined, never wrapped -----------------------------------


@pytest.mark.parametrize("due", ["1e20", "9223372036854775808", "-9223372036854775809"])
def test_an_overflowing_debt_in_a_csv_is_quarantined_not_wrapped(home, world, tmp_path, due):
    history = world["credit_history"].iloc[:5].astype({"credit_card_due": object})
    history.iloc[1, history.columns.get_loc("credit_card_due")] = due
    summary = ingest("credit_history", read_source(write(tmp_path, csv_lines(history))), home)
    rows = accounted(summary, home)
    assert (summary["accepted"], summary["quarantined"]) == (4, 1)
    assert "credit_card_due" in rows[1]["reasons"]
    stored = offline.read_table(home, CREDIT_HISTORY)
    assert stored["credit_card_due"].between(0, 10_000_000).all()


@pytest.mark.parametrize(
    ("due", "reason"),
    [
        (1e20, "credit_card_due <= 10,000,000"),
        (2**63, "credit_card_due <= 10,000,000"),
        (float("inf"), "credit_card_due is not a finite number"),
        (True, "credit_card_due is a boolean, not a number"),
        ("912", "credit_card_due is a string, not a number"),  # typed source: no parsing
    ],
)
def test_an_overflowing_pushed_debt_is_quarantined_not_wrapped(home, world, due, reason):
    """`creditflow push` validates through ingest(): typed values, never cast blindly."""
    frame = world["credit_history"].iloc[:3].astype({"credit_card_due": object})
    frame.iloc[0, frame.columns.get_loc("credit_card_due")] = due
    frame = frame.reset_index(drop=True)
    summary = ingest("credit_history", RawBatch(frame, "push", frame_fingerprint(frame)), home)
    rows = accounted(summary, home)
    assert (summary["accepted"], summary["quarantined"]) == (2, 1)
    assert reason in rows[0]["reasons"].split("; ")
    assert offline.read_table(home, CREDIT_HISTORY)["credit_card_due"].ge(0).all()


@pytest.mark.parametrize(
    ("cell", "reason"),
    [
        ("true", "person_emp_length is not a number"),
        ("9_0", "person_emp_length is not a number"),  # Python's float() reads 90
        ("٤٠", "person_emp_length is not a number"),  # Unicode digits
        ("0x10", "person_emp_length is not a number"),
        ("inf", "person_emp_length"),
        ("80.000001", "person_emp_length <= 80"),
    ],
)
def test_csv_numbers_are_plain_ascii_decimals(home, world, tmp_path, cell, reason):
    loans = world["loans"].iloc[:4].astype({"person_emp_length": object})
    loans.iloc[1, loans.columns.get_loc("person_emp_length")] = cell
    summary = ingest("loans", read_source(write(tmp_path, csv_lines(loans))), home)
    rows = accounted(summary, home)
    assert summary["quarantined"] == 1 and rows[1]["reasons"].startswith(reason)


def test_unicode_digits_in_dob_ssn_are_quarantined(home, world, tmp_path):
    loans = world["loans"].iloc[:3].copy()
    loans.iloc[0, loans.columns.get_loc("dob_ssn")] = "١٩٨٠٠١٠١_١٢٣٤"
    summary = ingest("loans", read_source(write(tmp_path, csv_lines(loans))), home)
    rows = accounted(summary, home)
    assert rows[0]["reasons"] == "dob_ssn matches ^[0-9]{8}_[0-9]{4}$"


# --- files that fail loudly and precisely ---------------------------------------------------


def test_a_latin1_byte_names_file_line_and_offset_and_encoding_reads_it(home, world, tmp_path):
    zipcodes = world["zipcodes"].iloc[:4].copy()
    zipcodes.iloc[2, zipcodes.columns.get_loc("city")] = "Bogotá"
    lines = csv_lines(zipcodes)
    path = write(tmp_path, lines, encoding="latin-1")
    offset = "\n".join(lines).encode("latin-1").index(b"\xe1")
    with pytest.raises(SchemaError) as err:
        ingest("zipcodes", read_source(path), home)
    assert f"{path}: line 4, byte offset {offset}" in str(err.value)
    assert "--encoding" in str(err.value)
    nothing_written(home, "zipcodes")
    summary = ingest("zipcodes", read_source(path, encoding="latin-1"), home)
    assert summary["accepted"] == 4
    assert "Bogotá" in set(offline.read_table(home, ZIPCODES)["city"])


@pytest.mark.parametrize(
    ("rename", "message"),
    [
        ({"person_income": "person_age"}, "['person_age'] appear more than once in line 1"),
        ({"person_income": "Person_Age"}, "ambiguous column names [['person_age', 'Person_Age']]"),
        ({"person_income": " person_income"}, "' person_income' for 'person_income'"),
    ],
)
def test_repeated_or_ambiguous_column_names_are_named(home, world, tmp_path, rename, message):
    lines = csv_lines(world["loans"].iloc[:3])
    header = lines[0].split(",")
    lines[0] = ",".join(rename.get(name, name) for name in header)
    with pytest.raises(SchemaError) as err:
        ingest("loans", read_source(write(tmp_path, lines)), home)
    assert message in str(err.value)
    nothing_written(home, "loans")


def test_a_typed_batch_with_a_repeated_column_is_refused(home, world):
    loans = world["loans"].iloc[:3].reset_index(drop=True)
    frame = pd.concat([loans, loans[["loan_amnt"]]], axis=1)
    with pytest.raises(SchemaError, match=r"\['loan_amnt'\] appear more than once"):
        ingest("loans", RawBatch(frame, "frame", frame_fingerprint(frame)), home)


def test_epoch_timestamps_say_so(home, world, tmp_path):
    loans = world["loans"].iloc[:4].copy()
    nanos = loans["event_timestamp"].astype("int64")
    for unit, scale in (("seconds", 10**9), ("milliseconds", 10**6)):
        path = write(tmp_path, csv_lines(loans.assign(event_timestamp=nanos // scale)))
        with pytest.raises(SchemaError, match=f"they look like epoch {unit}"):
            ingest("loans", read_source(path), home)
    nothing_written(home, "loans")
    one = loans.astype({"event_timestamp": object})
    one.iloc[1, one.columns.get_loc("event_timestamp")] = str(nanos.iloc[1] // 10**9)
    summary = ingest("loans", read_source(write(tmp_path, csv_lines(one))), home)
    rows = accounted(summary, home)
    assert summary["quarantined"] == 1
    assert (
        rows[1]["reasons"] == "event_timestamp looks like epoch seconds, not an ISO 8601 timestamp"
    )


# --- files quarantined row by row ----------------------------------------------------------


def test_an_unterminated_quote_quarantines_that_line_only(home, world, tmp_path):
    lines = csv_lines(world["loans"].iloc[:7])
    lines[3] = lines[3].replace(",", ',"', 1)  # data line 3 (file line 4) opens a quote
    summary = ingest("loans", read_source(write(tmp_path, lines)), home)
    rows = accounted(summary, home)
    assert (summary["rows_in"], summary["accepted"], summary["quarantined"]) == (7, 6, 1)
    assert summary["reasons"] == {"CSV line with an unbalanced quote": 1}
    (broken,) = rows.values()
    assert broken["row_number"] == 4 and "line 4" in broken["reasons"]
    assert "unbalanced quote" in broken["reasons"]
    assert broken["payload"] == lines[3]


def test_a_quoted_field_may_span_lines_when_its_quotes_balance(home, world, tmp_path):
    loans = world["loans"].iloc[:5].copy()
    loans.iloc[2, loans.columns.get_loc("person_home_ownership")] = "RENT\nOWN"
    lines = csv_lines(loans)
    assert len(lines) == 7  # header, 5 records, one of them on two lines
    summary = ingest("loans", read_source(write(tmp_path, lines)), home)
    rows = accounted(summary, home)
    assert (summary["rows_in"], summary["accepted"], summary["quarantined"]) == (5, 4, 1)
    assert rows[2]["reasons"] == "person_home_ownership in allowed categories"


def test_an_oversized_cell_quarantines_its_line(home, world, tmp_path):
    loans = world["loans"].iloc[:4].copy()
    loans.iloc[1, loans.columns.get_loc("loan_intent")] = "x" * (5 << 20)
    summary = ingest("loans", read_source(write(tmp_path, csv_lines(loans))), home)
    rows = accounted(summary, home)
    assert (summary["accepted"], summary["quarantined"]) == (3, 1)
    assert summary["reasons"] == {f"CSV line longer than {MAX_LINE_CHARS:,} characters": 1}
    assert f"longer than {MAX_LINE_CHARS:,} characters" in rows[3]["reasons"]
    assert len(json.dumps(rows[3]["payload"])) < 20_000  # the quarantine keeps a cut


def test_an_ambiguous_date_is_never_guessed(home, world, tmp_path):
    loans = world["loans"].iloc[:3].astype({"event_timestamp": object})
    loans.iloc[0, loans.columns.get_loc("event_timestamp")] = "01/12/2026"
    path = write(tmp_path, csv_lines(loans))
    rows = accounted(summary := ingest("loans", read_source(path), home, now=NOW), home)
    assert rows[0]["reasons"] == "event_timestamp is not an ISO 8601 timestamp"
    assert summary["accepted"] == 2


def test_a_date_format_reads_day_first_dates(home, world, tmp_path):
    loans = world["loans"].iloc[:3].copy()
    day_first = loans["event_timestamp"].dt.strftime("%d/%m/%Y %H:%M")
    loans = loans.assign(event_timestamp=day_first.where(day_first.index != 0, "01/12/2026 00:00"))
    path = write(tmp_path, csv_lines(loans))
    summary = ingest("loans", read_source(path, date_format="%d/%m/%Y %H:%M"), home, now=NOW)
    assert (summary["accepted"], summary["quarantined"]) == (3, 0)
    stored = offline.read_table(home, LOANS).set_index("loan_id")["event_timestamp"]
    assert stored[loans["loan_id"].iloc[0]] == pd.Timestamp("2026-12-01", tz="UTC")


# --- the request model of /predict ---------------------------------------------------------

Application = request_model("Application", APPLICATIONS.columns)
VALID = EXAMPLE_APPLICATION


@pytest.mark.parametrize(
    ("field", "json_value", "error_type", "message"),
    [
        ("loan_int_rate", "true", "float_type", "a number, not a boolean"),
        ("person_emp_length", '"9_0"', "float_type", "a number, not a string"),
        ("person_emp_length", '"4.0"', "float_type", "a number, not a string"),
        ("person_emp_length", "NaN", "finite_number", "a finite number, not NaN"),
        ("loan_int_rate", "Infinity", "finite_number", "not Infinity"),
        ("loan_int_rate", "-Infinity", "finite_number", "not -Infinity"),
        ("loan_int_rate", "1e400", "finite_number", "not Infinity"),
        ("person_age", "1e20", "less_than_equal", "less than or equal to 100"),
        ("zipcode", "9223372036854775808", "less_than_equal", "less than or equal to 99999"),
        ("person_income", '"60000"', "int_type", "an integer, not a string"),
        ("person_income", "false", "int_type", "an integer, not a boolean"),
        ("person_age", "null", "int_type", "an integer, not null"),
        ("person_age", "[40]", "int_type", "an integer, not an array"),
        ("person_age", "40.5", "int_from_float", "a whole number, not 40.5"),
        ("loan_amnt", json.dumps("9" * 10**6), "int_type", "not a string"),
        ("dob_ssn", '"١٩٨٠٠١٠١_١٢٣٤"', "string_pattern_mismatch", "[0-9]{8}_[0-9]{4}"),
        ("dob_ssn", "19800101", "string_type", "valid string"),
    ],
)
def test_the_request_model_rejects_hostile_json(field, json_value, error_type, message):
    document = json.dumps({**VALID, field: None}).replace("null", json_value)
    with pytest.raises(pydantic.ValidationError) as err:
        Application.model_validate_json(document)
    (error,) = err.value.errors()
    assert (error["loc"], error["type"]) == ((field,), error_type)
    assert message in error["msg"]


def test_the_request_model_takes_whole_numbers_as_integers():
    """JSON has one number type: 40.0 is the integer 40, as "40.0" in a CSV is."""
    application = Application.model_validate_json(json.dumps({**VALID, "person_age": 40.0}))
    assert application.person_age == 40 and type(application.person_age) is int


def test_a_folder_of_csv_and_parquet_parses_csv_text_only(home, world, tmp_path):
    """CSV cells are text to parse; a parquet file's values are typed. One batch, both."""
    folder = tmp_path / "batch"
    folder.mkdir()
    loans = world["loans"].iloc[:6].astype({"person_age": object})
    loans.iloc[1, loans.columns.get_loc("person_age")] = "forty"
    write(folder, csv_lines(loans.iloc[:3]), name="a.csv")
    loans.iloc[3:].astype({"person_age": "int64"}).to_parquet(folder / "b.parquet")
    summary = ingest("loans", read_source(str(folder)), home)
    rows = accounted(summary, home)
    assert (summary["rows_in"], summary["accepted"]) == (6, 5)
    assert rows[1]["reasons"] == "person_age is not a number"


def test_storing_never_wraps_an_integer_even_past_the_rules(world):
    """The last line of defence, should a bound ever be dropped: refuse, never wrap."""
    history = world["credit_history"].iloc[:2].astype({"credit_card_due": "float64"})
    history.iloc[1, history.columns.get_loc("credit_card_due")] = 1e20
    with pytest.raises(SchemaError, match=r"credit_card_due: 1e\+20 does not fit"):
        final_types(history, CREDIT_HISTORY)


def test_broken_lines_keep_their_physical_line_number_past_blank_lines(home, world, tmp_path):
    lines = csv_lines(world["loans"].iloc[:4])
    lines[2:2] = ["", ""]  # blank lines are no records
    lines.insert(5, "7,broken,line")  # file line 6
    summary = ingest("loans", read_source(write(tmp_path, lines)), home)
    rows = accounted(summary, home)
    assert (summary["rows_in"], summary["accepted"]) == (5, 4)
    assert rows[6]["payload"] == "7,broken,line" and "line 6 of" in rows[6]["reasons"]


def test_sql_strings_are_parsed_like_csv_cells_strictly(home, world, tmp_path):
    """SQLite stores an object column as TEXT: its strings are parsed as a CSV's would be."""
    url = f"sqlite:///{tmp_path / 'source.db'}"
    history = world["credit_history"].iloc[:4].astype({"credit_card_due": object})
    history.iloc[1, history.columns.get_loc("credit_card_due")] = "9_0"
    history.iloc[2, history.columns.get_loc("credit_card_due")] = 1e20
    history.to_sql("history", sa.create_engine(url), index=False)
    summary = ingest("credit_history", read_source(url, sql_table="history"), home)
    rows = accounted(summary, home)
    assert (summary["accepted"], summary["quarantined"]) == (2, 2)
    assert rows[1]["reasons"] == "credit_card_due is not a number"
    assert rows[2]["reasons"] == "credit_card_due <= 10,000,000"


def test_a_typed_batch_of_numbers_as_strings_is_refused(home, world):
    frame = world["loans"].iloc[:3].astype({"loan_amnt": str}).reset_index(drop=True)
    with pytest.raises(SchemaError, match="'loan_amnt' should hold numbers but holds strings"):
        ingest("loans", RawBatch(frame, "frame", frame_fingerprint(frame)), home)
    nothing_written(home, "loans")
