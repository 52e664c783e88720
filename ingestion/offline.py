"""The offline store's sources: one folder per table, one parquet file per ingested batch.

A batch is written to a staging subfolder first and renamed into the table folder only once
its log entry is committed, so Feast (which reads ``<table>/*.parquet``) never sees part of a
batch. :func:`recover` finishes or discards what a crash left in staging.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from creditflow.config import Settings
from creditflow.contract import APPLICATIONS, LOANS, TableContract

STAGING = ".staging"


def batch_files(settings: Settings, table: str) -> list[Path]:
    folder = settings.table_dir(table)
    return sorted(folder.glob("*.parquet")) if folder.exists() else []


def read_table(
    settings: Settings, table: TableContract, columns: list[str] | None = None
) -> pd.DataFrame:
    """Every committed row of a table (an empty frame with the contract's columns if none)."""
    files = batch_files(settings, table.name)
    wanted = columns or table.names
    if not files:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in wanted})
    # One Arrow table, then one conversion: a table gains a file per batch, and a pandas frame
    # per file plus their concat costs more than the read.
    tables = [pq.read_table(path, columns=wanted) for path in files]
    return pa.concat_tables(tables, promote_options="default").to_pandas()


def newest_applications(settings: Settings, count: int) -> list[dict]:
    """The newest ``count`` distinct applicants' loan applications, as /predict bodies (the
    APPLICATIONS contract's fields; missing values None, as JSON has no NaN). Empty if no
    loans were ingested."""
    loans = read_table(settings, LOANS).sort_values([LOANS.timestamp, *LOANS.key])
    newest = loans.drop_duplicates(list(APPLICATIONS.key), keep="last").tail(count)
    rows = newest[APPLICATIONS.names].astype(object)
    return rows.where(rows.notna(), None).to_dict("records")


def stage(settings: Settings, table: str, batch_id: str, frame: pd.DataFrame) -> Path:
    staging = settings.table_dir(table) / STAGING
    staging.mkdir(parents=True, exist_ok=True)
    path = staging / f"{batch_id}.parquet"
    frame.to_parquet(path, index=False)
    return path


def publish(settings: Settings, table: str, batch_id: str) -> Path:
    """Make a staged batch visible to Feast (an atomic rename)."""
    folder = settings.table_dir(table)
    target = folder / f"{batch_id}.parquet"
    os.replace(folder / STAGING / f"{batch_id}.parquet", target)
    return target


def recover(settings: Settings, table: str, committed: set[str]) -> None:
    """Publish staged batches whose log entry was committed; drop the others."""
    staging = settings.table_dir(table) / STAGING
    if not staging.exists():
        return
    for path in staging.glob("*.parquet"):
        if path.stem in committed:
            publish(settings, table, path.stem)
        else:
            path.unlink()
