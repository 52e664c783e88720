"""`creditflow monitor` over a million logged predictions: target <= 60 s on this machine.

A trained, promoted home (the serving benchmark's, ``benchmarks.serving.demo_home``) gets
``rows`` synthetic logged predictions over the 7 days before ``as_of``: its champion's
development sample resampled, scored by the champion once (so scores, decisions and features
agree), written straight through the database driver. Then one ``monitor(...)`` run is timed,
end to end: reading, drift, quality, profiles, accuracy, skew, latency, storing the results and
the report. The rows carry no encrypted entity keys, so the skew check finds none it can
rebuild (its point-in-time join of ``SKEW_SAMPLE`` rows is not in this figure).

Run in a process of its own with the home's environment (BentoML fixes its model store the
first time it is used in a process): ``python -m benchmarks.monitor HOME ROWS`` prints the row
as JSON. :func:`run` does all of it for `make bench`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

TARGET_S = 60.0
INSERT_BATCH = 50_000


def insert_logged(engine, model_tag: str, features: list[dict], probability: np.ndarray,
                  decision: np.ndarray, decided_by: np.ndarray, times: list[datetime],
                  pick: np.ndarray) -> int:  # fmt: skip
    """Write ``len(pick)`` logged predictions: row ``i`` is answer ``pick[i]`` (its features,
    probability, decision) at ``times[i]``. SQLite goes through the driver in large batches
    (SQLAlchemy's per-row processing would take longer than the run measured)."""
    from creditflow.contract import APPLICATION_COLUMNS
    from creditflow.model.stages import CHAMPION
    from creditflow.tables import predictions

    texts = [json.dumps(f) for f in features]
    fields = [c.name for c in APPLICATION_COLUMNS]
    applications = [json.dumps({k: f.get(k) for k in fields}) for f in features]
    columns = [c.name for c in predictions.columns]
    n = len(pick)

    def row(i: int) -> tuple:
        j = int(pick[i])
        values = {
            "prediction_id": f"{i:032x}",
            "at": times[i],
            "model_tag": model_tag,
            "entity_hash": f"{j:064x}",
            "features": texts[j],
            "default_probability": float(probability[j]),
            "decision": str(decision[j]),
            "decided_by": str(decided_by[j]),
            "rules_fired": "[]",
            "application": applications[j],
            "entity_keys": None,
            "endpoint": "predict",
            "rules_version": "bench",
            "code_version": "bench",
            "request_id": f"{i:032x}",  # a champion's answer is its own request
            "role": CHAMPION,
            "explored": 0,
        }
        return tuple(values[c] for c in columns)

    if engine.dialect.name != "sqlite":
        raise ValueError("the monitor benchmark writes SQLite (the embedded default)")
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        marks = ", ".join("?" * len(columns))
        statement = f"insert into predictions ({', '.join(columns)}) values ({marks})"
        for first in range(0, n, INSERT_BATCH):
            batch = []
            for i in range(first, min(first + INSERT_BATCH, n)):
                values = row(i)
                at = values[1].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
                batch.append((values[0], at, *values[2:]))
            cursor.executemany(statement, batch)
        raw.commit()
    finally:
        raw.close()
    return n


def bench_in_home(rows: int) -> dict:
    """Insert ``rows`` logged predictions into the current home, then time one monitor run."""
    import pandas as pd

    from creditflow.config import get_settings
    from creditflow.db import get_engine
    from creditflow.model import registry
    from creditflow.model.registry import REFERENCE_FILE
    from creditflow.model.stages import champion_tag
    from creditflow.monitoring.run import monitor
    from creditflow.postprocessing.predict import Predictor

    settings = get_settings()
    engine = get_engine(settings)
    tag = champion_tag(settings)
    if tag is None:
        raise RuntimeError(f"{settings.home}: no champion to monitor")
    import bentoml

    model = registry.load(tag, nthread=None)
    reference = pd.read_parquet(Path(bentoml.models.get(tag).path) / REFERENCE_FILE)
    answers = Predictor(model).predict({n: reference[n].to_numpy() for n in model.contract.names})
    features = reference.astype(object).where(reference.notna(), None).to_dict("records")
    as_of = datetime.now(UTC).replace(microsecond=0)
    rng = np.random.default_rng(0)
    offsets = np.sort(rng.uniform(0, 7 * 86_400, rows))
    times = [as_of - timedelta(seconds=float(s)) for s in offsets[::-1]]
    pick = rng.integers(0, len(features), rows)
    start = time.perf_counter()
    insert_logged(engine, tag, features, answers.probability, answers.decision,
                  answers.decided_by, times, pick)  # fmt: skip
    inserted_s = time.perf_counter() - start
    start = time.perf_counter()
    summary = monitor(settings, as_of=as_of)
    seconds = time.perf_counter() - start
    return {
        "name": f"creditflow monitor over {rows:,} logged predictions",
        "value": round(rows / seconds),
        "unit": "rows/s",
        "target": f"<= {TARGET_S:g} s ({rows * TARGET_S / 1_000_000:g} s here)",
        "ratio": round(TARGET_S * rows / 1_000_000 / seconds, 2),
        "seconds": round(seconds, 1),
        "insert_s": round(inserted_s, 1),
        "status": summary["status"],
        "results": summary["counts"]["results"],
    }


def run(rows: int = 1_000_000, home: Path | None = None) -> dict:
    """The benchmark row for `make bench`: a trained home (``home``, else a fresh one in a
    scratch folder), then :func:`bench_in_home` in a subprocess with that home's environment."""
    from benchmarks.serving import REPO_ROOT, demo_home, home_environment, home_settings

    with tempfile.TemporaryDirectory() as scratch:
        folder = demo_home(home or Path(scratch) / "monitor")
        env = home_environment(home_settings(folder))
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.monitor", str(folder), str(rows)],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"monitor benchmark failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    import os
    import warnings

    os.environ.setdefault("CREDITFLOW_HOME", sys.argv[1])
    warnings.filterwarnings("ignore")
    print(json.dumps(bench_in_home(int(sys.argv[2]))))
