"""`creditflow ingest`: every row ends in the offline store or in quarantine with its reasons.

read -> conform types -> contract rules (pandera) -> uniqueness -> outlier warnings ->
stage accepted rows -> commit log + quarantine (one transaction) -> publish to Feast.
Idempotent: a batch is identified by its content, and a batch already logged is not
ingested again (its original summary is returned).
"""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import pandas as pd

from creditflow import clock
from creditflow.config import Settings, get_settings
from creditflow.contract import (
    CREATED_TIMESTAMP,
    OUTLIER_Z,
    TABLES,
    TableContract,
    TimeWindow,
    rule_failures,
)
from creditflow.db import get_engine
from creditflow.ingestion import ledger, offline
from creditflow.ingestion.conform import conform, final_types
from creditflow.ingestion.readers import RawBatch, SchemaError
from creditflow.store.features import get_store


def _time_window(settings: Settings, now: datetime | None) -> TimeWindow:
    return TimeWindow(
        now=pd.Timestamp(now or clock.now()),
        max_age=pd.Timedelta(days=settings.max_event_age_days),
        tolerance=pd.Timedelta(minutes=settings.future_tolerance_minutes),
    )


def check(
    raw: pd.DataFrame,
    table: TableContract,
    window: TimeWindow | None = None,
    *,
    text: bool | None = None,
    date_format: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows in contract types, and a boolean frame of the contract rules each row breaks
    (one column per broken rule). Raises SchemaError when the batch as a whole is wrong.
    ``text``/``date_format``: see conform()."""
    frame, type_failures = conform(raw, table, text=text, date_format=date_format)
    failures = pd.concat([type_failures, rule_failures(frame, table, window)], axis=1)
    for rule in type_failures.columns:  # "x is not a number" already says why x is empty
        null_rule = rule.split(" ", 1)[0] + " is null"
        if null_rule in failures.columns:
            failures[null_rule] &= ~type_failures[rule]
    return frame, failures.loc[:, failures.any(axis=0)] if failures.shape[1] else failures


def _uniqueness(
    frame: pd.DataFrame, valid: pd.Series, existing: pd.DataFrame, table: TableContract
) -> dict[str, pd.Series]:
    """Rows that repeat a unique key, within the batch or against what is already stored.

    Only otherwise-valid rows compete for a key, so a broken row never shadows a good one.
    """
    key = list(table.unique)
    label = "+".join(key)
    in_batch = pd.Series(False, index=frame.index)
    in_batch[valid] = frame.loc[valid, key].duplicated(keep="first").to_numpy()
    stored = pd.Series(False, index=frame.index)
    ts = table.timestamp
    if ts in key and len(existing):  # only stored rows at one of the batch's times can repeat
        times = pd.to_datetime(frame.loc[valid, ts], utc=True).astype(existing[ts].dtype)
        existing = existing[existing[ts].isin(times)]
    if len(existing):
        stored[valid] = pd.MultiIndex.from_frame(frame.loc[valid, key]).isin(
            pd.MultiIndex.from_frame(existing[key])
        )
    return {f"duplicate {label} in batch": in_batch, f"{label} already ingested": stored}


def _outliers(accepted: pd.DataFrame, reference: pd.DataFrame, table: TableContract) -> dict:
    """Counts of rare values per watched column: robust z-score of log(value) > OUTLIER_Z,
    against the data accepted so far (or this batch, for the first one).

    Watched columns are amounts: heavy-tailed, so judged on a log scale, and often zero (no
    mortgage), which is common rather than rare, so zeros are left out of the judgement.
    """
    counts = {}

    def positive_logs(values: pd.Series) -> np.ndarray:
        array = values.astype("float64").to_numpy()
        return np.log(array[array > 0])

    for name in table.outlier_columns:
        ref = positive_logs(reference[name])
        values = positive_logs(accepted[name])
        if not len(ref) or not len(values):
            continue
        median = np.median(ref)
        mad = np.median(np.abs(ref - median))
        if mad == 0:
            continue
        flagged = int((0.6745 * np.abs(values - median) / mad > OUTLIER_Z).sum())
        if flagged:
            counts[name] = flagged
    return {"outliers": counts} if counts else {}


def _quarantine_rows(
    batch: RawBatch, failures: pd.DataFrame, bad: pd.Series, n_columns: int
) -> list[tuple[int | None, str, str]]:
    rows: list[tuple[int | None, str, str]] = []
    for broken in batch.broken_lines:
        why = broken.reason or f"expected {n_columns} fields"
        reason = f"unparseable CSV line {broken.line} of {broken.file} ({why})"
        rows.append((broken.line, reason, broken.text))
    if bad.any():
        flags = failures[bad]
        names = flags.columns.to_numpy()
        reasons = ["; ".join(names[row]) for row in flags.to_numpy(dtype=bool)]
        payloads = batch.frame.loc[bad].to_json(
            orient="records", lines=True, date_format="iso", default_handler=str
        )
        for index, reason, payload in zip(flags.index, reasons, payloads.splitlines(), strict=True):
            rows.append((int(index), reason, payload))
    return rows


def newest_per_key(rows: pd.DataFrame, table: TableContract) -> pd.DataFrame:
    """Each entity's newest row (latest event time, then write time, then the later in the
    batch), as materialization picks it: all an online store keeps of an entity. Pushing only
    these leaves the online store as pushing the batch in time order would, without writing
    every older row first, and an older row later in the batch cannot overwrite a newer one."""
    order = [c for c in (table.timestamp, CREATED_TIMESTAMP) if c in rows.columns]
    if not table.key or not order:
        return rows
    ordered = rows.sort_values(order, kind="stable")
    return ordered.drop_duplicates(list(table.key), keep="last")


def _feature_views_of(store, table: str) -> list:
    return [fv for fv in store.list_feature_views() if fv.batch_source.name == table]


def _push_source_of(store, table: str) -> str:
    from feast.data_source import PushSource

    for fv in _feature_views_of(store, table):
        if isinstance(fv.stream_source, PushSource):
            return fv.stream_source.name
    raise SchemaError(f"no feature view reads {table!r} through a push source: cannot push it")


def ingest(
    table_name: str,
    batch: RawBatch,
    settings: Settings | None = None,
    now: datetime | None = None,
    materialize: bool = False,
    push_online: bool = False,
) -> dict:
    """Ingest one batch; returns the summary that is also written to the ingestion log."""
    if table_name not in TABLES:
        raise SchemaError(f"unknown table {table_name!r}; one of {sorted(TABLES)}")
    table = TABLES[table_name]
    settings = settings or get_settings()
    engine = get_engine(settings)
    started_at = clock.now()
    store = None
    if push_online or materialize:
        store = get_store(settings)
        push_source = _push_source_of(store, table.name) if push_online else None

    offline.recover(settings, table.name, ledger.committed_batches(engine, table.name))
    batch_id = batch.fingerprint
    previous = ledger.find(engine, table.name, batch_id)
    if previous is not None:
        return {**previous, "already_ingested": True}

    frame, failures = check(batch.frame, table, _time_window(settings, now))
    valid = ~failures.any(axis=1) if failures.shape[1] else pd.Series(True, index=frame.index)

    ts = table.timestamp
    # What is stored already, read once: keys and times (uniqueness, lateness) and the watched
    # amounts (outliers).
    existing = offline.read_table(
        settings, table, columns=sorted({*table.unique, ts, *table.outlier_columns})
    )
    if len(existing):
        existing[ts] = pd.to_datetime(existing[ts], utc=True).astype("datetime64[ns, UTC]")
    for rule, mask in _uniqueness(frame, valid, existing, table).items():
        if mask.any():
            failures[rule] = mask
    valid = ~failures.any(axis=1) if failures.shape[1] else valid

    accepted = final_types(frame[valid], table)
    newest = existing[ts].max() if len(existing) else None
    late = int((accepted[ts] < newest).sum()) if newest is not None else 0
    reference = existing if len(existing) else None
    quarantined = _quarantine_rows(batch, failures, ~valid, len(table.columns))
    reasons = {rule: int(failures[rule].sum()) for rule in failures.columns}
    for broken in batch.broken_lines:  # counted by kind: fields, quotes or length
        kind = broken.reason or "unparseable CSV line"
        reasons[kind] = reasons.get(kind, 0) + 1
    summary = {
        "table": table.name,
        "batch_id": batch_id,
        "source": batch.source,
        "rows_in": batch.rows_in,
        "accepted": len(accepted),
        "quarantined": len(quarantined),
        "late": late,
        "reasons": reasons,
        "warnings": _outliers(accepted, reference if reference is not None else accepted, table),
    }
    if summary["rows_in"] != summary["accepted"] + summary["quarantined"]:
        raise AssertionError(f"reconciliation failed, nothing written: {json.dumps(summary)}")

    if len(accepted):
        offline.stage(settings, table.name, batch_id, accepted)
    ledger.record(engine, summary, started_at, quarantined)
    if len(accepted):
        offline.publish(settings, table.name, batch_id)
        if push_online:
            from feast.data_source import PushMode

            store.push(push_source, newest_per_key(accepted, table), to=PushMode.ONLINE)
        if materialize:
            views = [fv.name for fv in _feature_views_of(store, table.name)]
            if views:
                store.materialize(
                    start_date=accepted[ts].min().to_pydatetime(),
                    end_date=clock.now(),
                    feature_views=views,
                )
            summary["materialized"] = views
    return summary
