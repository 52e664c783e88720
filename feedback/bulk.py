"""Bulk writes to our tables, a million rows in seconds: SQLAlchemy's per-row processing (JSON,
times) costs more than the database itself, so rows go to the driver as they will be stored:
``executemany`` with text times on SQLite, ``COPY`` from CSV on PostgreSQL.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import sqlalchemy as sa


def sqlite_times(values: pd.Series) -> list[str]:
    """UTC times as SQLAlchemy stores them in SQLite: "YYYY-MM-DD HH:MM:SS.ffffff", no zone
    (so they compare, as text, with the times it writes itself). Each distinct time is
    formatted once."""
    times = pd.to_datetime(values, utc=True).dt.tz_convert(None).to_numpy("datetime64[us]")
    codes, distinct = pd.factorize(times.view("int64"))
    text = np.datetime_as_string(distinct.astype("datetime64[us]"), unit="us")
    text = pc.replace_substring(pa.array(text), "T", " ").to_numpy(zero_copy_only=False)
    out = text[codes].astype(object)
    out[np.isnat(times)] = None
    return out.tolist()


def _python_column(values: pd.Series) -> list:
    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(values):
        return sqlite_times(values)
    if values.isna().any():
        return values.astype(object).where(values.notna(), None).tolist()
    return values.tolist()  # numpy scalars become Python ones (sqlite3 takes no numpy types)


def _sql_literal(value: object) -> str | None:
    """A constant as SQL text, or None if it is not a plain number, string or null."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and np.isfinite(value):
        return repr(value)
    if isinstance(value, str) and "\x00" not in value:
        return "'" + value.replace("'", "''") + "'"  # SQL's quoting: SQLite has no escapes
    return None


def _insert_sqlite(driver, table: str, rows: pd.DataFrame) -> None:
    """``executemany``, each row's values bound; a column with one value for every row is
    written into the statement once instead (binding is most of the cost)."""
    names, marks, values = [], [], []
    for name in rows.columns:
        column = _python_column(rows[name])
        literal = _sql_literal(column[0]) if column.count(column[0]) == len(column) else None
        names.append(name)
        marks.append(literal or "?")
        if literal is None:
            values.append(column)
    sql = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join(marks)})"
    driver.executemany(sql, zip(*values, strict=True) if values else [()] * len(rows))


def insert_rows(conn: sa.Connection, table: str, rows: pd.DataFrame) -> None:
    """Insert ``rows`` (columns named as the table's; times UTC; JSON columns as JSON text)
    inside the connection's transaction."""
    if not len(rows):
        return
    driver = conn.connection.driver_connection
    if conn.dialect.name == "sqlite":
        _insert_sqlite(driver, table, rows)
        return
    columns = ", ".join(rows.columns)
    buffer = io.BytesIO()
    arrow = pa.Table.from_pandas(rows, preserve_index=False)
    pacsv.write_csv(arrow, buffer, pacsv.WriteOptions(include_header=False))
    with (
        driver.cursor() as cur,
        cur.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT csv)") as copy,
    ):
        copy.write(buffer.getvalue())


def text_time(conn: sa.Connection, column: str) -> str:
    """SQL for a time column as UTC text that pandas parses fast (ISO 8601)."""
    if conn.dialect.name == "sqlite":
        return column  # stored as such
    return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"


def fetch_frame(conn: sa.Connection, sql: str, times: Sequence[str] = ()) -> pd.DataFrame:
    """A query's rows as a frame, straight from the driver (no per-row SQLAlchemy work);
    ``times`` (selected with :func:`text_time`) as UTC timestamps."""
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.execute(sql)
        names = [d[0] for d in cursor.description]
        frame = pd.DataFrame.from_records(cursor.fetchall(), columns=names)
    finally:
        cursor.close()
    for name in times:
        frame[name] = pd.to_datetime(frame[name], utc=True, format="ISO8601")
    return frame
