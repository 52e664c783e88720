"""Bringing a raw batch to the contract's column types, row by row where possible.

A column that is missing, or whose values mostly fail to parse, makes the whole batch wrong
(SchemaError: nothing is written). A few values that fail to parse make their rows invalid.
"""

from __future__ import annotations

import pandas as pd

from ingestion.contract import Col, TableContract
from ingestion.readers import SchemaError

# Above this share of unparseable values a column is taken as mistyped, not as dirty rows.
MISTYPED_SHARE = 0.5


def _parse_failures(col: Col, raw: pd.Series, parsed: pd.Series, what: str) -> pd.Series:
    failed = raw.notna() & parsed.isna()
    present = int(raw.notna().sum())
    if present and failed.sum() > MISTYPED_SHARE * present:
        example = raw[failed].iloc[0]
        raise SchemaError(
            f"column {col.name!r} should hold {what}s but most values do not parse "
            f"(e.g. {example!r}): is it the right column?"
        )
    return failed


def _numbers(col: Col, raw: pd.Series) -> tuple[pd.Series, dict[str, pd.Series]]:
    if pd.api.types.is_bool_dtype(raw):
        raise SchemaError(f"column {col.name!r} should hold numbers, not booleans")
    if pd.api.types.is_numeric_dtype(raw):
        parsed = raw.astype("float64")
        failures: dict[str, pd.Series] = {}
    else:
        parsed = pd.to_numeric(raw, errors="coerce").astype("float64")
        failures = {f"{col.name} is not a number": _parse_failures(col, raw, parsed, "number")}
    if col.kind == "int" and not pd.api.types.is_integer_dtype(raw):
        fractional = parsed.notna() & (parsed % 1 != 0)
        if fractional.any():
            failures[f"{col.name} is not an integer"] = fractional
    return parsed, failures


def _timestamps(col: Col, raw: pd.Series) -> tuple[pd.Series, dict[str, pd.Series]]:
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        return raw.dt.tz_convert("UTC").astype("datetime64[ns, UTC]"), {}
    if pd.api.types.is_datetime64_dtype(raw):  # naive: taken as UTC
        return raw.dt.tz_localize("UTC").astype("datetime64[ns, UTC]"), {}
    parsed = pd.to_datetime(raw, utc=True, errors="coerce", format="mixed")
    parsed = parsed.astype("datetime64[ns, UTC]")
    failed = _parse_failures(col, raw, parsed, "timestamp")
    return parsed, {f"{col.name} is not a timestamp": failed}


def _strings(raw: pd.Series) -> pd.Series:
    if raw.dtype == object and pd.api.types.infer_dtype(raw, skipna=True) in ("string", "empty"):
        return raw.where(raw.notna(), None)  # strings already (the usual case): no per-row work
    if raw.dtype == object:
        return raw.where(raw.isna() | raw.map(type).eq(str), raw.astype(str)).where(
            raw.notna(), None
        )
    return raw.astype(object).where(raw.notna(), None).map(lambda v: v if v is None else str(v))


def conform(raw: pd.DataFrame, table: TableContract) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The batch in contract types (ints as float64 until rows are filtered) and a boolean
    frame of per-row type failures (one column per rule)."""
    missing = [name for name in table.names if name not in raw.columns]
    if missing:
        extra = [c for c in raw.columns if c not in table.names]
        hint = f"; columns not in the contract: {extra}" if extra else ""
        raise SchemaError(f"{table.name}: missing column(s) {missing}{hint}")
    columns: dict[str, pd.Series] = {}
    failures: dict[str, pd.Series] = {}
    for col in table.columns:
        series = raw[col.name]
        if col.kind in ("int", "float"):
            columns[col.name], found = _numbers(col, series)
        elif col.kind == "timestamp":
            columns[col.name], found = _timestamps(col, series)
        else:
            columns[col.name], found = _strings(series), {}
        failures.update({rule: mask for rule, mask in found.items() if mask.any()})
    return pd.DataFrame(columns, index=raw.index), pd.DataFrame(failures, index=raw.index)


def final_types(frame: pd.DataFrame, table: TableContract) -> pd.DataFrame:
    """Valid rows with the exact stored dtypes (int64, float64, object, UTC ns timestamps),
    so that every batch file of a table has one schema."""
    out = frame.copy()
    for col in table.columns:
        if col.kind == "int":
            out[col.name] = out[col.name].astype("int64")
    return out[table.names]
