"""Scoring without HTTP: the in-process online path per application, and batch scoring.

Run in a process of its own with the home's environment (BentoML fixes its model store the
first time it is used in a process): ``python -m benchmarks.scoring HOME`` prints the rows as
one JSON list. ``benchmarks/run.py`` does that for `make bench`.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

IN_PROCESS_TARGET_MS = 1.5
BATCH_TARGET_ROWS_S = 50_000


def _p50_ms(fn, calls: int) -> float:
    times = []
    for i in range(calls):
        start = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def _scorers(model) -> dict:
    """One scorer per mode: the fast paths (each checked at load), and the public APIs only
    (CREDITFLOW_FAST_PATHS=0). The setting is read when a scorer is built."""
    from creditflow.bento.scoring import Scorer

    saved = os.environ.get("CREDITFLOW_FAST_PATHS")
    scorers = {}
    try:
        for mode, flag in (("fast", "1"), ("public", "0")):
            os.environ["CREDITFLOW_FAST_PATHS"] = flag
            scorers[mode] = Scorer(model)
    finally:
        os.environ.pop("CREDITFLOW_FAST_PATHS", None)
        if saved is not None:
            os.environ["CREDITFLOW_FAST_PATHS"] = saved
    return scorers


def bench_in_process(calls: int = 3000) -> list[dict]:
    """p50 of one application through lookup + vector + predict + post-process, beside the
    lookup alone and Feast's own get_online_features for the same FeatureService; with the
    fast paths and with the public APIs only (CREDITFLOW_FAST_PATHS=0)."""
    from benchmarks.serving import applications
    from creditflow.config import get_settings
    from creditflow.model import registry
    from creditflow.model.stages import champion_tag

    settings = get_settings()
    scorers = _scorers(registry.load(champion_tag(settings)))
    scorer = scorers["fast"]
    bodies = applications(settings, 2000)
    n = len(bodies)
    service = scorer.features.store.get_feature_service(scorer.model.contract.service)
    store = scorer.features.store

    def feast_lookup(i: int) -> None:
        store.get_online_features(features=service, entity_rows=[bodies[i % n]]).to_dict()

    for i in range(300):  # warm up: connections, caches, lazy imports
        for each in scorers.values():
            each.score([bodies[i % n]])
        feast_lookup(i)
    score, ours = {}, {}
    for mode, each in scorers.items():
        score[mode] = _p50_ms(lambda i, s=each: s.score([bodies[i % n]]), calls)
        ours[mode] = _p50_ms(lambda i, s=each: s.online_features([bodies[i % n]]), calls)
    feast = _p50_ms(feast_lookup, calls)
    public = "public APIs only (CREDITFLOW_FAST_PATHS=0)"
    return [
        {"name": "in-process /predict path (lookup + vector + predict + post-process) p50",
         "value": round(score["fast"], 3), "unit": "ms",
         "target": f"<= {IN_PROCESS_TARGET_MS} ms",
         "ratio": round(IN_PROCESS_TARGET_MS / score["fast"], 2)},
        {"name": "  its online lookup p50 (vs Feast get_online_features, same service)",
         "value": round(ours["fast"], 3), "unit": "ms", "target": f"Feast: {feast:.3f} ms",
         "ratio": None},
        {"name": f"in-process /predict path p50, {public}", "value": round(score["public"], 3),
         "unit": "ms", "target": f"fast: {score['fast']:.3f} ms", "ratio": None},
        {"name": f"  its online lookup p50, {public}", "value": round(ours["public"], 3),
         "unit": "ms", "target": f"fast: {ours['fast']:.3f} ms", "ratio": None},
    ]  # fmt: skip


def bench_score_batch(rows: int = 1_000_000) -> list[dict]:
    """`score-batch` of ``rows`` applications (the home's applicants, resampled), end to end:
    read, validate, point-in-time join, model, post-processing, parquet out."""

    from creditflow.batch.score import score_batch
    from creditflow.config import get_settings
    from creditflow.contract import APPLICATIONS, LOANS
    from creditflow.ingestion.offline import read_table

    settings = get_settings()
    loans = read_table(settings, LOANS, columns=APPLICATIONS.names)
    sample = loans.sample(rows, replace=True, random_state=0).reset_index(drop=True)
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "applications.parquet"
        sample.to_parquet(source, index=False)
        summary = score_batch(str(source), Path(scratch) / "scored.parquet", settings=settings)
    rate = summary["rows_per_s"]
    return [
        {"name": f"score-batch {rows:,} applications (PIT features, model, rules, reasons)",
         "value": rate, "unit": "rows/s", "target": f">= {BATCH_TARGET_ROWS_S:,} rows/s",
         "ratio": round(rate / BATCH_TARGET_ROWS_S, 2), "seconds": summary["seconds"],
         "stages_s": summary["timings"]},
    ]  # fmt: skip


def run_in_home(home: Path, batch_rows: int) -> list[dict]:
    """Both benchmarks in a subprocess with the home's environment."""
    import subprocess

    from benchmarks.serving import home_environment, home_settings

    env = home_environment(home_settings(home))
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.scoring", str(home), str(batch_rows)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"scoring benchmark failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    os.environ.setdefault("CREDITFLOW_HOME", sys.argv[1])
    import warnings

    warnings.filterwarnings("ignore")
    results = bench_in_process() + bench_score_batch(int(sys.argv[2]))
    print(json.dumps(results))
