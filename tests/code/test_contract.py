"""The data contract and what is derived from it."""

import pandas as pd
import pydantic
import pytest
from feast.types import Float64, Int64, String

from creditflow.contract import (
    APPLICATION_COLUMNS,
    APPLICATIONS,
    DOB_SSN,
    EXAMPLE_APPLICATION,
    LOANS,
    MAX_EXACT_INT,
    TABLES,
    ZIPCODE,
    request_model,
    violations,
)
from creditflow.feast_types import fields_of

Application = request_model("Application", (DOB_SSN, ZIPCODE, *APPLICATION_COLUMNS))
VALID = EXAMPLE_APPLICATION


def test_valid_application_is_accepted():
    assert Application(**VALID).person_age == 40


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("person_age", -5, "greater_than_equal"),
        ("person_age", 144, "less_than_equal"),
        ("person_income", 999_999_999, "less_than_equal"),
        ("person_home_ownership", "CASTLE", "literal_error"),
        ("loan_intent", "CRYPTO", "literal_error"),
        ("person_age", "forty", "int_type"),
        ("dob_ssn", "1980-01-01", "string_pattern_mismatch"),
        ("loan_int_rate", None, "float_type"),
    ],
)
def test_request_model_rejects_by_the_contract_rule(field, value, rule):
    with pytest.raises(pydantic.ValidationError) as err:
        Application(**{**VALID, field: value})
    (error,) = err.value.errors()
    assert error["loc"] == (field,)
    assert error["type"] == rule


def test_missing_and_unknown_fields_are_rejected():
    with pytest.raises(pydantic.ValidationError, match="person_age"):
        Application(**{k: v for k, v in VALID.items() if k != "person_age"})
    with pytest.raises(pydantic.ValidationError, match="extra"):
        Application(**VALID, favourite_colour="blue")


def test_batch_violations_name_each_broken_rule():
    now = pd.Timestamp("2026-01-01", tz="UTC")
    good = {
        **VALID,
        "loan_id": 1,
        "loan_status": 0,
        "event_timestamp": now,
        "created_timestamp": now,
    }
    rows = pd.DataFrame(
        [
            good,
            {**good, "loan_id": 2, "person_age": -5},
            {**good, "loan_id": 3, "person_income": 999_999_999, "loan_intent": "CRYPTO"},
            {**good, "loan_id": 4, "person_emp_length": None},
            {**good, "loan_id": 5, "dob_ssn": "1980-01-01"},
            {**good, "loan_id": 6, "dob_ssn": "19800101_12345"},
        ]
    )
    reasons = violations(rows, LOANS)
    assert reasons[0] == ""
    assert reasons[1] == "person_age >= 18"
    assert reasons[2] == "loan_intent in allowed categories; person_income <= 10,000,000"
    assert reasons[3] == "person_emp_length is null"
    assert reasons[4] == reasons[5] == "dob_ssn matches ^[0-9]{8}_[0-9]{4}$"


def test_feast_fields_follow_the_contract_types():
    fields = {f.name: f.dtype for f in fields_of(LOANS.columns)}
    assert fields["person_age"] == Int64
    assert fields["loan_int_rate"] == Float64
    assert fields["loan_intent"] == String
    assert "event_timestamp" not in fields


@pytest.mark.parametrize("table", [*TABLES.values(), APPLICATIONS], ids=lambda t: t.name)
def test_every_number_has_a_range_that_fits_the_stored_type(table):
    """Bounds are what stops 1e20 from wrapping to -2**63 on its way to int64."""
    for col in table.columns:
        if col.kind in ("int", "float"):
            assert col.ge is not None and col.le is not None, col.name
            assert -MAX_EXACT_INT <= col.ge <= col.le <= MAX_EXACT_INT, col.name
