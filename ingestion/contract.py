"""The data contract: one declaration per source table, read by everything else.

Each column's type, nullability, range and allowed categories are written here once. From this
the code derives the Feast schemas (``feature_repo/``), the service's request model (``bento/``)
and the batch validation of labeled data (pandera), so a bound can never differ between
training, ingestion and serving.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
import pandera.pandas as pa
import pydantic

Kind = Literal["int", "float", "str", "timestamp"]


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


@dataclass(frozen=True)
class TableContract:
    """A source table: its columns, its key and its event-time column."""

    name: str
    columns: tuple[Col, ...]
    key: tuple[str, ...]
    timestamp: str = "event_timestamp"

    def column(self, name: str) -> Col:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.name} has no column {name!r}")

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]


def _timestamps() -> tuple[Col, Col]:
    return (
        Col("event_timestamp", "timestamp", description="when the fact became true (UTC)"),
        Col("created_timestamp", "timestamp", description="when the row was written (UTC)"),
    )


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

DOB_SSN = Col(
    "dob_ssn",
    "str",
    pattern=r"^\d{8}_\d{4}$",
    description="applicant key: date of birth YYYYMMDD, underscore, last four SSN digits",
)
ZIPCODE = Col("zipcode", "int", ge=0, le=99999, description="5-digit US zipcode")

# The fields a loan application carries at request time (besides the two entity keys).
APPLICATION_COLUMNS = (
    Col("person_age", "int", ge=18, le=100, description="age in years"),
    Col("person_income", "int", ge=0, le=10_000_000, description="yearly income, USD"),
    Col("person_home_ownership", "str", categories=HOME_OWNERSHIP),
    Col("person_emp_length", "float", ge=0, le=80, description="years employed"),
    Col("loan_intent", "str", categories=LOAN_INTENTS),
    Col("loan_amnt", "int", ge=1, le=10_000_000, description="amount asked, USD"),
    Col("loan_int_rate", "float", ge=0, le=100, description="interest rate, percent"),
)

LOANS = TableContract(
    name="loans",
    columns=(
        Col("loan_id", "int", ge=0),
        DOB_SSN,
        ZIPCODE,
        *APPLICATION_COLUMNS,
        Col("loan_status", "int", ge=0, le=1, description="1 = defaulted"),
        *_timestamps(),
    ),
    key=("loan_id",),
)

ZIPCODES = TableContract(
    name="zipcodes",
    columns=(
        ZIPCODE,
        Col("city", "str"),
        Col("state", "str", pattern=r"^[A-Z]{2}$"),
        Col("location_type", "str", categories=LOCATION_TYPES),
        Col("tax_returns_filed", "int", ge=0),
        Col("population", "int", ge=0),
        Col("total_wages", "int", ge=0),
        *_timestamps(),
    ),
    key=("zipcode",),
)

CREDIT_HISTORY = TableContract(
    name="credit_history",
    columns=(
        DOB_SSN,
        Col("credit_card_due", "int", ge=0),
        Col("mortgage_due", "int", ge=0),
        Col("student_loan_due", "int", ge=0),
        Col("vehicle_loan_due", "int", ge=0),
        Col("hard_pulls", "int", ge=0),
        Col("missed_payments_2y", "int", ge=0),
        Col("missed_payments_1y", "int", ge=0),
        Col("missed_payments_6m", "int", ge=0),
        Col("bankruptcies", "int", ge=0),
        *_timestamps(),
    ),
    key=("dob_ssn",),
)

TABLES: dict[str, TableContract] = {t.name: t for t in (LOANS, ZIPCODES, CREDIT_HISTORY)}


# --- derived: pydantic request model -------------------------------------------------------

_PY_TYPES: dict[Kind, type] = {"int": int, "float": float, "str": str}


def _pydantic_field(col: Col) -> tuple[Any, Any]:
    annotation: Any = _PY_TYPES[col.kind]
    if col.categories:
        annotation = Literal[col.categories]  # type: ignore[valid-type]
    if col.kind == "int":
        annotation = pydantic.StrictInt if not col.categories else annotation
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


def _checks(col: Col) -> list[pa.Check]:
    checks: list[pa.Check] = []
    if col.ge is not None:
        checks.append(pa.Check.ge(col.ge, error=f"{col.name} >= {col.ge:g}"))
    if col.le is not None:
        checks.append(pa.Check.le(col.le, error=f"{col.name} <= {col.le:g}"))
    if col.categories:
        checks.append(pa.Check.isin(col.categories, error=f"{col.name} in allowed categories"))
    if col.pattern:
        checks.append(pa.Check.str_matches(col.pattern, error=f"{col.name} matches {col.pattern}"))
    return checks


def pandera_schema(table: TableContract) -> pa.DataFrameSchema:
    """The pandera schema of a table; row-level rules only (types are checked by coercion)."""
    columns = {
        col.name: pa.Column(nullable=col.nullable, checks=_checks(col), required=True)
        for col in table.columns
    }
    return pa.DataFrameSchema(columns, strict=False, name=table.name)


def violations(df: pd.DataFrame, table: TableContract) -> pd.Series:
    """For each row, the rules it breaks joined by '; ' (empty string when the row is valid)."""
    reasons = pd.Series("", index=df.index, dtype=object)
    try:
        pandera_schema(table).validate(df, lazy=True)
        return reasons
    except pa.errors.SchemaErrors as err:
        cases = err.failure_cases
    cases = cases[cases["index"].notna()]
    rule = (
        cases["check"]
        .astype(str)
        .where(
            cases["check"].astype(str) != "not_nullable", cases["column"].astype(str) + " is null"
        )
    )
    grouped = rule.groupby(cases["index"].to_numpy()).agg(lambda s: "; ".join(sorted(set(s))))
    reasons.loc[grouped.index] = grouped.to_numpy()
    return reasons
