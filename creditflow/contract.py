"""The data contract: one declaration per source table, read by everything else.

Each column's type, nullability, range and allowed categories are written here once. From this
the code derives the Feast schemas (``feature_repo/``), the service's request model (``bento/``)
and the batch validation of labeled data (pandera), so a bound can never differ between
training, ingestion and serving.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import pandas as pd
import pandera.pandas as pa
import pydantic
from pydantic_core import PydanticCustomError

Kind = Literal["int", "float", "str", "timestamp"]

# Every source table's two times: Feast's event time and its tie-breaker.
EVENT_TIMESTAMP = "event_timestamp"
CREATED_TIMESTAMP = "created_timestamp"


@dataclass(frozen=True)
class Col:
    """One column and the rules its values must follow."""

    name: str
    kind: Kind
    nullable: bool = False
    ge: float | None = None
    le: float | None = None
    categories: tuple[str, ...] | None = None
    pattern: str | None = None
    description: str = ""
    # Flag rare values (robust z-score of log1p against the data so far) as ingestion warnings.
    watch_outliers: bool = False


@dataclass(frozen=True)
class TableContract:
    """A source table: its columns, its key and its event-time column."""

    name: str
    columns: tuple[Col, ...]
    key: tuple[str, ...]  # the entity key
    unique: tuple[str, ...]  # no two rows may share these values
    timestamp: str = EVENT_TIMESTAMP

    def column(self, name: str) -> Col:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.name} has no column {name!r}")

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def outlier_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.watch_outliers]


def _timestamps() -> tuple[Col, Col]:
    return (
        Col(EVENT_TIMESTAMP, "timestamp", description="when the fact became true (UTC)"),
        Col(CREATED_TIMESTAMP, "timestamp", description="when the row was written (UTC)"),
    )


# A watched amount this many robust standard deviations (of its log) from the median is a
# warning, not an error: rare is not invalid.
OUTLIER_Z = 5.0

HOME_OWNERSHIP = ("RENT", "OWN", "MORTGAGE", "OTHER")
LOAN_INTENTS = (
    "EDUCATION",
    "MEDICAL",
    "VENTURE",
    "PERSONAL",
    "DEBTCONSOLIDATION",
    "HOMEIMPROVEMENT",
)
LOCATION_TYPES = ("PRIMARY", "ACCEPTABLE", "NOT ACCEPTABLE")

# [0-9], not \d: \d matches any Unicode digit in Python and Rust (pydantic) but only ASCII in
# RE2 (Arrow), so the API and ingestion would disagree on "١٩٨٠٠١٠١_١٢٣٤".
DOB_SSN = Col(
    "dob_ssn",
    "str",
    pattern=r"^[0-9]{8}_[0-9]{4}$",
    description="applicant key: date of birth YYYYMMDD, underscore, last four SSN digits",
)
ZIPCODE = Col("zipcode", "int", ge=0, le=99999, description="5-digit US zipcode")

# The fields a loan application carries at request time (besides the two entity keys).
APPLICATION_COLUMNS = (
    Col("person_age", "int", ge=18, le=100, description="age in years"),
    Col(
        "person_income",
        "int",
        ge=0,
        le=10_000_000,
        description="yearly income, USD",
        watch_outliers=True,
    ),
    Col("person_home_ownership", "str", categories=HOME_OWNERSHIP),
    Col("person_emp_length", "float", ge=0, le=80, description="years employed"),
    Col("loan_intent", "str", categories=LOAN_INTENTS),
    Col(
        "loan_amnt",
        "int",
        ge=1,
        le=10_000_000,
        description="amount asked, USD",
        watch_outliers=True,
    ),
    Col("loan_int_rate", "float", ge=0, le=100, description="interest rate, percent"),
)

# Every integer is bounded at most by 2**53 - 1: conform() carries ints as float64 until rows
# are filtered, and below that bound a float64 holds every integer exactly (nothing rounds,
# nothing wraps when cast to int64).
MAX_EXACT_INT = 2**53 - 1
# One valid application (the APPLICATIONS contract's fields): where a test or a document needs
# "a good one" to break a field of.
EXAMPLE_APPLICATION: dict[str, Any] = {
    "dob_ssn": "19800101_1234",
    "zipcode": 2110,
    "person_age": 40,
    "person_income": 60000,
    "person_home_ownership": "RENT",
    "person_emp_length": 4.0,
    "loan_intent": "EDUCATION",
    "loan_amnt": 5000,
    "loan_int_rate": 11.5,
}

LOAN_ID = Col("loan_id", "int", ge=0, le=MAX_EXACT_INT)
# The label: what training learns and feedback reports.
LABEL = Col("loan_status", "int", ge=0, le=1, description="1 = defaulted")
LABEL_COLUMN = LABEL.name

LOANS = TableContract(
    name="loans",
    columns=(LOAN_ID, DOB_SSN, ZIPCODE, *APPLICATION_COLUMNS, LABEL, *_timestamps()),
    key=(LOAN_ID.name,),
    unique=(LOAN_ID.name,),
)

ZIPCODES = TableContract(
    name="zipcodes",
    columns=(
        ZIPCODE,
        Col("city", "str"),
        Col("state", "str", pattern=r"^[A-Z]{2}$"),
        Col("location_type", "str", categories=LOCATION_TYPES),
        Col("tax_returns_filed", "int", ge=0, le=10_000_000),
        Col("population", "int", ge=0, le=10_000_000, watch_outliers=True),
        Col("total_wages", "int", ge=0, le=10**12, description="USD", watch_outliers=True),
        *_timestamps(),
    ),
    key=(ZIPCODE.name,),
    unique=(ZIPCODE.name, EVENT_TIMESTAMP),
)

CREDIT_HISTORY = TableContract(
    name="credit_history",
    columns=(
        DOB_SSN,
        # Ranges bound what is possible, not what is usual (rare values are warnings).
        Col("credit_card_due", "int", ge=0, le=10_000_000, watch_outliers=True),
        Col("mortgage_due", "int", ge=0, le=1_000_000_000, watch_outliers=True),
        Col("student_loan_due", "int", ge=0, le=10_000_000, watch_outliers=True),
        Col("vehicle_loan_due", "int", ge=0, le=10_000_000, watch_outliers=True),
        Col("hard_pulls", "int", ge=0, le=1_000),
        Col("missed_payments_2y", "int", ge=0, le=1_000),
        Col("missed_payments_1y", "int", ge=0, le=1_000),
        Col("missed_payments_6m", "int", ge=0, le=1_000),
        Col("bankruptcies", "int", ge=0, le=100),
        *_timestamps(),
    ),
    key=(DOB_SSN.name,),
    unique=(DOB_SSN.name, EVENT_TIMESTAMP),
)

# What `creditflow score-batch` reads: applications as /predict takes them (any number per
# applicant), optionally each with the time to score it as of.
APPLICATIONS = TableContract(
    name="applications",
    columns=(DOB_SSN, ZIPCODE, *APPLICATION_COLUMNS),
    key=(DOB_SSN.name, ZIPCODE.name),
    unique=(),
)

TABLES: dict[str, TableContract] = {t.name: t for t in (LOANS, ZIPCODES, CREDIT_HISTORY)}

# Outcomes reported for logged predictions (`POST /feedback`, `creditflow feedback import`):
# validated like any table, but not a Feast source (so not in TABLES). The outcome follows the
# label's rule under its own name; the prediction id is the service's (uuid4().hex).
PREDICTION_ID = Col(
    "prediction_id", "str", pattern=r"^[0-9a-f]{32}$", description="the answer's prediction_id"
)
OUTCOME = Col("outcome", "int", ge=LABEL.ge, le=LABEL.le, description=LABEL.description)
# At most the column's 128 characters, no control characters; absent: who sent it decides.
LABEL_SOURCE = Col(
    "source",
    "str",
    nullable=True,
    pattern=r"^[^\x00-\x1f\x7f]{1,128}$",
    description="who reported the outcome (1-128 printable characters)",
)
LABELS = TableContract(
    name="labels",
    columns=(
        PREDICTION_ID,
        OUTCOME,
        Col("outcome_at", "timestamp", description="when the outcome became known (UTC)"),
        LABEL_SOURCE,
    ),
    key=(PREDICTION_ID.name,),
    unique=(),
    timestamp="outcome_at",
)


# --- derived: pydantic request model -------------------------------------------------------


def _not_a_number(value: Any, kind: str) -> PydanticCustomError:
    """The error for a JSON value of the wrong type, naming what it is instead."""
    what = {bool: "a boolean", str: "a string", type(None): "null", list: "an array"}.get(
        type(value), "an object" if isinstance(value, dict) else type(value).__name__
    )
    article = "an" if kind == "integer" else "a"
    return PydanticCustomError(
        "int_type" if kind == "integer" else "float_type",
        "Input should be {article} {kind}, not {what}",
        {"article": article, "kind": kind, "what": what},
    )


def _finite(value: Any) -> float:
    """A JSON number as a finite float; NaN, Infinity and numbers beyond float range fail."""
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        number = math.inf
    if not math.isfinite(number):
        raise PydanticCustomError(
            "finite_number",
            "Input should be a finite number, not {value}",
            {"value": "NaN" if math.isnan(number) else f"{'-' if number < 0 else ''}Infinity"},
        )
    return number


def _json_int(value: Any) -> int:
    """JSON numbers have no int/float distinction: 40 and 40.0 are the integer 40 (as in a CSV);
    40.5, booleans, strings and null are not integers."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, float):
        raise _not_a_number(value, "integer")
    if not _finite(value).is_integer():
        raise PydanticCustomError(
            "int_from_float", "Input should be a whole number, not {value}", {"value": value}
        )
    return int(value)


def _json_float(value: Any) -> float:
    """Only JSON numbers, finite: no booleans (true is not 1%), no strings ("9_0" is not 90)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _not_a_number(value, "number")
    return _finite(value)


_PY_TYPES: dict[Kind, Any] = {
    "int": Annotated[int, pydantic.BeforeValidator(_json_int)],
    "float": Annotated[float, pydantic.BeforeValidator(_json_float)],
    "str": pydantic.StrictStr,
}


def _pydantic_field(col: Col) -> tuple[Any, Any]:
    annotation: Any = _PY_TYPES[col.kind]
    if col.categories:
        annotation = Literal[col.categories]  # type: ignore[valid-type]
    kwargs: dict[str, Any] = {"description": col.description or None}
    if col.ge is not None:
        kwargs["ge"] = col.ge
    if col.le is not None:
        kwargs["le"] = col.le
    if col.pattern:
        kwargs["pattern"] = col.pattern
    if col.nullable:
        return annotation | None, pydantic.Field(None, **kwargs)
    return annotation, pydantic.Field(..., **kwargs)


def request_model(name: str, columns: tuple[Col, ...]) -> type[pydantic.BaseModel]:
    """A strict pydantic model whose fields and bounds are the contract's columns."""
    fields = {col.name: _pydantic_field(col) for col in columns}
    config = pydantic.ConfigDict(extra="forbid")
    return pydantic.create_model(name, __config__=config, **fields)  # type: ignore[call-overload]


# --- derived: pandera batch schema ---------------------------------------------------------


@dataclass(frozen=True)
class TimeWindow:
    """Plausible event times: not in the future (beyond a tolerance), not older than a horizon."""

    now: pd.Timestamp
    max_age: pd.Timedelta  # Settings.max_event_age_days
    tolerance: pd.Timedelta  # Settings.future_tolerance_minutes


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


def _checks(col: Col) -> list[pa.Check]:
    checks: list[pa.Check] = []
    if col.ge is not None:
        checks.append(pa.Check.ge(col.ge, error=f"{col.name} >= {_number(col.ge)}"))
    if col.le is not None:
        checks.append(pa.Check.le(col.le, error=f"{col.name} <= {_number(col.le)}"))
    if col.categories:
        checks.append(pa.Check.isin(col.categories, error=f"{col.name} in allowed categories"))
    if col.pattern:
        checks.append(pa.Check(_matching(col.pattern), error=f"{col.name} matches {col.pattern}"))
    return checks


def _matching(pattern: str):
    """A vectorised regex check (Arrow's RE2): pandas' per-row ``str.match`` is far slower on a
    million keys. A value that is not a string does not match; nulls are pandera's to judge."""
    import pyarrow as arrow
    import pyarrow.compute as pc

    def check(series: pd.Series) -> pd.Series:
        values = series.where(series.map(type, na_action="ignore").eq(str), None)
        strings = arrow.array(values.to_numpy(dtype=object), type=arrow.string(), from_pandas=True)
        matched = pc.match_substring_regex(strings, pattern).fill_null(False)
        return pd.Series(matched.to_numpy(zero_copy_only=False), index=series.index)

    return check


def _time_checks(table: TableContract, window: TimeWindow) -> list[pa.Check]:
    days = window.max_age.days
    return [
        pa.Check.le(window.now + window.tolerance, error=f"{table.timestamp} not in the future"),
        pa.Check.ge(window.now - window.max_age, error=f"{table.timestamp} within {days} days"),
    ]


def pandera_schema(table: TableContract, window: TimeWindow | None = None) -> pa.DataFrameSchema:
    """The pandera schema of a table; row-level rules only (types are checked by coercion)."""
    columns = {}
    for col in table.columns:
        checks = _checks(col)
        if window is not None and col.name == table.timestamp:
            checks += _time_checks(table, window)
        columns[col.name] = pa.Column(nullable=col.nullable, checks=checks, required=True)
    return pa.DataFrameSchema(columns, strict=False, name=table.name)


def rule_failures(
    df: pd.DataFrame, table: TableContract, window: TimeWindow | None = None
) -> pd.DataFrame:
    """A boolean frame, one column per rule that some row breaks, True where a row breaks it.

    ``df`` must have a unique index. Column sums are the per-rule counts of a batch.
    """
    try:
        pandera_schema(table, window).validate(df, lazy=True)
        return pd.DataFrame(index=df.index)
    except pa.errors.SchemaErrors as err:
        cases = err.failure_cases
    cases = cases[cases["index"].notna()]
    check = cases["check"].astype(str)
    rule = check.where(check != "not_nullable", cases["column"].astype(str) + " is null")
    failures = pd.DataFrame(False, index=df.index, columns=sorted(set(rule)))
    for name, rows in cases["index"].groupby(rule.to_numpy()):
        failures.loc[rows.to_numpy(), name] = True
    return failures


def reasons_of(failures: pd.DataFrame) -> pd.Series:
    """For each row, the rules it breaks joined by '; ' (empty string for a valid row)."""
    reasons = pd.Series("", index=failures.index, dtype=object)
    broken = failures.any(axis=1) if failures.shape[1] else reasons.astype(bool)
    if broken.any():
        names = failures.columns.to_numpy()
        reasons[broken] = ["; ".join(names[row]) for row in failures[broken].to_numpy(dtype=bool)]
    return reasons


def violations(df: pd.DataFrame, table: TableContract) -> pd.Series:
    """For each row, the rules it breaks joined by '; ' (empty string when the row is valid)."""
    return reasons_of(rule_failures(df, table))
