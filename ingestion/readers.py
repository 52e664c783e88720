"""Reading a batch from where the user keeps it: parquet, CSV, a folder of them, or SQL."""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


class SchemaError(ValueError):
    """The batch as a whole cannot be ingested (unreadable, missing or mistyped columns)."""


# A CSV line longer than this is quarantined, not read: one runaway cell must not sink a batch
# (Arrow refuses a row larger than its block) or fill the quarantine table.
MAX_LINE_CHARS = 1 << 20
# How much of a broken line the quarantine keeps.
MAX_PAYLOAD_CHARS = 10_000

# Frame attributes read by conform(): the values are text to parse, and how dates are written.
TEXT_ATTR = "creditflow.text"
DATE_FORMAT_ATTR = "creditflow.date_format"


@dataclass
class BrokenLine:
    line: int | None  # 1-based physical line in the file, when known
    text: str
    file: str
    reason: str = ""  # why the line is not a row; empty: the wrong number of fields


@dataclass
class RawBatch:
    frame: pd.DataFrame  # rows as read, original types
    source: str
    fingerprint: str  # identifies the content: the same batch twice has the same fingerprint
    broken_lines: list[BrokenLine] = field(default_factory=list)

    @property
    def rows_in(self) -> int:
        return len(self.frame) + len(self.broken_lines)


def _codec(encoding: str) -> str:
    """The codec's canonical name; an unknown encoding is the user's error, said plainly."""
    try:
        return codecs.lookup(encoding).name
    except LookupError as err:
        raise SchemaError(f"unknown encoding {encoding!r}") from err


def _decode(data: bytes, path: Path, encoding: str) -> str:
    """The file's text; a byte the encoding cannot read names its line and offset."""
    codec = "utf-8-sig" if _codec(encoding) == "utf-8" else encoding
    try:
        return data.decode(codec)
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise SchemaError(
            f"{path}: line {line}, byte offset {err.start} (byte {column} of the line): "
            f"byte 0x{data[err.start]:02x} is not valid {encoding} ({err.reason}); "
            "pass the file's encoding, e.g. --encoding latin-1"
        ) from err


def _fields(text: str) -> list[str] | None:
    """The fields of one CSV record, or None when the text is not exactly one record."""
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error:
        return None
    return rows[0] if len(rows) == 1 else None


def _payload(text: str) -> str:
    if len(text) <= MAX_PAYLOAD_CHARS:
        return text
    return f"{text[:MAX_PAYLOAD_CHARS]}... (line cut: {len(text):,} characters)"


def _records(text: str, path: Path, broken: list[BrokenLine]) -> tuple[list[str], list[int]]:
    """Split CSV text into records: the header, then one entry per row with its first line.

    A quoted field may span lines only when its quotes close and the record then has the
    header's number of fields; otherwise the line with the stray quote alone is broken, and
    its neighbours stay rows. Over-long lines are broken too."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [line.removesuffix("\r") for line in lines]
    if not lines:
        raise SchemaError(f"{path} is empty: no header line")
    header = _fields(lines[0])
    if header is None or len(lines[0]) > MAX_LINE_CHARS:
        raise SchemaError(f"{path}: line 1 is not a readable CSV header: {_payload(lines[0])!r}")
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise SchemaError(f"{path}: column name(s) {repeated} appear more than once in line 1")
    odd = [line.count('"') % 2 == 1 for line in lines] if '"' in text else [False] * len(lines)
    if not any(odd) and max(map(len, lines)) <= MAX_LINE_CHARS:  # the usual file: line = row
        numbers = [n for n, line in enumerate(lines, 1) if line]  # Arrow skips empty lines
        return [lines[n - 1] for n in numbers], numbers
    records, first_lines = [lines[0]], [1]
    i = 1
    while i < len(lines):
        line = lines[i]
        if not line:  # not a record: Arrow skips it, so it must not shift the line numbers
            i += 1
            continue
        if len(line) > MAX_LINE_CHARS:
            reason = f"CSV line longer than {MAX_LINE_CHARS:,} characters"
            broken.append(BrokenLine(i + 1, _payload(line), str(path), reason))
            i += 1
            continue
        if not odd[i]:
            records.append(line)
            first_lines.append(i + 1)
            i += 1
            continue
        j = i + 1  # a quoted field spanning lines ends on the next line with an odd quote count
        while j < len(lines) and not odd[j] and j - i < 1000:
            j += 1
        joined = "\n".join(lines[i : j + 1]) if j < len(lines) and odd[j] else None
        fields = _fields(joined) if joined and len(joined) <= MAX_LINE_CHARS else None
        if fields is not None and len(fields) == len(header):
            records.append(joined)
            first_lines.append(i + 1)
            i = j + 1
        else:
            reason = "CSV line with an unbalanced quote"
            broken.append(BrokenLine(i + 1, _payload(line), str(path), reason))
            i += 1
    return records, first_lines


def _read_csv(path: Path, broken: list[BrokenLine], encoding: str = "utf-8") -> pd.DataFrame:
    """A CSV file read record by record: broken lines are set aside with their line number."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    try:
        data = path.read_bytes()
    except OSError as err:
        raise SchemaError(f"cannot read {path}: {err}") from err
    mine: list[BrokenLine] = []  # this file's broken lines, reported in line order
    records, first_lines = _records(_decode(data, path, encoding), path, mine)
    multiline = any("\n" in record or "\r" in record for record in records)
    as_read = not mine and first_lines[-1] == len(records)  # every line is a record
    if as_read and _codec(encoding) == "utf-8" and not data.startswith(codecs.BOM_UTF8):
        body = data  # the usual file: no copy
    else:
        body = ("\n".join(records) + "\n").encode("utf-8")

    def keep(row) -> str:  # row.number counts records, the header being 1
        line = first_lines[row.number - 1] if row.number else None
        mine.append(BrokenLine(line, _payload(row.text), str(path)))
        return "skip"

    try:
        table = pacsv.read_csv(
            io.BytesIO(body),
            read_options=pacsv.ReadOptions(use_threads=False, block_size=8 * MAX_LINE_CHARS),
            parse_options=pacsv.ParseOptions(
                invalid_row_handler=keep, newlines_in_values=multiline
            ),
            convert_options=pacsv.ConvertOptions(strings_can_be_null=True),
        )
    except (pa.ArrowInvalid, OSError) as err:
        raise SchemaError(f"cannot read {path}: {err}") from err
    broken.extend(sorted(mine, key=lambda b: b.line or 0))
    return table.to_pandas()


def _read_file(path: Path, broken: list[BrokenLine], encoding: str = "utf-8") -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path, broken, encoding)
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


def read_files(source: Path, encoding: str = "utf-8", date_format: str | None = None) -> RawBatch:
    """A file, or every .parquet/.csv file of a folder (in name order), as one batch.

    ``encoding`` is that of CSV files; ``date_format`` (strftime codes) that of their
    timestamps, which are otherwise ISO 8601. Both are part of the batch's identity."""
    if source.is_dir():
        paths = sorted(p for p in source.iterdir() if p.suffix.lower() in (".parquet", ".csv"))
        if not paths:
            raise SchemaError(f"{source} holds no .parquet or .csv file")
    elif source.exists():
        paths = [source]
    else:
        raise SchemaError(f"{source} does not exist")
    codec = _codec(encoding)
    broken: list[BrokenLine] = []
    frames = [_read_file(path, broken, encoding) for path in paths]
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    frame = frame.reset_index(drop=True)
    frame.attrs[TEXT_ATTR] = any(p.suffix.lower() == ".csv" for p in paths)
    frame.attrs[DATE_FORMAT_ATTR] = date_format
    fingerprint = _hash_files(paths)
    if codec != "utf-8" or date_format:  # the same bytes read otherwise: another batch
        options = f"{fingerprint}|{codec}|{date_format}".encode()
        fingerprint = hashlib.sha256(options).hexdigest()[:24]
    return RawBatch(frame, str(source), fingerprint, broken)


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
    # A database hands over strings where its column is text (SQLite's usual case): they are
    # parsed like CSV cells, strictly.
    frame.attrs[TEXT_ATTR] = True
    what = f"table {table}" if table else f"query {query}"
    safe_url = engine.url.render_as_string(hide_password=True)
    return RawBatch(frame.reset_index(drop=True), f"{safe_url} {what}", frame_fingerprint(frame))


def read_source(
    source: str,
    sql_table: str | None = None,
    query: str | None = None,
    encoding: str = "utf-8",
    date_format: str | None = None,
) -> RawBatch:
    """Any supported source: a path, or a SQLAlchemy URL (anything with '://')."""
    if "://" in source:
        if _codec(encoding) != "utf-8":
            raise SchemaError("--encoding goes with CSV files, not a database")
        batch = read_sql(source, sql_table, query)
        batch.frame.attrs[DATE_FORMAT_ATTR] = date_format
        return batch
    if sql_table or query:
        raise SchemaError("--sql-table and --query go with a database URL")
    return read_files(Path(source), encoding, date_format)
