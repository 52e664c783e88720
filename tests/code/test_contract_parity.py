"""One contract, every door, the same verdict: the request model (/predict, /predict_batch) and
the batch validator (ingest, push, score-batch) accept and reject exactly the same values.

Hypothesis draws one hostile value for one field of an otherwise valid application:
boundaries, overflows, NaN/inf, Unicode digits, huge strings, wrong JSON types.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

import hypothesis
import hypothesis.strategies as st
import pandas as pd
import pydantic

from creditflow.contract import APPLICATIONS, EXAMPLE_APPLICATION, Col, request_model
from creditflow.ingestion.ingest import check
from creditflow.ingestion.readers import SchemaError, read_source

Application = request_model("Application", APPLICATIONS.columns)
VALID = EXAMPLE_APPLICATION
UNICODE_DIGITS = "٠١٢٣٤٥٦٧٨٩०१२३४५६७८९０１２３４５６７８９𝟎𝟏𝟐"


def _boundaries(col: Col) -> list[Any]:
    """Each bound, and the nearest values either side of it, as int and as float."""
    values: list[Any] = []
    for bound in (col.ge, col.le):
        if bound is not None:
            for v in (bound, math.nextafter(bound, -math.inf), math.nextafter(bound, math.inf)):
                values += [v, float(v)] + ([int(v), int(v) - 1, int(v) + 1] if v % 1 == 0 else [])
    return values


def _digits(size: int) -> st.SearchStrategy:
    return st.text(st.sampled_from(UNICODE_DIGITS + "0123456789"), min_size=size, max_size=size)


# dob_ssn-shaped strings whose digits may be any Unicode digits ("١٩٨٠٠١٠١_١٢٣٤").
DOB_SHAPED = st.tuples(_digits(8), _digits(4)).map("_".join)


def _hostile(col: Col) -> st.SearchStrategy:
    unicode_digits = st.text(st.sampled_from(UNICODE_DIGITS + "0123456789_"), max_size=14)
    return st.one_of(
        st.sampled_from(_boundaries(col) or [""]),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.sampled_from([2**63, 2**63 - 1, -(2**63) - 1, 2**64, 10**400, 1e20, -1e20]),
        st.floats(allow_nan=True, allow_infinity=True),
        st.booleans(),
        st.none(),
        st.text(max_size=20),
        st.from_regex(r"\A[0-9]{8}_[0-9]{4}\Z"),
        unicode_digits,
        DOB_SHAPED,
        st.sampled_from(["40", "9_0", " 40", "1e3", "0x10", "NaN", "Infinity", "true", "RENT"]),
        st.sampled_from(["9" * 100_000, "19800101_1234" * 10_000]),
        st.lists(st.integers(0, 100), max_size=2),
        st.dictionaries(st.text(max_size=3), st.integers(0, 9), max_size=1),
        st.sampled_from(col.categories or ("EDUCATION",)),
    )


@st.composite
def applications(draw) -> tuple[str, dict[str, Any]]:
    col = draw(st.sampled_from(APPLICATIONS.columns))
    return col.name, {**VALID, col.name: draw(_hostile(col))}


def api_verdict(document: str, field: str) -> bool:
    """Whether /predict would take the JSON document; a rejection must name the field."""
    try:
        Application.model_validate_json(document)
    except pydantic.ValidationError as err:
        assert {e["loc"][0] for e in err.errors()} == {field}, err
        return False
    return True


def batch_verdict(frame: pd.DataFrame, field: str, **options) -> bool:
    """Whether ingestion would accept the one row; a rejection must name the field."""
    try:
        _, failures = check(frame, APPLICATIONS, **options)
    except SchemaError as err:
        assert field in str(err), err
        return False
    broken = [rule for rule in failures.columns if failures[rule].any()]
    assert all(rule.startswith(f"{field} ") for rule in broken), broken
    return not broken


@hypothesis.settings(max_examples=150, deadline=None, database=None)
@hypothesis.given(applications())
def test_json_and_a_typed_batch_give_the_same_verdict(case):
    field, application = case
    document = json.dumps(application)
    parsed = json.loads(document)  # what a typed source (JSON lines, parquet) holds
    typed = pd.DataFrame({k: pd.Series([v], dtype=object) for k, v in parsed.items()})
    verdict = api_verdict(document, field)
    assert batch_verdict(typed, field, text=False) == verdict
    try:
        inferred = pd.DataFrame([parsed])  # the same with pandas' dtype inference
    except OverflowError:  # pandas cannot infer a column from an int beyond float range
        return
    assert batch_verdict(inferred, field, text=False) == verdict


def _csv(application: dict[str, Any]) -> str:
    """The application as a CSV file would hold it: numbers in their JSON notation."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # so a field with \r is quoted
    writer.writerow(application)
    cells = [v if isinstance(v, str) else json.dumps(v) for v in application.values()]
    writer.writerow(cells)
    return out.getvalue()


@st.composite
def csv_applications(draw) -> tuple[str, dict[str, Any]]:
    """A value a CSV cell can carry with the same meaning as in JSON: a number for a number
    column, a string for a string column (CSV has no types: "40" in a CSV is a number)."""
    col = draw(st.sampled_from(APPLICATIONS.columns))
    if col.kind == "str":
        value = draw(
            st.one_of(
                st.text(max_size=20).filter(lambda s: s.strip() == s and s not in NULL_TEXTS),
                st.from_regex(r"\A[0-9]{8}_[0-9]{4}\Z"),
                st.text(st.sampled_from(UNICODE_DIGITS + "0123456789_"), min_size=1),
                DOB_SHAPED,
                st.sampled_from(col.categories or ("x",)),
            )
        )
    else:
        value = draw(
            st.one_of(
                st.sampled_from(_boundaries(col)),
                st.integers(min_value=-(2**70), max_value=2**70),
                st.floats(allow_nan=False, allow_infinity=True),
            )
        )
    return col.name, {**VALID, col.name: value}


# Text Arrow's CSV reader takes as null; the API sees these strings as strings.
NULL_TEXTS = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND"}
NULL_TEXTS |= {"1.#QNAN", "N/A", "NA", "NULL", "NaN", "n/a", "nan", "null"}


@hypothesis.settings(max_examples=60, deadline=None, database=None)
@hypothesis.given(csv_applications())
def test_a_csv_file_and_json_give_the_same_verdict(tmp_path_factory, case):
    field, application = case
    path = tmp_path_factory.mktemp("csv") / "applications.csv"
    path.write_text(_csv(application), encoding="utf-8")
    batch = read_source(str(path))
    assert not batch.broken_lines
    assert batch_verdict(batch.frame, field) == api_verdict(json.dumps(application), field)
