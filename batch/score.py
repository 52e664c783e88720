"""Batch scoring (`creditflow score-batch`): a table of applications, each scored as of its own
time with point-in-time features from the offline store, through the same FeatureService, the
same model and the same post-processing (``postprocessing/predict.py``) as /predict.

Every input row is in the output, in the input's order: scored, or with the contract rules it
breaks in ``error`` (and unreadable CSV lines after them). Nothing is dropped.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from creditflow import clock
from creditflow.config import Settings, get_settings
from creditflow.contract import APPLICATIONS, Col, reasons_of
from creditflow.ingestion.ingest import check
from creditflow.ingestion.readers import read_source
from creditflow.model import registry
from creditflow.model.stages import require_champion
from creditflow.postprocessing.predict import REASON_CODES, Answers, Predictor
from creditflow.postprocessing.rules import RULE_IDS
from creditflow.store.features import get_store
from creditflow.store.service_features import ServiceFeatures

TIME = APPLICATIONS.timestamp  # the time each application is scored as of
# An input column of answer ids (optional; default: new ones). The exploration policy draws from
# it: the same id gets the same answer here as from /predict and the in-process Scorer.
PREDICTION_ID = "prediction_id"
ROW = "input_row"  # position in the input, carried through the join


def _lists(flags: np.ndarray, labels: tuple[str, ...]) -> pa.Array:
    """Per row, the labels whose flag is set, as a list<string> column (vectorised)."""
    counts = flags.sum(axis=1)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    values = np.asarray(labels, dtype=object)[np.nonzero(flags)[1]]
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=pa.string()))


def answer_columns(
    answers: Answers,
    names: tuple[str, ...],
    model_tag: str,
    prediction_ids: list[str] | None = None,
) -> dict:
    """The answers as output columns, the same fields /predict returns."""
    columns: dict = {} if prediction_ids is None else {PREDICTION_ID: prediction_ids}
    columns |= {
        "default_probability": answers.probability,
        "decision": pa.array(answers.decision, type=pa.string()),
        "decided_by": pa.array(answers.decided_by, type=pa.string()),
        "rules_fired": _lists(answers.fired, RULE_IDS),
        "missing_features": _lists(answers.missing, names),
        "model_tag": np.full(len(answers.probability), model_tag),
    }
    feature_names = np.asarray([*names, None], dtype=object)  # -1 (no reason) -> None
    for k in range(REASON_CODES):
        columns[f"reason_{k + 1}"] = feature_names[answers.reason_index[:, k]]
        columns[f"reason_{k + 1}_contribution"] = answers.reason_contribution[:, k]
    if answers.explored is not None:
        columns["explored"] = answers.explored
    return columns


def score_batch(
    source: str,
    output: Path,
    at: datetime | None = None,
    model_tag: str | None = None,
    settings: Settings | None = None,
    step: Callable[[str], None] = lambda _: None,
    encoding: str = "utf-8",
    date_format: str | None = None,
) -> dict:
    """Score every application of ``source`` and write them to ``output`` (parquet).

    Each row is scored as of its ``event_timestamp`` column when the input has one, else as
    of ``at`` (default: now). ``step`` is told what is being done (progress display).
    ``encoding`` and ``date_format`` are those of CSV input, read as `creditflow ingest` reads.
    """
    started = time.perf_counter()
    timings: dict[str, float] = {}  # seconds per stage, in the summary
    lap_started = [started]

    def lap(name: str) -> None:
        timings[name] = round(time.perf_counter() - lap_started[0], 2)
        lap_started[0] = time.perf_counter()

    settings = settings or get_settings()
    tag = model_tag or require_champion(settings)
    step(f"loading {tag}")
    model = registry.load(tag, nthread=None)  # batch work: every core
    step(f"reading {source}")
    batch = read_source(source, encoding=encoding, date_format=date_format)
    has_time = TIME in batch.frame.columns
    contract = APPLICATIONS
    if has_time:
        contract = replace(APPLICATIONS, columns=(*APPLICATIONS.columns, Col(TIME, "timestamp")))
    lap("read")
    frame, failures = check(batch.frame, contract)
    errors = reasons_of(failures) if failures.shape[1] else pd.Series("", index=frame.index)
    valid = (errors == "").to_numpy()
    entities = frame.loc[valid].reset_index(drop=True)
    if not has_time:
        entities[TIME] = pd.Timestamp(at or clock.now()).tz_convert("UTC")
    entities[ROW] = np.flatnonzero(valid)
    for col in APPLICATIONS.columns:  # contract types: ints were float64 while unchecked
        if col.kind == "int":
            entities[col.name] = entities[col.name].astype("int64")

    answers = None
    names = model.contract.names
    prediction_ids = _prediction_ids(batch.frame, valid)
    if len(entities):
        step(f"point-in-time features for {len(entities):,} applications")
        features = ServiceFeatures(get_store(settings), model.contract.service)
        lap("validate")
        joined = features.historical(entities, ROW)
        lap("features")
        step("scoring")
        ids = [prediction_ids[i] for i in entities[ROW]]  # the join keeps the entities' order
        answers = Predictor(model).predict(joined, ids)
        lap("score")

    step(f"writing {output}")
    table = _output_table(batch.frame, errors, valid, answers, names, tag, prediction_ids)
    if batch.broken_lines:
        broken = pd.DataFrame({"error": [
            f"unparseable CSV line {b.line} of {b.file} ({b.reason or 'wrong number of fields'})"
            f": {b.text}"
            for b in batch.broken_lines
        ]})  # fmt: skip
        table = pa.concat_tables([table, pa.Table.from_pandas(broken, preserve_index=False)],
                                 promote_options="default")  # fmt: skip
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    pq.write_table(table, partial)
    partial.replace(output)  # readers never see half a file
    lap("write")
    seconds = time.perf_counter() - started
    decisions = pd.Series(answers.decision if answers is not None else []).value_counts()
    return {
        "output": str(output),
        "model_tag": tag,
        "rows_in": batch.rows_in,
        "scored": int(valid.sum()),
        "invalid": int((~valid).sum()) + len(batch.broken_lines),
        "decisions": {str(k): int(v) for k, v in decisions.items()},
        "explored": int(answers.explored.sum()) if answers is not None else 0,
        "seconds": round(seconds, 2),
        "rows_per_s": round(batch.rows_in / seconds) if seconds else None,
        "timings": timings,
    }


def _prediction_ids(raw: pd.DataFrame, valid: np.ndarray) -> list[str]:
    """Each input row's answer id: its ``prediction_id`` when the input has the column, else a
    new one. A valid row's given id must be a non-empty string, unique in the batch."""
    if PREDICTION_ID not in raw.columns:
        return [uuid.uuid4().hex for _ in range(len(raw))]
    given = raw[PREDICTION_ID].to_numpy(dtype=object)
    bad = [i for i, v in enumerate(given) if valid[i] and not (isinstance(v, str) and v.strip())]
    if bad:
        raise ValueError(f"{PREDICTION_ID}: row {bad[0]} has {given[bad[0]]!r}, not an id "
                         f"(a non-empty string; {len(bad)} such rows)")  # fmt: skip
    seen: dict[str, int] = {}
    for i, v in enumerate(given):
        if valid[i] and seen.setdefault(v, i) != i:
            raise ValueError(f"{PREDICTION_ID}: {v!r} on rows {seen[v]} and {i}: ids are unique")
    return [str(v) if isinstance(v, str) else uuid.uuid4().hex for v in given]


def _output_table(
    raw: pd.DataFrame,
    errors: pd.Series,
    valid: np.ndarray,
    answers: Answers | None,
    names: tuple[str, ...],
    tag: str,
    prediction_ids: list[str] | None = None,
) -> pa.Table:
    """The input rows as read, then the answers (null for invalid rows) and ``error``.
    ``prediction_ids``: one per input row (added with the answers unless the input has them)."""
    table = pa.Table.from_pandas(raw.reset_index(drop=True), preserve_index=False)
    if answers is not None:
        ids = None  # given in the input: its column as it is; else the new ones of valid rows
        if prediction_ids is not None and PREDICTION_ID not in table.column_names:
            ids = [i for i, v in zip(prediction_ids, valid, strict=True) if v]
        scored = pa.table(answer_columns(answers, names, tag, ids))
        aligned = scored
        if not valid.all():  # row i takes answer rank(i) when valid, nulls otherwise
            aligned = scored.take(pa.array(np.cumsum(valid) - 1, mask=~valid))
        for name in aligned.column_names:
            table = table.append_column(name, aligned[name])
    error = pa.array(errors.to_numpy(dtype=object), type=pa.string(), mask=valid)
    return table.append_column("error", error)
