"""`creditflow retrain`: new data -> (refuse broken data) -> challenger -> gate -> champion.

One run, under a lock (``retraining/lock.py``), as of ``as_of`` (default now; the clock is
frozen there, so a run in the past reads only what was known then):

1. counts what arrived since the last run that trained: ingested batches (``ingestion_log``,
   finished by ``as_of``) and feedback labels (``labels``, received by ``as_of``). They were
   validated on the way in (the contract at ingestion, ``record_label`` for labels);
2. refuses, training nothing, when the latest monitoring run as of ``as_of`` whose window
   reaches past the last run raised a data-quality alert (section ``quality``, or any alert
   whose details say ``"data_quality": true``, as a drift alert on a unit change may);
3. trains a challenger through the normal pipeline (``training.pipeline.train``, as of
   ``as_of``, with the run's ``TrainingBudget``): loans ingested by then plus feedback rows,
   within the settings' training window and recency weights, as `creditflow train` does,
   except feedback rows of applications made in a window any monitoring run flagged as broken
   (``flagged_windows``: their outcomes arrive after the flag has cleared);
4. compares it with the champion on the comparison window: the labelled rows (loans and
   feedback rows) known by ``as_of`` whose event time is after the end of BOTH models'
   validation windows (``metadata["window"]["valid"]``: training and calibration data end
   there), so neither model learned from them. With fewer than ``MIN_COMPARISON_ROWS`` rows or
   a single outcome there, the champion stays and the run says why;
5. promotes through ``training.promotion`` (the gate and its stage change: one transaction).

Every run is a ``retrain_runs`` row, written as "running" first: a run killed mid-way leaves
the champion untouched (the stage changes only in step 5's transaction), and the next run marks
that row "failed" (interrupted). A model registered by a killed run stays a candidate (or, if
killed between storing and registering it, an unregistered model): never a champion.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from creditflow import clock
from creditflow.config import Settings, environment, get_settings
from creditflow.contract import LOANS, violations
from creditflow.db import get_engine
from creditflow.model import registry
from creditflow.model.stages import champion_tag, log_event
from creditflow.monitoring.thresholds import ALERT
from creditflow.retraining.lock import retrain_lock
from creditflow.tables import (
    ingestion_log,
    labels,
    monitoring_results,
    monitoring_runs,
    retrain_runs,
)
from creditflow.training.dataset import MIN_TEST_ROWS

log = logging.getLogger(__name__)

# The comparison window must hold at least this many labelled rows (and both outcomes): what a
# test window holds at least when training keeps a recent window only.
MIN_COMPARISON_ROWS = MIN_TEST_ROWS
# Outcomes of a run (retrain_runs.outcome).
RUNNING, PROMOTED, KEPT, REFUSED, FAILED = "running", "promoted", "kept", "refused", "failed"
TRAINED = (PROMOTED, KEPT)  # runs that trained a challenger: "since the last run" starts there


@dataclass(frozen=True)
class TrainingBudget:
    """What one retraining may spend: Optuna trials and seconds, and whether the declared
    feature variants are compared (each costs a training). The defaults are `creditflow
    train`'s; the lifecycle simulation declares a smaller one."""

    trials: int | None = None  # None: the pipeline's default (DEFAULT_TRIALS)
    timeout_s: float | None = None  # None: DEFAULT_TIMEOUT_S
    variants: bool = True

    def train_options(self) -> dict:
        from creditflow.training.tune import DEFAULT_TIMEOUT_S, DEFAULT_TRIALS

        trials = DEFAULT_TRIALS if self.trials is None else self.trials
        timeout = DEFAULT_TIMEOUT_S if self.timeout_s is None else self.timeout_s
        if trials < 0 or timeout <= 0:
            raise ValueError(f"budget: trials={trials} must be >= 0 and timeout_s={timeout} > 0")
        return {"trials": trials, "timeout_s": timeout, "variants": self.variants}


def _last_trained(engine: sa.Engine, as_of: datetime) -> dict | None:
    query = (
        sa.select(retrain_runs.c.id, retrain_runs.c.as_of)
        .where(retrain_runs.c.outcome.in_(TRAINED), retrain_runs.c.as_of <= as_of)
        .order_by(retrain_runs.c.as_of.desc(), retrain_runs.c.id.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    return dict(row) if row else None


def collect_inputs(engine: sa.Engine, since: datetime | None, as_of: datetime) -> dict:
    """Ingested batches (per table) and feedback labels that arrived in (since, as_of]."""
    log_time, received = ingestion_log.c.finished_at, labels.c.received_at
    batches = sa.select(
        ingestion_log.c.table_name,
        sa.func.count(),
        sa.func.sum(ingestion_log.c.rows_in),
        sa.func.sum(ingestion_log.c.accepted),
        sa.func.sum(ingestion_log.c.quarantined),
    ).where(log_time <= as_of)
    new_labels = sa.select(sa.func.count()).select_from(labels).where(received <= as_of)
    if since is not None:
        batches, new_labels = batches.where(log_time > since), new_labels.where(received > since)
    with engine.connect() as conn:
        tables = {
            name: {"batches": n, "rows_in": int(r or 0), "accepted": int(a or 0),
                   "quarantined": int(q or 0)}
            for name, n, r, a, q in conn.execute(batches.group_by(ingestion_log.c.table_name))
        }  # fmt: skip
        label_count = int(conn.scalar(new_labels) or 0)
    return {
        "since": since.isoformat() if since else None,
        "as_of": as_of.isoformat(),
        "batches": tables,
        "labels": label_count,
    }


def data_quality_alerts(engine: sa.Engine, since: datetime | None, as_of: datetime) -> dict:
    """The latest monitoring run as of ``as_of`` whose window ends after ``since`` (so covers
    new data), and its data-quality alerts (empty: nothing flagged, or no such run)."""
    query = sa.select(monitoring_runs).where(monitoring_runs.c.as_of <= as_of)
    if since is not None:
        query = query.where(monitoring_runs.c.window_end > since)
    query = query.order_by(monitoring_runs.c.as_of.desc(), monitoring_runs.c.id.desc()).limit(1)
    with engine.connect() as conn:
        run = conn.execute(query).mappings().first()
        if run is None:
            return {"monitoring_run": None, "alerts": []}
        rows = conn.execute(
            sa.select(monitoring_results).where(
                monitoring_results.c.run_id == run["id"], monitoring_results.c.status == ALERT
            )
        ).mappings()
        alerts = [
            {k: r[k] for k in ("section", "metric", "subject", "value", "threshold")}
            for r in rows
            if _broken_data(r)
        ]
    return {"monitoring_run": run["id"], "monitoring_as_of": str(run["as_of"]), "alerts": alerts}


def _broken_data(result: Mapping) -> bool:
    """A monitoring alert that says the data is broken (not that the world changed): a quality
    alert, or one whose details say ``"data_quality": true`` (a unit change, say)."""
    return result["section"] == "quality" or (result["details"] or {}).get("data_quality") is True


def flagged_windows(engine: sa.Engine, as_of: datetime) -> list[tuple[datetime, datetime]]:
    """The windows ``(start, end]`` of every monitoring run up to ``as_of`` that flagged its
    data as broken, merged: the outcomes of applications made then arrive later, and are never
    trained on either."""
    query = (
        sa.select(monitoring_runs.c.window_start, monitoring_runs.c.window_end,
                  monitoring_results.c.section, monitoring_results.c.details)
        .join(monitoring_results, monitoring_results.c.run_id == monitoring_runs.c.id)
        .where(monitoring_runs.c.as_of <= as_of, monitoring_results.c.status == ALERT)
    )  # fmt: skip
    with engine.connect() as conn:
        spans = sorted(
            (clock.as_utc(r["window_start"]), clock.as_utc(r["window_end"]))
            for r in conn.execute(query).mappings()
            if _broken_data(r)
        )
    merged: list[tuple[datetime, datetime]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def window_start(*metadata: dict) -> pd.Timestamp | None:
    """The end of the latest validation window of the given models (None if one lacks it)."""
    ends = []
    for meta in metadata:
        valid = (meta.get("window") or {}).get("valid")
        if not valid:
            return None
        ends.append(pd.Timestamp(valid[1]))
    return max(t.tz_convert("UTC") if t.tzinfo else t.tz_localize("UTC") for t in ends)


def comparison_entities(
    settings: Settings,
    start: pd.Timestamp,
    as_of: datetime,
    excluded: Sequence[tuple[datetime, datetime]] = (),
) -> pd.DataFrame:
    """Labelled rows known by ``as_of`` (valid loans, then feedback rows) with an event time
    after ``start``, sorted by time: entity rows for ``promotion.compare``."""
    from creditflow.training.dataset import entity_frame, feedback_rows, load_labeled_loans

    loans = load_labeled_loans(settings, as_of)
    loans = loans[violations(loans, LOANS) == ""]
    frames = [entity_frame(loans)]
    rows, _ = feedback_rows(settings, loans, as_of, excluded)
    if len(rows):
        frames.append(entity_frame(rows))
    entities = pd.concat(frames, ignore_index=True)
    entities = entities[entities[LOANS.timestamp] > start]
    return entities.sort_values([LOANS.timestamp, *LOANS.key], kind="stable").reset_index(drop=True)


def _update(engine: sa.Engine, run_id: int, **values) -> None:
    with engine.begin() as conn:
        conn.execute(retrain_runs.update().where(retrain_runs.c.id == run_id).values(**values))


def _close_interrupted(engine: sa.Engine) -> int:
    """Runs left "running" by a process that died (we hold the lock, so none is alive)."""
    with engine.begin() as conn:
        return conn.execute(
            retrain_runs.update()
            .where(retrain_runs.c.outcome == RUNNING)
            .values(outcome=FAILED, finished_at=clock.now(),
                    error="interrupted: the process ended before the run finished")
        ).rowcount  # fmt: skip


def build_bento(settings: Settings) -> dict:
    """`bentoml build` of the repository's bento (the package wheel must exist: `make wheel`),
    in this home's BentoML store; returns the command's last line of output."""
    import creditflow.bento

    bentofile = Path(creditflow.bento.__file__).parent / "bentofile.yaml"
    root = bentofile.parent.parent
    result = subprocess.run(
        ["bentoml", "build", "-f", str(bentofile), str(root)],
        cwd=root, env={**os.environ, **environment(settings)}, capture_output=True, text=True,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"bentoml build failed: {result.stderr.strip()[-2000:]}")
    return {"built": True, "output": result.stdout.strip().splitlines()[-1:]}


def retrain(
    settings: Settings | None = None,
    as_of: datetime | None = None,
    build: bool = False,
    budget: TrainingBudget | None = None,
) -> dict:
    """One retraining run (module docstring); returns its summary. ``busy: true`` (and nothing
    done) when another run holds the lock."""
    settings = settings or get_settings()
    engine = get_engine(settings)
    budget = budget or TrainingBudget()
    options = budget.train_options()
    as_of = clock.now() if as_of is None else clock.as_utc(as_of)
    with clock.frozen(as_of), retrain_lock(engine, settings.home) as held:
        if not held:
            return {
                "busy": True,
                "outcome": "busy",
                "message": "another `creditflow retrain` is running on this database: "
                "nothing done (it holds the retraining lock)",
            }
        return _run(settings, engine, as_of, build, budget, options)


def _run(settings, engine, as_of, build, budget, options) -> dict:
    interrupted = _close_interrupted(engine)
    started = time.perf_counter()
    last = _last_trained(engine, as_of)
    since = clock.as_utc(last["as_of"]) if last else None
    inputs = {**collect_inputs(engine, since, as_of), "budget": asdict(budget)}
    champion = champion_tag(settings)
    with engine.begin() as conn:
        run_id = conn.execute(
            retrain_runs.insert().returning(retrain_runs.c.id),
            {"as_of": as_of, "started_at": clock.now(), "outcome": RUNNING,
             "champion_tag": champion, "inputs": inputs, "rows": {}, "metrics": {},
             "decision": {}},
        ).scalar_one()  # fmt: skip
    summary: dict = {"run_id": run_id, "busy": False, "as_of": as_of.isoformat(),
                     "champion_before": champion, "challenger": None, "inputs": inputs,
                     "interrupted_runs_closed": interrupted}  # fmt: skip
    try:
        summary.update(_gate_and_train(settings, engine, run_id, since, as_of, champion, options))
        if build and summary["outcome"] == PROMOTED:
            summary["build"] = build_bento(settings)
    except BaseException as err:  # KeyboardInterrupt too: the row says what happened
        _update(engine, run_id, outcome=FAILED, finished_at=clock.now(),
                error=f"{type(err).__name__}: {err}",
                decision={"duration_s": round(time.perf_counter() - started, 2)})  # fmt: skip
        raise
    summary["duration_s"] = round(time.perf_counter() - started, 2)
    decision = {**summary["decision"], "duration_s": summary["duration_s"]}
    _update(engine, run_id, outcome=summary["outcome"], finished_at=clock.now(),
            challenger_tag=summary["challenger"], rows=summary["rows"],
            metrics=summary["metrics"], decision=decision)  # fmt: skip
    summary["champion"] = champion_tag(settings)
    return summary


def _gate_and_train(settings, engine, run_id, since, as_of, champion, options) -> dict:
    quality = data_quality_alerts(engine, since, as_of)
    if quality["alerts"]:
        alerts = quality["alerts"]
        listed = ", ".join(f"{a['section']}/{a['metric']} {a['subject']}" for a in alerts)
        reason = (f"monitoring run {quality['monitoring_run']} flagged the new data as broken "
                  f"({listed}): no model is trained on it")  # fmt: skip
        decision = {"promote": False, "reasons": [reason], "quality": quality}
        return {"outcome": REFUSED, "reasons": [reason], "rows": {}, "metrics": {},
                "decision": decision}  # fmt: skip

    from creditflow.training.pipeline import train
    from creditflow.training.promotion import GatePolicy, compare, record_decision

    log.info("retrain run %s: training a challenger as of %s", run_id, as_of.isoformat())
    excluded = flagged_windows(engine, as_of)
    trained = train(settings=settings, quiet=True, as_of=as_of, excluded=excluded, **options)
    challenger = trained["model_tag"]
    _update(engine, run_id, challenger_tag=challenger)
    log.info("retrain run %s: challenger %s, comparing", run_id, challenger)
    rows = {"training": trained["rows"], "feedback": trained["feedback"],
            "recency": trained["recency"],
            "flagged_windows": [[str(a), str(b)] for a, b in excluded]}  # fmt: skip
    result = {"challenger": challenger, "rows": rows, "metrics": {"challenger_test": {
        k: trained[k] for k in ("test_auc", "test_brier", "test_ece")}}}  # fmt: skip
    if champion is None:
        record_decision(settings, challenger, None, True, [], {"retrain_run": run_id})
        reasons: list[str] = []
        decision = {"promote": True, "rule": "first champion", "reasons": reasons}
        return {**result, "outcome": PROMOTED, "reasons": reasons, "decision": decision}

    metas = [registry.load(tag).metadata for tag in (champion, challenger)]
    start = window_start(*metas)
    entities = (comparison_entities(settings, start, as_of, excluded) if start is not None
                else pd.DataFrame())  # fmt: skip
    rows["comparison"] = len(entities)
    outcomes = set(entities["loan_status"].unique()) if len(entities) else set()
    if len(entities) < MIN_COMPARISON_ROWS or len(outcomes) < 2:
        reason = (f"no comparison window: {len(entities)} labelled rows after both models' "
                  f"validation windows (from {start}), need {MIN_COMPARISON_ROWS} with both "
                  "outcomes; the champion stays")  # fmt: skip
        with engine.begin() as conn:
            log_event(conn, challenger, "refused", reason, {"retrain_run": run_id})
        decision = {"promote": False, "rule": None, "reasons": [reason]}
        return {**result, "outcome": KEPT, "reasons": [reason], "decision": decision}

    compared = compare(challenger, champion, entities, settings, GatePolicy())
    decision = compared["decision"]
    result["metrics"].update(
        {"challenger": compared["candidate"], "champion": compared["champion"]}
    )
    rows["comparison_window"] = compared["window"]
    details = {"retrain_run": run_id, "window": compared["window"], "rows": compared["rows"],
               "interval": decision["interval"], "rule": decision["rule"],
               "comparison": {"candidate": compared["candidate"],
                              "champion": compared["champion"]}}  # fmt: skip
    record_decision(settings, challenger, champion, decision["promote"], decision["reasons"],
                    {**details, "reasons": decision["reasons"]})  # fmt: skip
    outcome = PROMOTED if decision["promote"] else KEPT
    return {**result, "outcome": outcome, "reasons": decision["reasons"], "decision": decision}


def history(engine: sa.Engine, limit: int = 20) -> list[dict]:
    """The latest retraining runs, newest first (``limit`` 0: all)."""
    query = sa.select(retrain_runs).order_by(retrain_runs.c.id.desc())
    if limit:
        query = query.limit(limit)
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]
