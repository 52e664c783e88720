"""`creditflow feedback import` of a million labels: target >= 100,000 rows/s.

A fresh home gets ``n`` logged predictions (written straight to the table: only the id and the
time matter to an import) and a parquet file of one outcome for each, plus a few rows of every
kind the import must tell apart (unknown ids, bad outcomes, times before the prediction,
duplicates); the import of that file is timed, reading included.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from creditflow.config import get_settings

TARGET_ROWS_S = 100_000


def _ids(rng: np.random.Generator, n: int) -> np.ndarray:
    text = rng.bytes(16 * n).hex()
    return np.array([text[i : i + 32] for i in range(0, 32 * n, 32)], dtype=object)


def _write_predictions(engine, ids: np.ndarray, at: pd.Series) -> None:
    """The prediction log's rows, minimal, in bulk (the service writes the real ones)."""
    from creditflow.feedback.bulk import insert_rows

    rows = pd.DataFrame({
        "prediction_id": ids, "at": at, "model_tag": "bench", "entity_hash": "0" * 64,
        "features": "{}", "default_probability": 0.1, "decision": "approve",
        "decided_by": "band:approve", "rules_fired": "[]",
    })  # fmt: skip
    with engine.begin() as conn:
        insert_rows(conn, "predictions", rows)


def run(n: int = 1_000_000, folder: Path | None = None, database_url: str | None = None) -> dict:
    """Time the import of ``n`` labels (+0.2% bad or repeated rows) into a fresh home."""
    from creditflow.db import get_engine
    from creditflow.feedback.importer import import_labels

    if folder is None:  # a home of its own, removed after
        with tempfile.TemporaryDirectory(prefix="creditflow-bench-feedback-") as tmp:
            return run(n, Path(tmp), database_url)
    settings = get_settings().model_copy(
        update={"home": folder / "home", "database_url": database_url}
    )
    engine = get_engine(settings)
    rng = np.random.default_rng(0)
    ids = _ids(rng, n)
    now = pd.Timestamp.now(tz="UTC").floor("s")
    at = now - pd.to_timedelta(rng.integers(400, 1100, n), unit="D")
    at = pd.Series(at + pd.to_timedelta(rng.integers(0, 86_400, n), unit="s"))
    _write_predictions(engine, ids, at)
    labels = pd.DataFrame({
        "prediction_id": ids,
        "outcome": rng.integers(0, 2, n),
        "outcome_at": at + pd.Timedelta(days=365),
    })  # fmt: skip
    k = max(n // 2000, 1)
    bad = labels.sample(4 * k, random_state=0).reset_index(drop=True)
    bad.loc[: k - 1, "prediction_id"] = _ids(rng, k)  # unknown
    bad.loc[k : 2 * k - 1, "outcome"] = 2  # not 0/1
    bad.loc[2 * k : 3 * k - 1, "outcome_at"] -= pd.Timedelta(days=800)  # before the prediction
    labels = pd.concat([labels, bad], ignore_index=True)  # the last k: duplicates
    path = folder / "labels.parquet"
    labels.to_parquet(path, index=False)

    start = time.perf_counter()
    summary = import_labels(path, settings, engine=engine)
    seconds = time.perf_counter() - start
    rate = summary["rows_in"] / seconds
    kind = engine.dialect.name
    engine.dispose()
    return {
        "name": f"feedback import {summary['rows_in']:,} labels ({kind})",
        "value": round(rate),
        "unit": "rows/s",
        "target": f">= {TARGET_ROWS_S:,} rows/s",
        "ratio": round(rate / TARGET_ROWS_S, 2),
        "seconds": round(seconds, 2),
        "summary": {k: summary[k] for k in ("rows_in", "stored", "duplicates", "rejected")},
    }


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000,
                         database_url=sys.argv[2] if len(sys.argv) > 2 else None)))  # fmt: skip
