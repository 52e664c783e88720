"""The logged predictions of a monitor window, as one DataFrame: what every check reads.

A window can hold a million logged answers, each with its feature vector as a JSON object.
Parsing them one by one in Python (``json.loads``, or SQLAlchemy's JSON type doing it per row)
costs tens of seconds. Here the database builds one JSON line per row (time, answer, features
as stored) and joins a slice's lines into one text, so Python holds one object per slice, not
per value; DuckDB (installed already: the embedded offline store) parses the text in bulk
against the model's contract (numbers as DOUBLE, categories as VARCHAR). Two slices are read
at a time (the database's work and DuckDB's overlap). A value that is not what the contract
says fails loudly, naming the prediction. About 10 s of CPU for a million rows here.

Rows are those of ``window.model_tag`` with ``window.start < at <= window.as_of``: nothing
logged after ``as_of`` is read. Slices are time ranges of at most ``CHUNK_ROWS`` rows (of all
models: counted on the index of ``at``).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import sqlalchemy as sa
from pandas.api.types import union_categoricals

from creditflow.contract import APPLICATION_COLUMNS
from creditflow.model.stages import SHADOW
from creditflow.tables import predictions

if TYPE_CHECKING:
    from creditflow.monitoring.window import Window
    from creditflow.store.features import FeatureContract

# Rows parsed at once: a slice's JSON text is about 1 KB a row.
CHUNK_ROWS = 100_000
# Slices read at once.
READERS = 2
# Columns besides the features (application fields are prefixed, when asked for).
AT, PROBABILITY, DECISION, DECIDED_BY = "at", "default_probability", "decision", "decided_by"
APPLICATION_PREFIX = "application."
_CACHE_KEY = "logged_predictions"
_SMALLEST_SLICE = timedelta(microseconds=1)


def models_that_served(engine: sa.Engine, start: datetime, as_of: datetime) -> list[str]:
    """Tags of the models whose answers were returned in ``(start, as_of]`` (a shadow model's
    answers are logged, never returned), most answers first."""
    count = sa.func.count().label("answers")
    returned = sa.or_(predictions.c.role.is_(None), predictions.c.role != SHADOW)
    query = (
        sa.select(predictions.c.model_tag, count)
        .where(predictions.c.at > start, predictions.c.at <= as_of, returned)
        .group_by(predictions.c.model_tag)
        .order_by(count.desc(), predictions.c.model_tag)
    )
    with engine.connect() as conn:
        return [tag for tag, _ in conn.execute(query)]


def logged_predictions(window: Window, application: bool = False) -> pd.DataFrame:
    """The window's logged predictions for its model (read once per window, then cached):
    ``at`` (UTC), ``default_probability``, ``decision``, ``decided_by`` (categoricals), every
    contract feature (float64, or categorical for the contract's categorical features; missing
    is NaN), and with ``application`` the application fields as received
    (``application.<field>``; null for rows logged before the log kept them). Sorted by time."""
    key = (_CACHE_KEY, application)
    if key not in window._cache:
        window._cache[key] = read_logged(
            window.engine,
            window.model_tag,
            window.start,
            window.as_of,
            window.model.contract,
            application=application,
        )
    return window._cache[key]


def read_logged(
    engine: sa.Engine,
    model_tag: str,
    start: datetime,
    as_of: datetime,
    contract: FeatureContract,
    application: bool = False,
) -> pd.DataFrame:
    """``model_tag``'s logged predictions with ``start < at <= as_of`` (see
    :func:`logged_predictions`)."""
    with _reading(engine) as conn:
        slices = list(_slices(conn, model_tag, start, as_of))

    def read(number: int) -> pd.DataFrame:
        path = Path(scratch) / f"slice-{number}.json"
        with _reading(engine) as conn:
            return _read_slice(conn, model_tag, *slices[number], contract, application, path)

    # Two slices at a time: the database builds one slice's text (one core, no interpreter
    # lock held) while DuckDB parses another's.
    with (tempfile.TemporaryDirectory(prefix="creditflow-logged-") as scratch,
          ThreadPoolExecutor(max_workers=READERS) as pool):  # fmt: skip
        frames = list(pool.map(read, range(len(slices))))
    if not frames:
        return _empty(contract, application)
    if len(frames) > 1:  # categories differ between slices: union them, not objects
        frame = pd.concat(frames, ignore_index=True)
        for name, column in frames[0].items():
            if isinstance(column.dtype, pd.CategoricalDtype):
                frame[name] = union_categoricals([f[name] for f in frames], ignore_order=True)
    else:
        frame = frames[0]
    return frame.sort_values(AT, kind="stable", ignore_index=True)


@contextmanager
def _reading(engine: sa.Engine) -> Iterator:
    """A connection set up for reading the log in bulk."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":  # reads the file's pages without copying them
            conn.exec_driver_sql("PRAGMA mmap_size = 17179869184")
        elif engine.dialect.name == "postgresql":  # times as text in UTC, this transaction
            conn.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")
        yield conn


def _where(model_tag: str, low: datetime, high: datetime):
    return sa.and_(
        predictions.c.model_tag == model_tag, predictions.c.at > low, predictions.c.at <= high
    )


def _slices(conn, model_tag: str, start: datetime, end: datetime) -> Iterator[tuple]:
    """Time ranges ``(low, high]`` covering ``(start, end]`` with at most CHUNK_ROWS rows each
    (a range is halved until it fits, down to a microsecond). Rows are counted on the index of
    ``at``, every model's: an upper bound, and cheap."""
    count = sa.select(sa.func.count()).select_from(predictions)
    pending = [(start, end)]
    while pending:
        low, high = pending.pop()
        rows = conn.execute(count.where(predictions.c.at > low, predictions.c.at <= high))
        rows = rows.scalar_one()
        if rows == 0:
            continue
        if rows <= CHUNK_ROWS or high - low <= _SMALLEST_SLICE:
            yield low, high
            continue
        middle = low + (high - low) / 2
        pending += [(middle, high), (low, middle)]  # the earlier half first


def _json_string(column, dialect: str):
    """A text column as a JSON string literal, quoted by the database."""
    if dialect == "postgresql":
        return sa.cast(sa.func.to_json(column), sa.Text)
    return sa.func.json_quote(column)


def _line(dialect: str, application: bool):
    """One JSON object per row, built by the database: its time, answer and feature vector
    (and application), so that Python handles one string a row, not one object a value."""
    p = predictions.c
    text = [
        '{"at":',
        _json_string(sa.cast(p.at, sa.Text), dialect),
        ',"p":',
        sa.cast(p.default_probability, sa.Text),
        ',"d":',
        _json_string(p.decision, dialect),
        ',"b":',
        _json_string(p.decided_by, dialect),
        ',"f":',
        sa.cast(p.features, sa.Text),
    ]
    if application:
        text += [',"a":', sa.func.coalesce(sa.cast(p.application, sa.Text), "null")]
    text.append("}")
    line = sa.literal(text[0])
    for part in text[1:]:
        line = line + (sa.literal(part) if isinstance(part, str) else part)
    return line


def _read_slice(
    conn,
    model_tag: str,
    low: datetime,
    high: datetime,
    contract: FeatureContract,
    application: bool,
    path: Path,
) -> pd.DataFrame:
    """One slice's rows: the database joins their JSON lines into one text (no Python object
    per row), DuckDB parses it."""
    line = _line(conn.dialect.name, application)
    joined = sa.func.aggregate_strings(line, "\n")
    if conn.dialect.name == "sqlite":  # bytes as stored (UTF-8): no decoding, no encoding
        joined = sa.cast(joined, sa.LargeBinary)
    query = sa.select(joined).where(_where(model_tag, low, high))
    text = conn.execute(query).scalar_one()
    features = {
        name: "VARCHAR" if name in contract.categorical else "DOUBLE" for name in contract.names
    }
    fields = {c.name: "VARCHAR" if c.kind == "str" else "DOUBLE" for c in APPLICATION_COLUMNS}
    if text is None:
        return _empty(contract, application)
    types = {"at": "VARCHAR", "p": "DOUBLE", "d": "VARCHAR", "b": "VARCHAR", "f": _struct(features)}
    if application:
        types["a"] = _struct(fields)
    try:
        table = _parse(text, types, path)
    except ValueError as err:
        raise _bad_row(conn, model_tag, low, high, features, fields, err) from err
    del text
    columns = {
        AT: pd.to_datetime(table.column("at").to_pandas(), format="ISO8601", utc=True),
        PROBABILITY: table.column("p").to_numpy(),
        DECISION: _categorical(table.column("d")),
        DECIDED_BY: _categorical(table.column("b")),
    }
    vectors = table.column("f").combine_chunks()
    for index, name in enumerate(features):
        columns[name] = _column(vectors.field(index), name in contract.categorical)
    if application:
        received = table.column("a").combine_chunks()
        for index, name in enumerate(fields):
            is_text = fields[name] == "VARCHAR"
            columns[APPLICATION_PREFIX + name] = _column(received.field(index), is_text)
    return pd.DataFrame(columns)


def _struct(types: dict[str, str]) -> str:
    return "STRUCT(" + ", ".join(f'"{name}" {kind}' for name, kind in types.items()) + ")"


def _categorical(values) -> pd.Categorical:
    return values.dictionary_encode().to_pandas()


def _column(values, categorical: bool):
    import pyarrow as pa

    if categorical:
        return values.dictionary_encode().to_pandas()
    return pa.compute.cast(values, pa.float64()).to_numpy(zero_copy_only=False)


def _parse(text: bytes | str, types: dict[str, str], path: Path):
    """Newline-delimited JSON objects parsed by DuckDB into an Arrow table of the given
    columns, in order (a key the types lack is ignored, one they have but a row lacks is
    null)."""
    import duckdb

    data = text.encode() if isinstance(text, str) else text
    path.write_bytes(data)
    spec = "{" + ", ".join(f"'{name}': '{kind}'" for name, kind in types.items()) + "}"
    query = (
        f"select * from read_json('{path}', format='newline_delimited', columns={spec}, "
        "maximum_object_size=1048576)"
    )
    try:
        with duckdb.connect() as db:
            table = db.sql(query).to_arrow_table()
    except duckdb.Error as err:
        raise ValueError(str(err).splitlines()[0]) from err
    finally:
        os.unlink(path)
    lines = data.count(b"\n") + 1
    if table.num_rows != lines:  # one object per line, or the rows would misalign
        raise ValueError(f"{lines} JSON lines parsed into {table.num_rows} rows")
    return table


def _bad_row(
    conn,
    model_tag: str,
    low: datetime,
    high: datetime,
    features: dict[str, str],
    fields: dict[str, str],
    err: ValueError,
) -> ValueError:
    """The bulk parse failed: find the first row at fault, to name it."""
    p = predictions.c
    texts = sa.cast(p.features, sa.Text), sa.cast(p.application, sa.Text)
    query = sa.select(p.prediction_id, *texts).where(_where(model_tag, low, high))
    for prediction_id, *texts in conn.execute(query):
        for column, text, types in zip(
            ("features", "application"), texts, (features, fields), strict=True
        ):
            problem = _problem(text, types)
            if problem:
                return ValueError(f"prediction {prediction_id}: {column}{problem}")
    return ValueError(f"logged predictions of {model_tag} in ({low}, {high}]: {err}")


def _problem(text: str | None, types: dict[str, str]) -> str | None:
    """What is wrong with one logged JSON object, if anything."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as bad:
        return f" is not JSON ({bad})"
    if not isinstance(value, dict):
        return " is not a JSON object"
    for name, kind in types.items():
        found = value.get(name)
        if kind == "VARCHAR":
            ok = found is None or isinstance(found, str)
        else:
            ok = found is None or isinstance(found, int | float) and not isinstance(found, bool)
        if not ok:
            return f".{name} = {found!r} is not a {'string' if kind == 'VARCHAR' else 'number'}"
    return None


def _empty(contract: FeatureContract, application: bool) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            AT: pd.Series([], dtype="datetime64[ns, UTC]"),
            PROBABILITY: pd.Series([], dtype=np.float64),
            DECISION: pd.Series([], dtype="category"),
            DECIDED_BY: pd.Series([], dtype="category"),
        }
    )
    for name in contract.names:
        frame[name] = pd.Series([], dtype="category" if name in contract.categorical else "float64")
    if application:
        for col in APPLICATION_COLUMNS:
            frame[APPLICATION_PREFIX + col.name] = pd.Series(
                [], dtype="category" if col.kind == "str" else "float64"
            )
    return frame
