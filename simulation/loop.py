"""The lifecycle loop: each simulated day, through the code the user's commands run.

Setup (day 0): a fresh home, the demo world's year before day 0 generated, ingested
(`creditflow ingest`), registered and materialized (`feast apply`, `feast
materialize`), a first model trained and promoted (`creditflow train`, `promote`).
Then every day, under ``clock.frozen`` at the day's end:

1. the day's applicants' credit bureau records are ingested and pushed online (`creditflow
   ingest`, `push`), so they are in the feature store before their applicants are scored;
2. the applications (the day's requests, answered together at the day's end, so that what
   the log says the online store held is what it held), as an upstream system reports them,
   are checked against the contract (the API's verdict: a rejected one is counted, by field,
   in the service statistics) and the rest scored by the service's own in-process scorer
   (``bento.scoring.Scorer``: features online, model, post-processing, exploration) and
   logged in the service's row shape;
3. outcomes of loans approved (or explored) ``label_delay`` days earlier arrive as a
   `creditflow feedback import` (the defaults within the performance window, which simulated
   time compresses to ``label_delay`` days: ``performance_window_days`` is set to it);
4. `creditflow monitor` runs on the last ``monitor_window`` (its results stored as every run's
   are, without a report of its own: the simulation writes one at the end); an alert, or the
   schedule, runs `creditflow retrain`; a promotion reaches the scorer as it reaches a running
   service (the scorer rebuilt from the new champion).

Monitoring, feedback and retraining are called as the commands call them: nothing tells them
they run in a simulation.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from creditflow import clock
from creditflow.config import FEATURE_REPO, Settings, environment, export_environment, get_settings
from creditflow.contract import APPLICATIONS, CREDIT_HISTORY, violations
from creditflow.demo_world.scenarios import Drift

ENDPOINT = "predict"  # the applications arrive as /predict requests would
HISTORY_LOANS = 20_000  # the first model's year of history
DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)
PREDICTION_IDS = uuid.UUID("5b0c3f8e-2d1a-4c57-9e61-0f2b8a7d4c13")  # namespace of the answers' ids


@dataclass
class Options:
    days: int = 120
    per_day: int = 1000
    drifts: list[Drift] = field(default_factory=list)
    label_delay: int = 30
    seed: int = 0
    retrain_every: int = 30  # the schedule, in days
    # An alert retrains at most this often (days; compressed time: a model can follow a concept
    # drift within the days of outcomes between its first alert and a 120-day run's end).
    retrain_cooldown: int = 3
    monitor_window: int = 7  # days
    exploration_share: float = 0.05
    history_loans: int = HISTORY_LOANS
    train_trials: int = 4
    train_timeout_s: float = 30.0
    train_variants: bool = False  # the simulation's declared budget: the contract's service only
    retrain_budget: Any = None  # retrain(budget=...); None: a TrainingBudget of the above
    # Training's recency (settings.training_window_days, training_half_life_days), in simulated
    # days: time compressed as the performance window is, so that a model can follow a concept
    # drift within the few days of outcomes a run sees after it.
    training_window_days: float | None = 7.0
    training_half_life_days: float | None = 2.0
    start: datetime = DEFAULT_START


def prepare_home(home: Path, options: Options) -> Settings:
    """Point this process at a fresh home (before BentoML or Feast are first used)."""
    if home.exists() and any(home.iterdir()):
        raise ValueError(f"--home {home}: must be a new or empty folder (a fresh home)")
    home.mkdir(parents=True, exist_ok=True)
    os.environ["CREDITFLOW_HOME"] = str(home)
    os.environ["CREDITFLOW_PROFILE"] = "embedded"
    os.environ.pop("CREDITFLOW_DATABASE_URL", None)
    # Simulated time compresses the performance window to the label delay (declared here), and
    # training's recency with it.
    os.environ["CREDITFLOW_PERFORMANCE_WINDOW_DAYS"] = str(options.label_delay)
    for name, value in (
        ("CREDITFLOW_TRAINING_WINDOW_DAYS", options.training_window_days),
        ("CREDITFLOW_TRAINING_HALF_LIFE_DAYS", options.training_half_life_days),
    ):
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = str(value)
    os.environ["CREDITFLOW_EXPLORATION_SHARE"] = str(options.exploration_share)
    settings = get_settings()
    export_environment(settings)
    return settings


def _feast(settings: Settings, *args: str) -> None:
    """The real `feast` CLI in the feature repo, as the README runs it."""
    feast = Path(sys.executable).parent / "feast"
    env = {**os.environ, **environment(settings)}
    done = subprocess.run(
        [str(feast), *args], cwd=FEATURE_REPO, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"feast {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")


def _batch(frame: pd.DataFrame, name: str):
    """A frame as `creditflow ingest` reads a file of it."""
    from creditflow.ingestion.readers import read_files

    folder = Path(tempfile.mkdtemp(prefix="creditflow-sim-"))
    path = folder / f"{name}.parquet"
    frame.to_parquet(path, index=False)
    try:
        return read_files(path)
    finally:
        path.unlink()
        folder.rmdir()


def setup(settings: Settings, world, options: Options) -> dict:
    """Day 0: the history ingested, registered, materialized; a first model trained, promoted."""
    from creditflow.ingestion.ingest import ingest
    from creditflow.store.features import get_store
    from creditflow.training.pipeline import train
    from creditflow.training.promotion import promote

    with clock.frozen(options.start):
        history = world.history(options.history_loans)
        ingested = {t: ingest(t, _batch(f, t), settings) for t, f in history.items()}
        _feast(settings, "apply")
        # `feast materialize START END` over the history (materialize-incremental would start
        # from the system clock's now minus each view's ttl, not the simulated one).
        # Feast prints its progress on stdout: --json keeps stdout to the summary's one line.
        with contextlib.redirect_stdout(sys.stderr):
            get_store(settings).materialize(options.start - timedelta(days=3 * 365), options.start)
        summary = train(
            settings=settings,
            trials=options.train_trials,
            timeout_s=options.train_timeout_s,
            variants=options.train_variants,
            quiet=True,
        )
        promote(summary["model_tag"], settings=settings)
    return {
        "model_tag": summary["model_tag"],
        "test_auc": summary.get("test_auc"),
        "ingested": {t: s["accepted"] for t, s in ingested.items()},
    }


class Scoring:
    """The service's scoring path in process, following the champion as a worker does."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tag: str | None = None
        self.scorer = None
        self.follow()

    def follow(self) -> bool:
        """Rebuild the scorer when the registry's champion changed (the hot swap); whether it
        did."""
        from creditflow.bento.scoring import Scorer
        from creditflow.model import registry
        from creditflow.model.stages import champion_tag
        from creditflow.store.features import get_store

        tag = champion_tag(self.settings)
        if tag == self.tag:
            return False
        self.scorer = Scorer(registry.load(tag), get_store(self.settings))
        self.tag = tag
        return True


def prediction_ids(seed: int, loan_ids) -> list[str]:
    """The answers' ids, from the seed and the loans (unique across days): the exploration
    policy draws from the id, so that the same seed gives the same run (new random ids would
    explore other applications on every run)."""
    return [uuid.uuid5(PREDICTION_IDS, f"{seed}:{loan_id}").hex for loan_id in loan_ids]


def _score_rows(
    settings: Settings, scores, applications: pd.DataFrame, code_version: str, rules_version: str
) -> list[dict]:
    from creditflow.applicant_keys import home_entity_hasher, key_cipher
    from creditflow.feedback.logged_predictions import prediction_row

    rows = []
    records = applications[APPLICATIONS.names].to_dict("records")
    at = clock.now()  # answered when scored: the online store as it is now (skew checks)
    hasher, cipher = home_entity_hasher(settings), key_cipher(settings)  # once, not per row
    for score, application in zip(scores, records, strict=True):
        row = prediction_row(
            settings,
            application,
            at,
            decision=score.decision,
            default_probability=score.default_probability,
            model_tag=score.model_tag,
            endpoint=ENDPOINT,
            prediction_id=score.prediction_id,
            features=score.features,
            hasher=hasher,
            cipher=cipher,
        )
        explored = bool(getattr(score, "explored", False))
        row.update(
            decided_by=score.decided_by,
            rules_fired=list(score.rules_fired),
            rules_version=rules_version,
            code_version=code_version,
            request_id=score.prediction_id,
            role="champion",
            explored=explored,
        )
        rows.append(row)
    return rows


def _import_outcomes(settings: Settings, due: pd.DataFrame) -> dict:
    """`creditflow feedback import` of a file of the due outcomes."""
    from creditflow.feedback.importer import import_labels

    folder = Path(tempfile.mkdtemp(prefix="creditflow-sim-"))
    path = folder / "labels.csv"
    due[["prediction_id", "outcome", "outcome_at"]].to_csv(path, index=False)
    try:
        return import_labels(path, settings, source_name="simulation")
    finally:
        path.unlink()
        folder.rmdir()


def _retrain(settings: Settings, as_of: datetime, options: Options) -> dict:
    """`creditflow retrain --as-of`, with the simulation's declared (smaller) training budget."""
    try:
        from creditflow.retraining.job import TrainingBudget, retrain
    except ImportError as err:
        return {"outcome": "unavailable", "error": str(err)}
    budget = options.retrain_budget or TrainingBudget(
        trials=options.train_trials,
        timeout_s=options.train_timeout_s,
        variants=options.train_variants,
    )
    try:
        result = retrain(settings=settings, as_of=as_of, build=False, budget=budget)
    except Exception as err:  # the job failed: the loop records it and goes on
        return {"outcome": "failed", "error": f"{type(err).__name__}: {err}"}
    # The event times the challenger learned from (the report checks them against incidents).
    recency = (result.get("rows") or {}).get("recency") or {}
    if "newest" in recency:
        result["training_window"] = {"start": recency["start"], "newest": recency["newest"]}
    return result


def _auc(y: np.ndarray, p: np.ndarray) -> float | None:
    from creditflow.model.evaluate import metrics

    return metrics(y, p)["roc_auc"] if 0 < y.sum() < len(y) else None


def run(
    settings: Settings, options: Options, progress: Callable[[int, dict], None] | None = None
) -> dict:
    """The loop on a prepared home (see :func:`prepare_home`); the daily records and events."""
    from creditflow.bento.service_stats import ServiceStats
    from creditflow.db import get_engine
    from creditflow.feedback.logged_predictions import write_predictions
    from creditflow.ingestion.ingest import ingest
    from creditflow.monitoring.run import monitor
    from creditflow.postprocessing.rules import RULES_VERSION
    from creditflow.simulation.world import SimulatedWorld
    from creditflow.versions import code_version

    timings: dict[str, float] = {}

    def timed(name: str, started: float) -> None:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - started

    t0 = time.perf_counter()
    world = SimulatedWorld(options.start, options.per_day, options.seed, options.drifts)
    first = setup(settings, world, options)
    timed("setup", t0)
    engine = get_engine(settings)
    stats = ServiceStats(engine, interval_s=86_400.0, worker="simulation")
    scoring = Scoring(settings)
    version = code_version()
    log: list[pd.DataFrame] = []  # what was scored: prediction id, truth, decision
    days: list[dict] = []
    retrains: list[dict] = []
    last_retrain_day = 0
    window = timedelta(days=options.monitor_window)
    for number in range(1, options.days + 1):
        day = world.day(number)
        record: dict[str, Any] = {"day": number, "date": day.end.date().isoformat()}
        with clock.frozen(day.end):
            t = time.perf_counter()
            ingest(
                CREDIT_HISTORY.name,
                _batch(day.credit_history, CREDIT_HISTORY.name),
                settings,
                push_online=True,
            )
            timed("ingest", t)

            t = time.perf_counter()
            apps = day.applications
            broken = violations(apps[APPLICATIONS.names].reset_index(drop=True), APPLICATIONS)
            rejected = broken.ne("").to_numpy()
            for reasons in broken[rejected]:
                stats.request(ENDPOINT, 400, 0.0)
                for rule in str(reasons).split("; "):
                    stats.rejection(ENDPOINT, rule.split(":")[0].split(".")[0])
            accepted = apps[~rejected].reset_index(drop=True)
            scores = scoring.scorer.score(
                accepted[APPLICATIONS.names].to_dict("records"),
                prediction_ids=prediction_ids(options.seed, accepted["loan_id"]),
            )
            for _ in scores:
                stats.request(ENDPOINT, 200, 0.0)
            rows = _score_rows(settings, scores, accepted, version, RULES_VERSION)
            write_predictions(engine, rows)
            stats.flush(day.end)
            timed("score_and_log", t)

            frame = pd.DataFrame(
                {
                    "prediction_id": [s.prediction_id for s in scores],
                    "probability": [s.default_probability for s in scores],
                    "decision": [s.decision for s in scores],
                    "explored": [bool(getattr(s, "explored", False)) for s in scores],
                    "model_tag": [s.model_tag for s in scores],
                    "outcome_at": accepted["event_timestamp"] + timedelta(days=options.label_delay),
                    "day": number,
                }
            )
            frame["outcome"] = accepted.merge(day.truth, on="loan_id", how="left")[
                "loan_status"
            ].to_numpy()
            log.append(frame)
            y, p = frame["outcome"].to_numpy(), frame["probability"].to_numpy()
            approved = frame["decision"].eq("approve").to_numpy()
            record.update(
                applications=len(apps),
                rejected=int(rejected.sum()),
                model_tag=scoring.tag,
                approval_rate=float(approved.mean()) if len(frame) else None,
                explored=int(frame["explored"].sum()),
                default_rate_all=float(y.mean()) if len(y) else None,
                default_rate_approved=float(y[approved].mean()) if approved.any() else None,
                true_auc=_auc(y, p),
                true_calibration=float(p.mean() - y.mean()) if len(y) else None,
            )

            t = time.perf_counter()
            due_day = number - options.label_delay
            labeled = 0
            if due_day >= 1:
                due = log[due_day - 1]
                due = due[due["decision"].eq("approve") | due["explored"]]
                if len(due):
                    summary = _import_outcomes(settings, due)
                    labeled = summary["stored"]
            record["labels_imported"] = labeled
            timed("feedback_import", t)

            t = time.perf_counter()
            try:  # a failed run is recorded by the monitor; the schedule goes on next day
                watch = monitor(settings, as_of=day.end, window=window, report=False)
                record["monitor"] = _monitor_digest(watch)
            except RuntimeError as err:
                record["monitor"] = {
                    "status": "failed",
                    "error": str(err)[-500:],
                    "alerts": [],
                    "figures": {},
                }
            timed("monitor", t)

            alert = record["monitor"]["status"] == "alert"
            scheduled = number - last_retrain_day >= options.retrain_every
            cooled = number - last_retrain_day >= options.retrain_cooldown
            if scheduled or (alert and cooled):
                t = time.perf_counter()
                result = _retrain(settings, day.end, options)
                timed("retrain", t)
                last_retrain_day = number
                retrains.append(
                    {
                        "day": number,
                        "trigger": "alert" if alert else "schedule",
                        **_retrain_digest(result),
                    }
                )
            swapped = scoring.follow()
            record["swapped_to"] = scoring.tag if swapped else None
        days.append(record)
        if progress is not None:
            progress(number, record)
    timings["total"] = time.perf_counter() - t0
    scored = pd.concat(log, ignore_index=True) if log else pd.DataFrame()
    return {
        "first_model": first,
        "days": days,
        "retrains": retrains,
        "timings": timings,
        "scored": scored,
    }


def _monitor_digest(summary: dict) -> dict:
    """What the report needs of a monitor run: status, alerts and the figures by section."""
    from creditflow.db import get_engine
    from creditflow.monitoring.run import stored_run

    digest = {
        "status": summary["status"],
        "run_id": summary["run_id"],
        "alerts": [
            {k: a.get(k) for k in ("section", "metric", "subject", "value", "features")}
            for a in summary["alerts"]
        ],
    }
    _, rows = stored_run(get_engine(get_settings()), summary["run_id"])
    figures: dict[str, Any] = {"psi": {}}
    for row in rows:
        key = (row["section"], row["metric"], row["subject"])
        if row["section"] == "drift" and row["metric"] == "psi":
            figures["psi"][row["subject"]] = row["value"]
        elif key == ("accuracy", "roc_auc", "all"):
            figures["realized_auc"] = row["value"]
        elif key == ("estimate", "roc_auc", "all"):
            figures["estimated_auc"] = row["value"]
        elif key == ("accuracy", "label_coverage_approve", "all"):
            figures["label_coverage"] = row["value"]
        elif key == ("accuracy", "ece", "all"):
            figures["realized_ece"] = row["value"]
        elif key == ("estimate", "default_rate", "all"):
            figures["estimated_default_rate"] = row["value"]
    digest["figures"] = figures
    return digest


def _retrain_digest(result: dict) -> dict:
    keep = ("outcome", "challenger_tag", "decision", "reasons", "error", "champion_tag",
            "training_window")  # fmt: skip
    return {k: result.get(k) for k in keep if k in result}
