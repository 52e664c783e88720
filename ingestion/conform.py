"""Bringing a raw batch to the contract's column types, row by row where possible.

A column that is missing, or whose values mostly fail to parse, makes the whole batch wrong
(SchemaError: nothing is written). A few values that fail to parse make their rows invalid.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import pandas as pd
import pyarrow as arrow
import pyarrow.compute as pc

from creditflow.contract import MAX_EXACT_INT, Col, TableContract
from creditflow.ingestion.readers import DATE_FORMAT_ATTR, TEXT_ATTR, SchemaError

# Above this share of unparseable values a column is taken as mistyped, not as dirty rows.
MISTYPED_SHARE = 0.5


def _refuse_mistyped(col: Col, raw: pd.Series, failed: pd.Series, what: str) -> None:
    """A column most of whose values fail to parse is the wrong column, not dirty rows."""
    present = int(raw.notna().sum())
    if present and failed.sum() > MISTYPED_SHARE * present:
        example = raw[failed].iloc[0]
        hint = ""
        if "time" in what and str(example).strip().isdigit():
            hint = f" ({_epoch_hint(pd.to_numeric(raw[failed], errors='coerce'))})"
        raise SchemaError(
            f"column {col.name!r} should hold {what} but most values do not parse "
            f"(e.g. {_shorten(example)!r}){hint}: is it the right column?"
        )


def _shorten(value: object, limit: int = 80) -> object:
    text = str(value)
    return value if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


# A number written as text (CSV): ASCII decimal with optional sign, fraction and exponent.
# Stricter than float(): not "9_0" (Python reads 90), "٣" (a Unicode digit), "0x10" or "inf".
NUMBER_TEXT = r"^ *[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)? *$"

_NUMERIC_INFERRED = ("integer", "floating", "mixed-integer-float", "decimal")


def _kind(value: object) -> str:
    if isinstance(value, bool | np.bool_):
        return "boolean"
    if isinstance(value, str):
        return "string"
    return "number" if isinstance(value, numbers.Number) else "other"


def _matches(strings: pd.Series, pattern: str) -> pd.Series:
    """Vectorised (Arrow RE2) full match of string values."""
    values = arrow.array(strings.to_numpy(dtype=object), type=arrow.string())
    matched = pc.match_substring_regex(values, pattern)
    return pd.Series(matched.to_numpy(zero_copy_only=False), index=strings.index, dtype=bool)


def _float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except OverflowError:  # an integer beyond float range: as far out of range as it gets
        return math.inf if value > 0 else -math.inf  # type: ignore[operator]
    except (TypeError, ValueError):
        return math.nan


def _floats(values: pd.Series) -> pd.Series:
    """Numbers of an object column as float64; integers too large for a float become inf."""
    try:
        return pd.to_numeric(values, errors="coerce").astype("float64")
    except OverflowError:
        return values.map(_float).astype("float64")


def _numbers(col: Col, raw: pd.Series, text: bool) -> tuple[pd.Series, dict[str, pd.Series]]:
    """Numbers of any numeric dtype; from an object column only real numbers, or (when the
    source is text) strings that are plain decimals. Never a boolean: True is not 1."""
    if pd.api.types.is_bool_dtype(raw):
        raise SchemaError(f"column {col.name!r} should hold numbers, not booleans")
    failures: dict[str, pd.Series] = {}
    if pd.api.types.is_numeric_dtype(raw):
        parsed = raw.astype("float64")
    else:
        inferred = pd.api.types.infer_dtype(raw, skipna=True)
        if inferred == "boolean":
            raise SchemaError(f"column {col.name!r} should hold numbers, not booleans")
        if inferred in ("string", "empty"):
            kinds = pd.Series("string", index=raw.index).where(raw.notna(), None)
        elif inferred in _NUMERIC_INFERRED:
            kinds = pd.Series("number", index=raw.index).where(raw.notna(), None)
        else:
            kinds = raw.map(_kind, na_action="ignore")
        parsed = pd.Series(np.nan, index=raw.index, dtype="float64")
        number = kinds.eq("number")
        parsed[number] = _floats(raw[number])
        string = kinds.eq("string")
        if text:
            good = np.zeros(len(raw), dtype=bool)
            good[string.to_numpy()] = _matches(raw[string], NUMBER_TEXT).to_numpy()
            good = pd.Series(good, index=raw.index)
            parsed[good] = pd.to_numeric(raw[good], errors="coerce").astype("float64")
            not_a_number = (string & ~good) | kinds.eq("other")
        else:
            if string.sum() > MISTYPED_SHARE * raw.notna().sum():
                raise SchemaError(
                    f"column {col.name!r} should hold numbers but holds strings "
                    f"(e.g. {_shorten(raw[string].iloc[0])!r}): in a typed source (parquet, "
                    "a data frame) numbers must be stored as numbers"
                )
            failures[f"{col.name} is a string, not a number"] = string
            not_a_number = kinds.eq("other")
        failures[f"{col.name} is a boolean, not a number"] = kinds.eq("boolean")
        failures[f"{col.name} is not a number"] = not_a_number
        _refuse_mistyped(col, raw, raw.notna() & parsed.isna(), "numbers")
    infinite = np.isinf(parsed)
    if infinite.any():
        failures[f"{col.name} is not a finite number"] = infinite
    if col.kind == "int" and not pd.api.types.is_integer_dtype(raw):
        fractional = np.isfinite(parsed) & (parsed % 1 != 0)
        if fractional.any():
            failures[f"{col.name} is not an integer"] = fractional
    return parsed, failures


def _epoch_hint(values: pd.Series) -> str:
    """What numbers in a timestamp column most likely are, for the error message."""
    magnitude = float(np.nanmedian(np.abs(values.astype("float64"))))
    if 1e8 <= magnitude < 1e11:
        return "they look like epoch seconds"
    if 1e11 <= magnitude < 1e14:
        return "they look like epoch milliseconds"
    return "they are not timestamps"


def _timestamps(
    col: Col, raw: pd.Series, date_format: str | None
) -> tuple[pd.Series, dict[str, pd.Series]]:
    """UTC timestamps. Text is ISO 8601 unless a format is given: 01/12/2026 is never guessed.
    Numbers are refused with a hint (epoch seconds or milliseconds), not read as nanoseconds."""
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        return raw.dt.tz_convert("UTC").astype("datetime64[ns, UTC]"), {}
    if pd.api.types.is_datetime64_dtype(raw):  # naive: taken as UTC
        return raw.dt.tz_localize("UTC").astype("datetime64[ns, UTC]"), {}
    if pd.api.types.is_numeric_dtype(raw) and raw.notna().any():
        example = raw[raw.notna()].iloc[0]
        raise SchemaError(
            f"column {col.name!r} should hold timestamps but holds numbers (e.g. {example!r}): "
            f"{_epoch_hint(raw)}; write ISO 8601 times, e.g. 2026-01-31T09:30:00Z"
        )
    parsed = pd.to_datetime(raw, utc=True, errors="coerce", format=date_format or "ISO8601")
    parsed = parsed.astype("datetime64[ns, UTC]")
    failed = raw.notna() & parsed.isna()
    what = f"a timestamp in the format {date_format!r}" if date_format else "an ISO 8601 timestamp"
    failures: dict[str, pd.Series] = {}
    if failed.any():
        text = raw[failed].astype(str).str.strip()
        for length, unit in ((10, "seconds"), (13, "milliseconds")):
            epoch = text.str.fullmatch(f"[0-9]{{{length}}}").reindex(raw.index, fill_value=False)
            failures[f"{col.name} looks like epoch {unit}, not {what}"] = epoch
            failed &= ~epoch
        plural = f"timestamps in the format {date_format!r}" if date_format else "ISO 8601 times"
        _refuse_mistyped(col, raw, raw.notna() & parsed.isna(), plural)
    failures[f"{col.name} is not {what}"] = failed
    return parsed, failures


def _strings(raw: pd.Series) -> pd.Series:
    if raw.dtype == object and pd.api.types.infer_dtype(raw, skipna=True) in ("string", "empty"):
        return raw.where(raw.notna(), None)  # strings already (the usual case): no per-row work
    if raw.dtype == object:
        return raw.where(raw.isna() | raw.map(type).eq(str), raw.astype(str)).where(
            raw.notna(), None
        )
    return raw.astype(object).where(raw.notna(), None).map(lambda v: v if v is None else str(v))


def _check_names(raw: pd.DataFrame, table: TableContract) -> None:
    """Refuse a header that repeats a name, or two names that differ only in case or spaces,
    or that lacks a contract column: which column is meant cannot be guessed."""
    names = [str(c) for c in raw.columns]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise SchemaError(f"{table.name}: column name(s) {repeated} appear more than once")
    by_key: dict[str, list[str]] = {}
    for name in names:
        by_key.setdefault(name.strip().casefold(), []).append(name)
    ambiguous = [group for group in by_key.values() if len(group) > 1]
    if ambiguous:
        raise SchemaError(f"{table.name}: ambiguous column names {ambiguous} (case or spaces)")
    missing = [name for name in table.names if name not in names]
    if missing:
        extra = [c for c in names if c not in table.names]
        hint = f"; columns not in the contract: {extra}" if extra else ""
        near = [
            f"{c!r} for {c.strip().casefold()!r}" for c in extra if c.strip().casefold() in missing
        ]
        hint += f" (case or spaces differ: {', '.join(near)})" if near else ""
        raise SchemaError(f"{table.name}: missing column(s) {missing}{hint}")


def conform(
    raw: pd.DataFrame,
    table: TableContract,
    *,
    text: bool | None = None,
    date_format: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The batch in contract types (ints as float64 until rows are filtered) and a boolean
    frame of per-row type failures (one column per rule).

    ``text``: values were read as text (CSV; strings from SQL, e.g. SQLite TEXT columns), so
    strings in number columns are parsed, strictly; in a typed source (parquet, a data frame,
    JSON) a string is not a number. Both default to what the reader recorded in ``raw.attrs``
    (typed, ISO 8601 when nothing is recorded)."""
    _check_names(raw, table)
    if text is None:
        text = bool(raw.attrs.get(TEXT_ATTR, False))
    date_format = date_format or raw.attrs.get(DATE_FORMAT_ATTR)
    columns: dict[str, pd.Series] = {}
    failures: dict[str, pd.Series] = {}
    for col in table.columns:
        series = raw[col.name]
        if col.kind in ("int", "float"):
            columns[col.name], found = _numbers(col, series, text)
        elif col.kind == "timestamp":
            columns[col.name], found = _timestamps(col, series, date_format)
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
            values = out[col.name]
            if len(values) and not values.abs().le(MAX_EXACT_INT).all():  # never wrap silently
                bad = values[~values.abs().le(MAX_EXACT_INT)].iloc[0]
                raise SchemaError(f"{col.name}: {float(bad):g} does not fit an exact int64")
            out[col.name] = values.astype("int64")
    return out[table.names]
