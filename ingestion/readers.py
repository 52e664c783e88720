"""Reading a batch from where the user keeps it: parquet, CSV, a folder of them, or SQL."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


class SchemaError(ValueError):
    """The batch as a whole cannot be ingested (unreadable, missing or mistyped columns)."""


@dataclass
class BrokenLine:
    line: int | None  # 1-based physical line in the file, when known
    text: str
    file: str


@dataclass
class RawBatch:
    frame: pd.DataFrame  # rows as read, original types
    source: str
    fingerprint: str  # identifies the content: the same batch twice has the same fingerprint
    broken_lines: list[BrokenLine] = field(default_factory=list)

    @property
    def rows_in(self) -> int:
        return len(self.frame) + len(self.broken_lines)


def _read_csv(path: Path, broken: list[BrokenLine]) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    def keep(row) -> str:
        broken.append(BrokenLine(row.number, row.text, str(path)))
        return "skip"

    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(use_threads=False),
            parse_options=pacsv.ParseOptions(invalid_row_handler=keep),
            convert_options=pacsv.ConvertOptions(strings_can_be_null=True),
        )
    except (pa.ArrowInvalid, OSError) as err:
        raise SchemaError(f"cannot read {path}: {err}") from err
    return table.to_pandas()


def _read_file(path: Path, broken: list[BrokenLine]) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path, broken)
    if suffix in (".parquet", ".pq"):
        try:
            return pd.read_parquet(path)
        except Exception as err:  # pyarrow raises several types for a damaged file
            raise SchemaError(f"cannot read {path}: {err}") from err
    raise SchemaError(f"{path}: only .parquet and .csv files can be ingested")


def _hash_files(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()[:24]


def read_files(source: Path) -> RawBatch:
    """A file, or every .parquet/.csv file of a folder (in name order), as one batch."""
    if source.is_dir():
        paths = sorted(p for p in source.iterdir() if p.suffix.lower() in (".parquet", ".csv"))
        if not paths:
            raise SchemaError(f"{source} holds no .parquet or .csv file")
    elif source.exists():
        paths = [source]
    else:
        raise SchemaError(f"{source} does not exist")
    broken: list[BrokenLine] = []
    frames = [_read_file(path, broken) for path in paths]
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return RawBatch(frame.reset_index(drop=True), str(source), _hash_files(paths), broken)


def frame_fingerprint(frame: pd.DataFrame) -> str:
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()
    columns = "\\x1f".join(map(str, frame.columns)).encode()
    return hashlib.sha256(columns + hashed).hexdigest()[:24]


def read_sql(url: str, table: str | None = None, query: str | None = None) -> RawBatch:
    """A table or a query of any SQLAlchemy database."""
    import sqlalchemy as sa

    if (table is None) == (query is None):
        raise SchemaError("a SQL source needs exactly one of a table name or a query")
    try:
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            if table is not None:
                frame = pd.read_sql_table(table, conn)
            else:
                frame = pd.read_sql_query(sa.text(query), conn)
    except Exception as err:  # driver errors vary by database
        raise SchemaError(f"cannot read from {engine.url!r}: {err}") from err
    finally:
        if "engine" in locals():
            engine.dispose()
    what = f"table {table}" if table else f"query {query}"
    safe_url = engine.url.render_as_string(hide_password=True)
    return RawBatch(frame.reset_index(drop=True), f"{safe_url} {what}", frame_fingerprint(frame))


def read_source(source: str, sql_table: str | None = None, query: str | None = None) -> RawBatch:
    """Any supported source: a path, or a SQLAlchemy URL (anything with '://')."""
    if "://" in source:
        return read_sql(source, sql_table, query)
    if sql_table or query:
        raise SchemaError("--sql-table and --query go with a database URL")
    return read_files(Path(source))
